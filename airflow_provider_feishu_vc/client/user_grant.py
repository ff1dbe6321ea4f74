"""A user's grant: the user tokens every process of a deployment shares through a store
(:class:`~.stored_tokens.UserTokenStore`), because each refresh token works once. The rules, all in
:func:`fetch_user_token`:

- every saved set of tokens carries a *generation*, one more than the set it was refreshed from; a process that
  holds a newer set than the store (its save failed) refreshes with its own and offers it to the store again, so a
  failed write never loses the grant;
- one process refreshes at a time: it takes a short *lease* in the store first. The store has no compare-and-set,
  so a process writes its lease, waits until any other writer's lease would have landed too, and reads back who
  holds it: the last writer wins and every writer sees the same winner. The others wait, looking at the store,
  until the winner's tokens appear or its lease runs out (a slow write included);
- each process calls a user token stale at a moment of its own within the last minutes of its life, so the first
  process's save is usually in the store before the others look;
- new tokens are registered with the secret masker before anything (a failing save's error) can quote them;
- when the store cannot be read, a process keeps using an access token it holds while that lasts, and refreshes
  nothing: a refresh token another process may have spent is never sent.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import REFRESH_TOKEN_USED_CODE, FeishuVCAPIError, FeishuVCTokenStoreError
from airflow_provider_feishu_vc.client.protocol import Flow, RetryPolicy, SharedUserTokens, Sleep
from airflow_provider_feishu_vc.client.stored_tokens import LEASE_SECONDS, RefreshLease, StoredUserTokens
from airflow_provider_feishu_vc.client.tokens import (
    AccessToken,
    mask_secrets,
    post_unauthenticated,
    token_fields,
    token_from_answer,
)

USER_TOKEN_PATH = "/open-apis/authen/v2/oauth/token"

#: Waits between the attempts of one read or write of the shared store (it is usually back within seconds).
STORE_RETRY_WAITS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
#: After writing its lease a process waits this long at least, and twice as long as its write took, before it
#: reads who holds the lease: long enough for a lease written at the same moment by another process to land.
LEASE_SETTLE = 1.0
#: How often a process waiting for another one's refresh looks at the store (the last figure repeats).
WAIT_POLLS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
#: Rounds of "take the lease or wait for its holder" before a process gives up for now (a retryable error).
LEASE_ROUNDS = 3
#: A token this process could not save (or, with the store down, an older one it still holds) counts as fresh for
#: this long only, so that the store is tried again soon.
RECHECK_SECONDS = 30.0
#: Where in the last minutes of a user token's life this process calls it stale: a fraction of its own, drawn once.
_PROCESS_SPREAD = random.random()


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
        return (yield from _refresh_alone(config, policy, current, stale))
    held = current.shared if current is not None else None
    for _ in range(LEASE_ROUNDS):
        try:
            stored: StoredUserTokens | None = yield from _store("load")
        except FeishuVCTokenStoreError:
            return (yield from _keep_while_the_store_is_down(current, stale))
        newest = _newer(stored, held)
        if newest is not None and newest is held and newest is not stored:
            # This process holds a newer set than the store (its save failed): offer it again.
            if not (yield from _save(newest)):
                return (yield from _keep_while_the_store_is_down(current, stale))
        token = yield from _reusable(newest, stale)
        if token is not None:
            return token
        if newest is None and current is None and config.user_access_token:
            return (yield from _connection_user_token(config.user_access_token))
        try:
            mine, holder = yield from _claim_lease()
        except FeishuVCTokenStoreError:
            return (yield from _keep_while_the_store_is_down(current, stale))
        if mine is not None and holder == mine:
            return (yield from _refresh_holding(config, policy, newest, current, stale, mine))
        # Another process is refreshing: wait for its tokens, as long as its lease (a slow save included) lasts.
        until = holder.until if holder is not None else time.time()
        newer = yield from _wait_for_newer(newest, until, lease=holder)
        token = yield from _reusable(newer, stale)
        if token is not None:
            return token
        held = newer or held
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


def _claim_lease() -> Flow[tuple[RefreshLease | None, RefreshLease | None]]:
    """Try to take the grant's refresh lease: return (the lease written by this process or None, the lease that
    holds). The store has no compare-and-set: of several processes writing at once the last one wins, so each
    waits long enough for the others' writes to land before it reads who holds the lease."""
    holder: RefreshLease | None = yield from _store("load_lease", waits=STORE_RETRY_WAITS[:2])
    if holder is not None and holder.live() and not holder.taken_by_this_process():
        return None, holder
    mine = RefreshLease.new()
    began = time.monotonic()
    yield from _store("save_lease", mine, waits=STORE_RETRY_WAITS[:2])
    yield Sleep(max(LEASE_SETTLE, 2 * (time.monotonic() - began)))
    holder = yield from _store("load_lease", waits=STORE_RETRY_WAITS[:2])
    return mine, holder


def _release(lease: RefreshLease) -> Flow[None]:
    try:
        yield from _store("save_lease", RefreshLease(lease.holder, 0.0), waits=())
    except FeishuVCTokenStoreError:
        pass  # it runs out on its own


def _save(tokens: StoredUserTokens) -> Flow[bool]:
    """Save ``tokens`` for every process, retried while the store is out of reach; False when it stayed out."""
    try:
        yield from _store("save", tokens)
    except FeishuVCTokenStoreError:
        return False
    return True


def _wait_for_newer(
    than: StoredUserTokens | None,
    until: float,
    *,
    spent: str | None = None,
    lease: RefreshLease | None = None,
) -> Flow[StoredUserTokens | None]:
    """Look at the store until it holds a newer set than ``than`` (or one whose refresh token is not ``spent``), for
    as long as ``until`` (epoch seconds) leaves, plus one look; None if none appeared. With ``lease`` (another
    process's), the wait also ends when that lease is released or taken over."""
    budget = max(0.0, until - time.time())
    waited, polls = 0.0, 0
    while True:
        pause = WAIT_POLLS[min(polls, len(WAIT_POLLS) - 1)]
        polls += 1
        yield Sleep(pause)
        waited += pause
        try:
            stored: StoredUserTokens | None = yield SharedUserTokens("load")
            holder: RefreshLease | None = (yield SharedUserTokens("load_lease")) if lease is not None else None
        except FeishuVCTokenStoreError:
            continue
        if stored is not None and (
            than is None
            or stored.generation > than.generation
            or (spent is not None and stored.refresh_token not in (None, spent, than.refresh_token))
        ):
            return stored
        if waited >= budget or (lease is not None and (holder != lease or not lease.live())):
            return None


def _refresh_holding(
    config: ClientConfig,
    policy: RetryPolicy,
    base: StoredUserTokens | None,
    current: AccessToken | None,
    stale: str | None,
    lease: RefreshLease,
) -> Flow[AccessToken]:
    """Refresh the grant while holding its lease; save the successor for every process, then let the lease go."""
    try:
        latest = yield from _store("load", waits=())
    except FeishuVCTokenStoreError:
        latest = None
    if latest is not None and (base is None or latest.generation > base.generation):
        base = latest  # saved by a process whose lease ran out just before this one took it
        token = yield from _reusable(base, stale)
        if token is not None:
            yield from _release(lease)
            return token
    refresh_token = (
        (base.refresh_token if base else None) or (current.refresh_token if current else None) or config.refresh_token
    )
    if not refresh_token:
        yield from _release(lease)
        raise _no_refresh_token()
    try:
        payload = yield from _refresh(config, refresh_token, policy)
    except FeishuVCAPIError as error:
        if error.code != REFRESH_TOKEN_USED_CODE:
            yield from _release(lease)
            raise
        # Spent outside the lease (an older release, a process that could not read the lease): take what it saved.
        newer = yield from _wait_for_newer(base, time.time() + LEASE_SECONDS, spent=refresh_token)  # lease: ours
        yield from _release(lease)
        token = yield from _reusable(newer, stale)
        if token is None:
            raise
        return token
    received = yield from _user_token_from(payload)
    grant = (base.grant if base else None) or config.refresh_token
    tokens = _to_store(received, payload, generation=(base.generation if base else 0) + 1, grant=grant)
    saved = yield from _save(tokens)
    token = as_access_token(tokens)
    if not saved:
        # Only this process knows the successor now: it keeps it, and offers it to the store again soon (the
        # lease stays taken meanwhile, so that no other process refreshes with the spent refresh token).
        return token.fresh_for(RECHECK_SECONDS)
    yield from _release(lease)
    return token


def _refresh_alone(
    config: ClientConfig, policy: RetryPolicy, current: AccessToken | None, stale: str | None
) -> Flow[AccessToken]:
    """Without a shared store: the connection's user token, then refreshes with the newest refresh token held."""
    if current is None and config.user_access_token and config.user_access_token != stale:
        return (yield from _connection_user_token(config.user_access_token))
    refresh_token = (current.refresh_token if current else None) or config.refresh_token
    if not refresh_token:
        raise _no_refresh_token()
    payload = yield from _refresh(config, refresh_token, policy)
    return (yield from _user_token_from(payload))


def exchange_authorization_code(
    config: ClientConfig, code: str, redirect_uri: str, policy: RetryPolicy
) -> Flow[StoredUserTokens]:
    """The user's first tokens, for the authorization code the user's sign-in handed out (once, within minutes)."""
    payload = yield from _oauth_grant(config, policy, "authorization_code", code=code, redirect_uri=redirect_uri)
    token = yield from _user_token_from(payload)
    if not token.refresh_token:
        raise FeishuVCAPIError(
            code=0,
            msg="Feishu sent no refresh_token: the app needs the offline_access scope, and the sign-in must ask for it",
            http_status=200,
        )
    return _to_store(token, payload, generation=1, grant=token.refresh_token)


def _connection_user_token(value: str) -> Flow[AccessToken]:
    """The user token the connection holds, registered with the masker. Feishu does not say how long a given user
    token has left: it is used until Feishu rejects it."""
    yield from mask_secrets(value)
    return AccessToken(value, time.monotonic() + 7200, 7200)


def _user_token_from(payload: Mapping[str, Any]) -> Flow[AccessToken]:
    """The access and refresh tokens of an OAuth answer, registered with the masker before anything (a failing
    save's error, say) can quote them."""
    token = token_from_answer(payload, "access_token", "expires_in")
    yield from mask_secrets(token.value, token.refresh_token)
    return token


def _no_refresh_token() -> FeishuVCAPIError:
    return FeishuVCAPIError(
        code=99991677,
        msg="the user access token is invalid or expired and the connection has no refresh_token",
        http_status=401,
    )


def _to_store(
    token: AccessToken, payload: Mapping[str, Any], *, generation: int, grant: str | None
) -> StoredUserTokens:
    source = token_fields(payload, "access_token")
    refresh_lifetime = source.get("refresh_token_expires_in")
    refresh_expires_at = None
    if isinstance(refresh_lifetime, (int, float)) and not isinstance(refresh_lifetime, bool) and refresh_lifetime > 0:
        refresh_expires_at = time.time() + min(float(refresh_lifetime), 10 * 365 * 86400.0)
    return StoredUserTokens(
        token.value,
        time.time() + token.lifetime,
        token.lifetime,
        token.refresh_token,
        refresh_expires_at,
        generation,
        grant,
    )


def _refresh(config: ClientConfig, refresh_token: str, policy: RetryPolicy) -> Flow[dict[str, Any]]:
    return (yield from _oauth_grant(config, policy, "refresh_token", refresh_token=refresh_token))


def _oauth_grant(config: ClientConfig, policy: RetryPolicy, grant_type: str, **fields: str) -> Flow[dict[str, Any]]:
    """One request to the v2 OAuth token endpoint, as the app (client) asking for ``grant_type``."""
    body = {"grant_type": grant_type, "client_id": config.app_id, "client_secret": config.app_secret, **fields}
    return (yield from post_unauthenticated(USER_TOKEN_PATH, body, policy))
