"""Access tokens: how each kind of app obtains one (as flows), and the process-wide cache that shares them.

The cache is keyed by app (base URL, App ID, tenant key) and token kind. Drivers fetch under
:meth:`TokenCache.thread_lock` / :meth:`TokenCache.async_lock`, so that many callers asking at once cause one
fetch.

User tokens are shared by every process of a deployment through a store (:class:`UserTokenStore`), because each
refresh token works once. The rules, all in :func:`fetch_user_token`:

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

import asyncio
import json
import random
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import (
    REFRESH_TOKEN_USED_CODE,
    STALE_APP_TICKET_CODE,
    FeishuVCAPIError,
    FeishuVCTokenStoreError,
)
from airflow_provider_feishu_vc.client.protocol import (
    Flow,
    HttpRequest,
    MaskSecret,
    RetryPolicy,
    SharedUserTokens,
    Sleep,
    call_with_retries,
)

TENANT_TOKEN_INTERNAL_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
STORE_APP_TOKEN_PATH = "/open-apis/auth/v3/app_access_token"
STORE_TENANT_TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token"
APP_TICKET_RESEND_PATH = "/open-apis/auth/v3/app_ticket/resend"
USER_TOKEN_PATH = "/open-apis/authen/v2/oauth/token"

TokenKey = tuple[str, str, str, str]

#: Waits between the attempts of one read or write of the shared store (it is usually back within seconds).
STORE_RETRY_WAITS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
#: How long one process may hold the right to refresh a grant: the refresh request and a slow save included.
LEASE_SECONDS = 60.0
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
#: This process's name in refresh leases: a lease of its own that is still live is one of its earlier attempts
#: (token fetches are serialised per app within a process), which it may take over.
_PROCESS_LEASE_PREFIX = uuid.uuid4().hex[:12]


def refresh_margin(lifetime: float, spread: float = _PROCESS_SPREAD) -> float:
    """How long before expiry a user token counts as stale in this process: one to two times the usual margin
    (5 minutes, or a quarter of a short life), at a point of its own, so processes do not all refresh together."""
    return min(300.0, lifetime / 4) * (1.0 + spread)


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    expires_at: float  # time.monotonic() seconds
    lifetime: float
    refresh_token: str | None = field(default=None, repr=False)  # user tokens: the single-use successor
    #: Seconds before expiry at which the token stops counting as fresh (None: the usual margin).
    margin: float | None = None
    #: User tokens: the shared set this token belongs to (its generation tells newer sets from older ones).
    shared: StoredUserTokens | None = field(default=None, repr=False, compare=False)

    def is_fresh(self, now: float | None = None) -> bool:
        """Fresh until a few minutes before expiry (a quarter of its life for short-lived tokens)."""
        margin = min(300.0, self.lifetime / 4) if self.margin is None else self.margin
        return (time.monotonic() if now is None else now) < self.expires_at - margin

    def fresh_for(self, seconds: float) -> AccessToken:
        """The same token, counting as fresh for ``seconds`` more at most (then the cache asks again)."""
        return replace(self, margin=max(0.0, self.expires_at - time.monotonic() - seconds))


@dataclass(frozen=True)
class StoredUserTokens:
    """The user tokens one deployment shares: the current access token and the current (single-use) refresh token.
    Times are wall-clock epoch seconds, so that every process on every machine reads them alike. ``generation``
    counts the refreshes since the grant began; ``grant`` is the grant's first refresh token, which names the store
    (a connection's ``refresh_token`` extra) and is spent."""

    access_token: str = field(repr=False)
    access_expires_at: float
    access_lifetime: float
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: float | None = None
    generation: int = 0
    grant: str | None = field(default=None, repr=False)

    def seconds_left(self) -> float:
        return self.access_expires_at - time.time()

    def as_access_token(self) -> AccessToken:
        """The access token as this process caches it, whatever its freshness."""
        lifetime = self.access_lifetime
        return AccessToken(
            self.access_token,
            time.monotonic() + self.seconds_left(),
            lifetime,
            self.refresh_token,
            margin=refresh_margin(lifetime),
            shared=self,
        )

    def access(self) -> AccessToken | None:
        """The access token as this process caches it, or None when it is stale for this process."""
        token = self.as_access_token()
        return token if self.seconds_left() > 0 and token.is_fresh() else None

    def secrets(self) -> list[str]:
        return [s for s in (self.access_token, self.refresh_token, self.grant) if s]

    def to_json(self) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "access_expires_at": self.access_expires_at,
                "access_lifetime": self.access_lifetime,
                "refresh_token": self.refresh_token,
                "refresh_expires_at": self.refresh_expires_at,
                "generation": self.generation,
                "grant": self.grant,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> StoredUserTokens | None:
        """What a store holds, or None when it holds nothing usable (never raises on a damaged value)."""
        try:
            data = json.loads(text or "")
            generation = data.get("generation", 0)
            if isinstance(generation, bool) or not isinstance(generation, int):
                raise TypeError("generation")
            return cls(
                str(data["access_token"]),
                float(data["access_expires_at"]),
                float(data["access_lifetime"]),
                data.get("refresh_token") or None,
                float(data["refresh_expires_at"]) if data.get("refresh_expires_at") else None,
                generation,
                data.get("grant") or None,
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


@dataclass(frozen=True)
class RefreshLease:
    """Which process may refresh a grant now (``holder``), until when (wall-clock epoch seconds)."""

    holder: str
    until: float

    @classmethod
    def new(cls) -> RefreshLease:
        return cls(f"{_PROCESS_LEASE_PREFIX}-{uuid.uuid4().hex[:12]}", time.time() + LEASE_SECONDS)

    def live(self) -> bool:
        return self.until > time.time()

    def taken_by_this_process(self) -> bool:
        return self.holder.startswith(f"{_PROCESS_LEASE_PREFIX}-")

    def to_json(self) -> str:
        return json.dumps({"holder": self.holder, "until": self.until})

    @classmethod
    def from_json(cls, text: str | None) -> RefreshLease | None:
        try:
            data = json.loads(text or "")
            return cls(str(data["holder"]), float(data["until"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


class UserTokenStore(Protocol):
    """Where the processes of one deployment share a grant's user tokens and its refresh lease (the hook keeps
    them in Airflow Variables). Reads answer None when nothing is stored; a read or write that cannot reach the
    store raises ``FeishuVCTokenStoreError``. The async methods must not block the event loop."""

    def load(self) -> StoredUserTokens | None: ...

    def save(self, tokens: StoredUserTokens) -> None: ...

    def load_lease(self) -> RefreshLease | None: ...

    def save_lease(self, lease: RefreshLease) -> None: ...

    async def aload(self) -> StoredUserTokens | None: ...

    async def asave(self, tokens: StoredUserTokens) -> None: ...

    async def aload_lease(self) -> RefreshLease | None: ...

    async def asave_lease(self, lease: RefreshLease) -> None: ...


def token_key(config: ClientConfig) -> TokenKey:
    return (*config.app_key, config.token_kind)


class TokenCache:
    """Holds one token per app and token kind."""

    def __init__(self) -> None:
        self._tokens: dict[TokenKey, AccessToken] = {}
        self._guard = threading.Lock()
        self._thread_locks: dict[TokenKey, threading.Lock] = {}
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[TokenKey, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )

    def usable(self, key: TokenKey, stale: str | None = None) -> AccessToken | None:
        """The cached token, unless it is close to expiry or is the one Feishu just rejected."""
        token = self._tokens.get(key)
        if token is None or not token.is_fresh() or (stale is not None and token.value == stale):
            return None
        return token

    def clear(self) -> None:
        with self._guard:
            self._tokens.clear()

    def thread_lock(self, key: TokenKey) -> threading.Lock:
        with self._guard:
            return self._thread_locks.setdefault(key, threading.Lock())

    def async_lock(self, key: TokenKey) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._guard:
            return self._async_locks.setdefault(loop, {}).setdefault(key, asyncio.Lock())

    def renew(
        self, config: ClientConfig, policy: RetryPolicy, *, stale: str | None = None, shared: bool = False
    ) -> Flow[AccessToken]:
        """Fetch a new token for ``config``'s app (its secrets registered with the masker) and cache it. ``stale``
        is a token Feishu just rejected; ``shared`` says the driver has a store for user tokens."""
        key = token_key(config)
        token = yield from fetch_token(config, policy, self._tokens.get(key), stale=stale, shared=shared)
        self._tokens[key] = token
        return token


TOKEN_CACHE = TokenCache()


def _token_fields(payload: Mapping[str, Any], value_key: str) -> Mapping[str, Any]:
    """Where a token answer keeps its fields: in the answer itself (v2 OAuth) or in its ``data`` (v1)."""
    data = payload.get("data")
    return data if value_key not in payload and isinstance(data, dict) else payload


def _token_from(payload: Mapping[str, Any], value_key: str, ttl_key: str) -> AccessToken:
    source = _token_fields(payload, value_key)
    value = source.get(value_key)
    raw_lifetime: Any = source.get(ttl_key)
    try:
        lifetime = float(raw_lifetime)
    except (TypeError, ValueError):
        lifetime = 0.0
    refresh_token = source.get("refresh_token")
    if not isinstance(value, str) or not value or not lifetime > 0 or lifetime == float("inf"):
        raise FeishuVCAPIError(code=0, msg=f"the token answer has no usable {value_key} / {ttl_key}", http_status=200)
    return AccessToken(
        value=value,
        expires_at=time.monotonic() + lifetime,
        lifetime=lifetime,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
    )


def _post(path: str, body: Mapping[str, Any], policy: RetryPolicy) -> Flow[dict[str, Any]]:
    response = yield from call_with_retries(HttpRequest("POST", path, json_body=body), policy, authenticated=False)
    return response.payload


def _mask(*secrets: str | None) -> Flow[None]:
    for secret in secrets:
        if secret:
            yield MaskSecret(secret)


# --- user tokens, shared by every process -------------------------------------------------------------------


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
    token = tokens.access() if tokens is not None else None
    if token is None or token.value == rejected:
        return None
    yield from _mask(*tokens.secrets())  # type: ignore[union-attr]
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
            # Feishu does not say how long a given user token has left: use it until Feishu rejects it.
            yield from _mask(config.user_access_token)
            return AccessToken(config.user_access_token, time.monotonic() + 7200, 7200)
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
        raise FeishuVCAPIError(
            code=99991677,
            msg="the user access token is invalid or expired and the connection has no refresh_token",
            http_status=401,
        )
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
    received = _token_from(payload, "access_token", "expires_in")
    yield from _mask(received.value, received.refresh_token)  # before anything can quote them
    grant = (base.grant if base else None) or config.refresh_token
    tokens = _to_store(received, payload, generation=(base.generation if base else 0) + 1, grant=grant)
    saved = yield from _save(tokens)
    token = tokens.as_access_token()
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
        yield from _mask(config.user_access_token)
        return AccessToken(config.user_access_token, time.monotonic() + 7200, 7200)
    refresh_token = (current.refresh_token if current else None) or config.refresh_token
    if not refresh_token:
        raise FeishuVCAPIError(
            code=99991677,
            msg="the user access token is invalid or expired and the connection has no refresh_token",
            http_status=401,
        )
    payload = yield from _refresh(config, refresh_token, policy)
    token = _token_from(payload, "access_token", "expires_in")
    yield from _mask(token.value, token.refresh_token)
    return token


def exchange_authorization_code(
    config: ClientConfig, code: str, redirect_uri: str, policy: RetryPolicy
) -> Flow[StoredUserTokens]:
    """The user's first tokens, for the authorization code the user's sign-in handed out (once, within minutes)."""
    payload = yield from _oauth_grant(config, policy, "authorization_code", code=code, redirect_uri=redirect_uri)
    token = _token_from(payload, "access_token", "expires_in")
    yield from _mask(token.value, token.refresh_token)
    if not token.refresh_token:
        raise FeishuVCAPIError(
            code=0,
            msg="Feishu sent no refresh_token: the app needs the offline_access scope, and the sign-in must ask for it",
            http_status=200,
        )
    return _to_store(token, payload, generation=1, grant=token.refresh_token)


def _to_store(
    token: AccessToken, payload: Mapping[str, Any], *, generation: int, grant: str | None
) -> StoredUserTokens:
    source = _token_fields(payload, "access_token")
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
    return (yield from _post(USER_TOKEN_PATH, body, policy))


def fetch_token(
    config: ClientConfig,
    policy: RetryPolicy,
    current: AccessToken | None,
    *,
    stale: str | None = None,
    shared: bool = False,
) -> Flow[AccessToken]:
    """Fetch the access token the app acts with (its secrets registered with the masker): tenant token (self-built
    or store app) or user token."""
    if config.uses_user_token:
        return (yield from fetch_user_token(config, policy, current, stale=stale, shared=shared))
    token = yield from _fetch_tenant_token(config, policy)
    yield from _mask(token.value)
    return token


def _fetch_tenant_token(config: ClientConfig, policy: RetryPolicy) -> Flow[AccessToken]:
    credentials = {"app_id": config.app_id, "app_secret": config.app_secret}
    if config.app_type == "self_built":
        payload = yield from _post(TENANT_TOKEN_INTERNAL_PATH, credentials, policy)
        return _token_from(payload, "tenant_access_token", "expire")

    try:
        app_payload = yield from _post(STORE_APP_TOKEN_PATH, {**credentials, "app_ticket": config.app_ticket}, policy)
    except FeishuVCAPIError as error:
        if error.code == STALE_APP_TICKET_CODE:
            yield from _post(APP_TICKET_RESEND_PATH, credentials, policy)
        raise
    app_token = _token_from(app_payload, "app_access_token", "expire")
    tenant_body = {"app_access_token": app_token.value, "tenant_key": config.tenant_key}
    payload = yield from _post(STORE_TENANT_TOKEN_PATH, tenant_body, policy)
    return _token_from(payload, "tenant_access_token", "expire")
