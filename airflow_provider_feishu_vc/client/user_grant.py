"""A user's grant: the user tokens every process of a deployment shares through a store
(:class:`~.stored_tokens.UserTokenStore`), because each refresh token works once. The rules, all in
:func:`fetch_user_token`:

- every saved set of tokens carries a *generation*, one more than the set it was refreshed from; a process that
  holds a newer set than the store (its save failed) refreshes with its own and offers it to the store again, so a
  failed write never loses the grant. A set this process could not save is offered again in the background while
  the process lives, and on close and at exit (the drivers run :func:`save_in_background` and
  :func:`flush_unsaved`);
- one process refreshes at a time: it takes a short *lease* in the store first. The store has no compare-and-set,
  so a process writes its lease, waits until any lease another process could have written meanwhile has landed
  (:data:`LEASE_SETTLE`, twice the longest write delay the lease is built for) and reads back who holds it: the
  last writer wins and every writer sees the same winner. No wall clocks are compared: a reader measures a lease's
  age with its own monotonic clock from when it first saw that lease. A holder releases the lease only while it is
  still its own;
- the refresh token is the fencing token: right before refreshing, the holder reads the stored set again and
  adopts it when someone saved a newer one; and a process never sends a refresh token Feishu already answered for;
- within one process every caller (threads, event loops) takes its turn per grant (:class:`GrantInProcess`): one
  claims the lease, the others wait for its tokens;
- each process calls a user token stale at a moment of its own within the last minutes of its life, so the first
  process's save is usually in the store before the others look;
- new tokens are registered with the secret masker before anything (a failing save's error) can quote them;
- when the store cannot be read, a process keeps using an access token it holds while that lasts, and refreshes
  nothing: a refresh token another process may have spent is never sent.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from airflow_provider_feishu_vc.client import grant_process, user_oauth
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import (
    REFRESH_TOKEN_USED_CODE,
    FeishuVCAPIError,
    FeishuVCConfigError,
    FeishuVCTokenStoreError,
)
from airflow_provider_feishu_vc.client.grant_process import GrantInProcess
from airflow_provider_feishu_vc.client.protocol import Flow, RetryPolicy, SharedUserTokens, Sleep
from airflow_provider_feishu_vc.client.stored_tokens import LEASE_SECONDS, RefreshLease, StoredUserTokens
from airflow_provider_feishu_vc.client.tokens import (
    AccessToken,
    mask_secrets,
)


def _seconds_from_environment(name: str, default: float) -> float:
    """A positive, finite number of seconds from the environment variable ``name``, else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 3600:
        raise FeishuVCConfigError(name, f"must be a number of seconds above 0 and below 3600, got {raw[:40]!r}")
    return value


#: Waits between the attempts of one read or write of the shared store (it is usually back within seconds).
STORE_RETRY_WAITS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
#: The latest a write to the store may land after it was sent (a slow store, its own retries, a stall of the
#: writing process included): the lease gives one holder for writes up to this late. 10 s unless the environment
#: variable FEISHU_VC_MAX_STORE_WRITE_DELAY says otherwise (the same in every process of a deployment).
MAX_WRITE_DELAY = _seconds_from_environment("FEISHU_VC_MAX_STORE_WRITE_DELAY", 10.0)


def lease_bounds(max_write_delay: float) -> tuple[float, float]:
    """(the longest from the start of a process's look at the lease to its lease write, beyond which it looks
    again; how long it waits after writing its lease before it reads who holds it). A lease written by a process
    that found the lease free before this one's write landed has landed by then: two write delays, a claim gap and
    a margin (see docs/connections.md)."""
    gap = min(2.0, max_write_delay)
    return gap, 2 * max_write_delay + gap + min(1.0, max_write_delay)


MAX_CLAIM_GAP, LEASE_SETTLE = lease_bounds(MAX_WRITE_DELAY)
#: A holder sends its refresh only within this many seconds of writing its lease (its own clock); later, it stops.
REFRESH_DEADLINE = 40.0
#: The longest Feishu may take to answer a refresh for the lease to cover the refresh and its save.
MAX_REFRESH_ANSWER = 60.0
#: How often a process waiting for another one's refresh looks at the store (the last figure repeats).
WAIT_POLLS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
#: How often a caller waiting for another caller of the same process looks at what that one fetched.
TURN_POLL = 0.25
#: Rounds of "take the lease or wait for its holder" before a process gives up for now (a retryable error).
LEASE_ROUNDS = 3
#: A token this process could not save (or, with the store down, an older one it still holds) counts as fresh for
#: this long only, so that the store is tried again soon.
RECHECK_SECONDS = 30.0
#: Waits between the background attempts at saving a set this process could not save (the last one repeats, for as
#: long as the process lives).
BACKGROUND_WAITS: tuple[float, ...] = (1.0, 2.0, 4.0, 5.0)
#: How long closing a client, and the interpreter's exit, keep offering an unsaved set to the store.
CLOSE_FLUSH_SECONDS = 60.0
#: Where in the last minutes of a user token's life this process calls it stale: a fraction of its own, drawn once.
_PROCESS_SPREAD = random.random()
#: The command that gives a connection a new grant when one is lost.
REGRANT_COMMAND = "python -m airflow_provider_feishu_vc.user_tokens <conn_id> <code> <redirect_uri>"


def refresh_margin(lifetime: float, spread: float = _PROCESS_SPREAD) -> float:
    """How long before expiry a user token counts as stale in this process: one to two times the usual margin
    (5 minutes, or a quarter of a short life), at a point of its own, so processes do not all refresh together."""
    return min(300.0, lifetime / 4) * (1.0 + spread)


def as_access_token(tokens: StoredUserTokens) -> AccessToken:
    """The shared access token as this process caches it, whatever its freshness."""
    lifetime = tokens.access_lifetime
    return AccessToken(
        tokens.access_token,
        time.monotonic() + tokens.seconds_left(),
        lifetime,
        tokens.refresh_token,
        margin=refresh_margin(lifetime),
        shared=tokens,
    )


def fresh_access(tokens: StoredUserTokens) -> AccessToken | None:
    """The shared access token as this process caches it, or None when it is stale for this process."""
    token = as_access_token(tokens)
    return token if tokens.seconds_left() > 0 and token.is_fresh() else None


def _store(action: str, value: Any = None, waits: tuple[float, ...] | None = None) -> Flow[Any]:
    """One read or write of the shared store, tried again after each of ``waits`` (default
    ``STORE_RETRY_WAITS``) while the store cannot be reached."""
    for wait in (*(STORE_RETRY_WAITS if waits is None else waits), None):
        try:
            return (yield SharedUserTokens(action, value))
        except FeishuVCTokenStoreError:
            if wait is None:
                raise
            yield Sleep(wait)
    raise AssertionError("unreachable")


def _newer(stored: StoredUserTokens | None, held: StoredUserTokens | None) -> StoredUserTokens | None:
    """The newer of what the store holds and what this process holds (the store's on a tie)."""
    if held is not None and (stored is None or held.generation > stored.generation):
        return held
    return stored


def _supersedes(latest: StoredUserTokens | None, base: StoredUserTokens | None) -> bool:
    """Whether ``latest`` (just read) replaces ``base``: a later generation, or the same one with another refresh
    token (saved by a process that refreshed ``base``'s predecessor)."""
    if latest is None:
        return False
    if base is None:
        return True
    return latest.generation > base.generation or (
        latest.generation == base.generation and latest.refresh_token != base.refresh_token
    )


def _reusable(tokens: StoredUserTokens | None, rejected: str | None) -> Flow[AccessToken | None]:
    """The access token of ``tokens`` while it is fresh for this process and not the one Feishu rejected."""
    token = fresh_access(tokens) if tokens is not None else None
    if token is None or token.value == rejected:
        return None
    yield from mask_secrets(*tokens.secrets())  # type: ignore[union-attr]
    return token


def fetch_user_token(
    config: ClientConfig,
    policy: RetryPolicy,
    current: AccessToken | None,
    *,
    stale: str | None = None,
    shared: bool = True,
) -> Flow[AccessToken]:
    """The user's access token: a still-fresh one from the shared store (or held by this process), else a refresh,
    by one process at a time, with the newest refresh token, whose successor is saved for every process at once.
    ``stale`` is a token Feishu just rejected; ``shared`` False means there is no store (this process only)."""
    if not shared:
        return (yield from user_oauth.refresh_alone(config, policy, current, stale))
    grant = grant_process.PROCESS.of(config)
    turn = grant.take_turn()
    waited = 0.0
    while turn is None:
        # Another caller of this process (a thread, an event loop) is at it: what it fetches serves this one too.
        if waited >= LEASE_ROUNDS * (LEASE_SECONDS + LEASE_SETTLE):
            raise FeishuVCTokenStoreError(
                "Gave up waiting for another caller in this process to fetch the user tokens; the next attempt tries "
                "again"
            )
        yield Sleep(TURN_POLL)
        waited += TURN_POLL
        token = yield from _reusable(grant.latest, stale)
        if token is not None:
            return token
        turn = grant.take_turn()
    try:
        return (yield from _fetch_in_turn(config, policy, current, stale, grant))
    finally:
        grant.end_turn(turn)


def _fetch_in_turn(
    config: ClientConfig, policy: RetryPolicy, current: AccessToken | None, stale: str | None, grant: GrantInProcess
) -> Flow[AccessToken]:
    held = _newer(current.shared if current is not None else None, grant.latest)
    for _ in range(LEASE_ROUNDS):
        try:
            stored: StoredUserTokens | None = yield from _store("load")
        except FeishuVCTokenStoreError:
            return (yield from _keep_while_the_store_is_down(current, stale))
        newest = _newer(stored, held)
        grant.know(newest)
        if newest is not None and newest is held and newest is not stored:
            # This process holds a newer set than the store (its save failed): offer it again.
            if not (yield from _save(newest, grant)):
                return (yield from _keep_while_the_store_is_down(current, stale))
        token = yield from _reusable(newest, stale)
        if token is not None:
            return token
        if newest is None and current is None and config.user_access_token:
            return (yield from user_oauth.connection_user_token(config.user_access_token))
        try:
            mine, holder = yield from _claim_lease(grant)
        except FeishuVCTokenStoreError:
            return (yield from _keep_while_the_store_is_down(current, stale))
        if mine is not None:
            return (yield from _refresh_holding(config, policy, newest, current, stale, grant, mine))
        if holder is None:
            continue  # this process's lease write did not land (the store failed it): look and claim again
        # Another process is refreshing: wait for its tokens, as long as its lease (a slow save included) lasts.
        newer = yield from _wait_for_newer(newest, grant, lease=holder)
        grant.know(newer)
        token = yield from _reusable(newer, stale)
        if token is not None:
            return token
        held = _newer(newer, held)
    raise FeishuVCTokenStoreError(
        "Gave up waiting for another process to refresh the user tokens (its refresh lease ran out without new "
        "tokens in the store); the next attempt tries again"
    )


def _keep_while_the_store_is_down(current: AccessToken | None, stale: str | None) -> Flow[AccessToken]:
    """With the store out of reach, keep using the access token this process holds while it lasts (asking the
    store again soon); refresh nothing, since another process may have spent the refresh token held here."""
    if current is not None and current.value != stale and current.expires_at - time.monotonic() > 1.0:
        return current.fresh_for(RECHECK_SECONDS)
    yield from ()
    raise FeishuVCTokenStoreError(
        "The shared user tokens cannot be read right now, and this process holds no access token that is still "
        "valid. Not refreshing: another process may already have spent the refresh token held here"
    )


def _claim_lease(grant: GrantInProcess) -> Flow[tuple[RefreshLease | None, RefreshLease | None]]:
    """Try to take the grant's refresh lease: return (the lease written by this process, or None; the lease that
    holds). The store has no compare-and-set: of several processes writing at once the last one to land wins, so
    each waits until every lease written by a process that saw the lease free has landed before it reads who holds
    it. Another process's lease holds until it is released or this process has seen it for LEASE_SECONDS; a lease
    of this process's own (an earlier fetch kept it when its save failed) is this caller's to take over."""
    for _ in range(3):
        looked = time.monotonic()
        holder: RefreshLease | None = yield from _store("load_lease", waits=STORE_RETRY_WAITS[:2])
        if (
            holder is not None
            and not holder.released
            and holder.process_id != grant.process_id
            and grant.age(holder) < LEASE_SECONDS
        ):
            return None, holder
        if time.monotonic() - looked <= MAX_CLAIM_GAP:
            break
    else:
        raise FeishuVCTokenStoreError("The store answers too slowly to take the refresh lease safely; not refreshing")
    mine = RefreshLease.new(grant.process_id)
    grant.lease, grant.lease_since = mine, time.monotonic()
    yield from _store("save_lease", mine, waits=())  # no retry: a later write would land later than settled for
    yield Sleep(LEASE_SETTLE)
    holder = yield from _store("load_lease", waits=STORE_RETRY_WAITS[:2])
    if holder == mine:
        return mine, holder
    grant.lease = None
    if holder is not None:
        grant.age(holder)  # its age counts from now
    return None, holder


def _release(grant: GrantInProcess, lease: RefreshLease) -> Flow[None]:
    """Give ``lease`` back, only while the store still holds it (another process may have taken it over after it
    ran out); a lease not given back runs out on its own."""
    try:
        holder = yield from _store("load_lease", waits=())
        if holder == lease:
            yield from _store("save_lease", lease.given_back(), waits=())
    except FeishuVCTokenStoreError:
        pass
    if grant.lease == lease:
        grant.lease = None


def _save(tokens: StoredUserTokens, grant: GrantInProcess) -> Flow[bool]:
    """Save ``tokens`` for every process, retried while the store is out of reach; False when it stayed out."""
    try:
        yield from _store("save", tokens)
    except FeishuVCTokenStoreError:
        return False
    grant.saved(tokens)
    return True


def _wait_for_newer(
    than: StoredUserTokens | None,
    grant: GrantInProcess,
    *,
    spent: str | None = None,
    lease: RefreshLease | None = None,
    seconds: float = LEASE_SECONDS,
) -> Flow[StoredUserTokens | None]:
    """Look at the store until it holds a newer set than ``than`` (or one whose refresh token is not ``spent``);
    None if none appeared. With ``lease`` (another process's), for as long as that lease holds: until it is released
    or replaced, or this process has seen it for LEASE_SECONDS; without, for ``seconds`` (this process's clock)."""
    started = time.monotonic()
    waited, polls = 0.0, 0  # the sum of this wait's sleeps: no more than the time it took, whatever the clock
    while True:
        pause = WAIT_POLLS[min(polls, len(WAIT_POLLS) - 1)]
        yield Sleep(pause)
        waited += pause
        polls += 1
        holder: RefreshLease | None = lease
        try:
            stored: StoredUserTokens | None = yield SharedUserTokens("load")
            if lease is not None:
                holder = yield SharedUserTokens("load_lease")
        except FeishuVCTokenStoreError:
            stored = None
        if stored is not None and (
            than is None
            or stored.generation > than.generation
            or (spent is not None and stored.refresh_token not in (None, spent, than.refresh_token))
        ):
            return stored
        if lease is not None:
            if holder != lease or max(waited, grant.age(lease)) >= LEASE_SECONDS:
                return None
        elif max(waited, time.monotonic() - started) >= seconds:
            return None


def _refresh_holding(
    config: ClientConfig,
    policy: RetryPolicy,
    base: StoredUserTokens | None,
    current: AccessToken | None,
    stale: str | None,
    grant: GrantInProcess,
    lease: RefreshLease,
) -> Flow[AccessToken]:
    """Refresh the grant while holding its lease; save the successor for every process, then let the lease go."""
    try:
        latest = yield from _store("load", waits=())
    except FeishuVCTokenStoreError:
        yield from _release(grant, lease)
        return (yield from _keep_while_the_store_is_down(current, stale))
    if _supersedes(latest, base):
        # The fencing check: a process whose lease ran out before this one took it saved a newer set.
        base = latest
        grant.know(latest)
        token = yield from _reusable(base, stale)
        if token is not None:
            yield from _release(grant, lease)
            return token
    refresh_token = (
        (base.refresh_token if base else None) or (current.refresh_token if current else None) or config.refresh_token
    )
    if not refresh_token:
        yield from _release(grant, lease)
        raise user_oauth.no_refresh_token()
    if grant.was_answered(refresh_token) or time.monotonic() - grant.lease_since > REFRESH_DEADLINE:
        yield from _release(grant, lease)
        raise FeishuVCTokenStoreError(
            "Not refreshing the user tokens now: "
            + (
                "Feishu already answered this process for the refresh token at hand, and its successor is not in "
                "the store yet"
                if grant.was_answered(refresh_token)
                else "taking the refresh lease took too long (a slow store or a stalled process)"
            )
            + "; the next attempt looks at the store again"
        )
    try:
        payload = yield from user_oauth.refresh(config, refresh_token, policy)
    except FeishuVCAPIError as error:
        grant.answered(refresh_token)
        if error.code != REFRESH_TOKEN_USED_CODE:
            yield from _release(grant, lease)
            raise
        # Spent outside the lease (an older release, a process that could not read the lease): take what it saved.
        newer = yield from _wait_for_newer(base, grant, spent=refresh_token)
        yield from _release(grant, lease)
        grant.know(newer)
        token = yield from _reusable(newer, stale)
        if token is None:
            raise
        return token
    grant.answered(refresh_token)
    # From Feishu's answer on, this process holds the only copy of the successor until its save lands: the window
    # docs/connections.md states (a kill -9 in it loses the grant).
    received = yield from user_oauth.user_token_from(payload)
    grant_seed = (base.grant if base else None) or config.refresh_token
    tokens = user_oauth.to_store(received, payload, generation=(base.generation if base else 0) + 1, grant=grant_seed)
    grant.unsaved = tokens
    grant.know(tokens)
    saved = yield from _save(tokens, grant)
    token = as_access_token(tokens)
    if not saved:
        # Only this process knows the successor now: it keeps it and the lease (so that no other process refreshes
        # with the spent refresh token meanwhile), and its driver offers it to the store in the background.
        yield SharedUserTokens("keep_saving", grant)
        return token.fresh_for(RECHECK_SECONDS)
    yield from _release(grant, lease)
    return token


def _offer_unsaved(grant: GrantInProcess) -> Flow[bool]:
    """One attempt at saving the set this process could not save (unless the store holds as new a set by now);
    True when nothing is left unsaved. Done in a turn of its own, so that no fetch of this process saves a newer set
    in between."""
    turn = grant.take_turn()
    if turn is None:
        return False  # a fetch is under way: it offers the set itself
    try:
        tokens = grant.unsaved
        if tokens is None:
            return True
        try:
            stored: StoredUserTokens | None = yield SharedUserTokens("load")
            if stored is None or stored.generation < tokens.generation:
                yield SharedUserTokens("save", tokens)
        except FeishuVCTokenStoreError:
            return False
        grant.saved(tokens)
        if grant.lease is not None:
            yield from _release(grant, grant.lease)
        return True
    finally:
        grant.end_turn(turn)


def save_in_background(grant: GrantInProcess) -> Flow[None]:
    """Offer the set this process could not save to the store until it is saved: a driver runs this while the
    process lives (a thread, or a task on the event loop)."""
    polls = 0
    while grant.unsaved is not None:
        yield Sleep(BACKGROUND_WAITS[min(polls, len(BACKGROUND_WAITS) - 1)])
        polls += 1
        yield from _offer_unsaved(grant)


def flush_unsaved(grant: GrantInProcess, seconds: float | None = None) -> Flow[bool]:
    """Offer the set this process could not save for up to ``seconds`` (default :data:`CLOSE_FLUSH_SECONDS`: a
    client closing, the interpreter exiting); True when nothing is left unsaved."""
    seconds = CLOSE_FLUSH_SECONDS if seconds is None else seconds
    waited, polls = 0.0, 0
    while not (yield from _offer_unsaved(grant)):
        if waited >= seconds:
            return False
        pause = STORE_RETRY_WAITS[min(polls, len(STORE_RETRY_WAITS) - 1)]
        polls += 1
        yield Sleep(pause)
        waited += pause
    return True


def flush_on_close(config: ClientConfig) -> Flow[bool]:
    """:func:`flush_unsaved` for the grant ``config`` acts with, if this process holds a set of it unsaved."""
    grant = grant_process.PROCESS.find(config)
    if grant is None or grant.unsaved is None:
        return True
    return (yield from flush_unsaved(grant))


def unsaved_warning(grant: GrantInProcess, where: str) -> str:
    """What to log (at error level) when a set this process could not save may be lost. Names no token."""
    generation = grant.unsaved.generation if grant.unsaved is not None else "?"
    return (
        f"The user's new tokens (generation {generation}) could NOT be saved to the shared store ({where}). Feishu "
        "has already spent the previous refresh token: if this process ends before the store is back, the grant is "
        "LOST and every task acting as this user fails with code 20064. This process keeps offering them while it "
        "lives. If they are lost, re-grant: have the user sign in again, then run "
        f"`{REGRANT_COMMAND}` where the metadata DB is reachable (docs/connections.md, 'Acting as a user')."
    )
