"""Access tokens: how each kind of app obtains one (as flows), and the process-wide cache that shares them.

The cache is keyed by app (base URL, App ID, tenant key) and token kind. Drivers fetch under
:meth:`TokenCache.thread_lock` / :meth:`TokenCache.async_lock`, so that many callers asking at once cause one
fetch.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import REFRESH_TOKEN_USED_CODE, STALE_APP_TICKET_CODE, FeishuVCAPIError
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


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    expires_at: float  # time.monotonic() seconds
    lifetime: float
    refresh_token: str | None = field(default=None, repr=False)  # user tokens: the single-use successor

    def is_fresh(self, now: float | None = None) -> bool:
        """Fresh until a few minutes before expiry (a quarter of its life for short-lived tokens)."""
        margin = min(300.0, self.lifetime / 4)
        return (time.monotonic() if now is None else now) < self.expires_at - margin


@dataclass(frozen=True)
class StoredUserTokens:
    """The user tokens one deployment shares: the current access token and the current (single-use) refresh token.
    Times are wall-clock epoch seconds, so that every process on every machine reads them alike."""

    access_token: str = field(repr=False)
    access_expires_at: float
    access_lifetime: float
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: float | None = None

    def access(self, now: float | None = None) -> AccessToken | None:
        """The access token as this process caches it, or None when it is close to expiry."""
        left = self.access_expires_at - (time.time() if now is None else now)
        token = AccessToken(self.access_token, time.monotonic() + left, self.access_lifetime, self.refresh_token)
        return token if left > 0 and token.is_fresh() else None

    def to_json(self) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "access_expires_at": self.access_expires_at,
                "access_lifetime": self.access_lifetime,
                "refresh_token": self.refresh_token,
                "refresh_expires_at": self.refresh_expires_at,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> StoredUserTokens | None:
        """What a store holds, or None when it holds nothing usable (never raises on a damaged value)."""
        try:
            data = json.loads(text or "")
            return cls(
                str(data["access_token"]),
                float(data["access_expires_at"]),
                float(data["access_lifetime"]),
                data.get("refresh_token") or None,
                float(data["refresh_expires_at"]) if data.get("refresh_expires_at") else None,
            )
        except (ValueError, TypeError, KeyError):
            return None


class UserTokenStore(Protocol):
    """Where the processes of one deployment share a connection's user tokens (the hook keeps them in an Airflow
    Variable). The async methods must not block the event loop."""

    def load(self) -> StoredUserTokens | None: ...

    def save(self, tokens: StoredUserTokens) -> None: ...

    async def aload(self) -> StoredUserTokens | None: ...

    async def asave(self, tokens: StoredUserTokens) -> None: ...


#: After Feishu says a refresh token was used already, how long to wait before each look at the shared store for
#: the tokens the process that spent it has saved (bounded: never a loop).
SHARED_TOKEN_WAITS = (0.0, 0.5, 1.0, 2.0)


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

    def renew(self, config: ClientConfig, policy: RetryPolicy) -> Flow[AccessToken]:
        """Fetch a new token for ``config``'s app, register its secrets with the masker, and cache it."""
        key = token_key(config)
        token = yield from fetch_token(config, policy, self._tokens.get(key))
        yield MaskSecret(token.value)
        if token.refresh_token:
            yield MaskSecret(token.refresh_token)
        self._tokens[key] = token
        return token


TOKEN_CACHE = TokenCache()


def _token_from(payload: Mapping[str, Any], value_key: str, ttl_key: str) -> AccessToken:
    source = payload.get("data") if value_key not in payload and isinstance(payload.get("data"), dict) else payload
    value = source.get(value_key)
    try:
        lifetime = float(source.get(ttl_key))
    except (TypeError, ValueError):
        lifetime = 0.0
    if not value or lifetime <= 0:
        raise FeishuVCAPIError(code=0, msg=f"the token answer has no {value_key} / {ttl_key}", http_status=200)
    return AccessToken(
        value=value,
        expires_at=time.monotonic() + lifetime,
        lifetime=lifetime,
        refresh_token=source.get("refresh_token"),
    )


def _post(path: str, body: Mapping[str, Any], policy: RetryPolicy) -> Flow[dict[str, Any]]:
    response = yield from call_with_retries(HttpRequest("POST", path, json_body=body), policy, authenticated=False)
    return response.payload


def fetch_user_token(config: ClientConfig, policy: RetryPolicy, current: AccessToken | None) -> Flow[AccessToken]:
    """The user's access token: a still-fresh one another process saved, else a refresh with the newest refresh
    token, whose successor is saved for every process at once (refresh tokens work once)."""
    stored: StoredUserTokens | None = yield SharedUserTokens()
    shared = stored.access() if stored is not None else None
    if shared is not None and (current is None or shared.value != current.value):
        return shared
    if stored is None and current is None and config.user_access_token:
        # Feishu does not say how long a given user token has left: use it until Feishu rejects it.
        return AccessToken(config.user_access_token, time.monotonic() + 7200, 7200)
    refresh_token = (
        (stored.refresh_token if stored else None)
        or (current.refresh_token if current else None)
        or config.refresh_token
    )
    if not refresh_token:
        raise FeishuVCAPIError(
            code=99991677,
            msg="the user access token is invalid or expired and the connection has no refresh_token",
            http_status=401,
        )
    try:
        payload = yield from _refresh(config, refresh_token, policy)
    except FeishuVCAPIError as error:
        if error.code != REFRESH_TOKEN_USED_CODE:
            raise
        # Another process spent it first and is saving its successor: take what it saved.
        newer = yield from _successor_of(refresh_token)
        if newer is None:
            raise
        shared = newer.access()
        if shared is not None:
            return shared
        if not newer.refresh_token:
            raise
        payload = yield from _refresh(config, newer.refresh_token, policy)
    token = _token_from(payload, "access_token", "expires_in")
    yield SharedUserTokens(save=_to_store(token, payload))
    return token


def exchange_authorization_code(
    config: ClientConfig, code: str, redirect_uri: str, policy: RetryPolicy
) -> Flow[StoredUserTokens]:
    """The user's first tokens, for the authorization code the user's sign-in handed out (once, within minutes)."""
    payload = yield from _oauth_grant(config, policy, "authorization_code", code=code, redirect_uri=redirect_uri)
    token = _token_from(payload, "access_token", "expires_in")
    yield MaskSecret(token.value)
    if not token.refresh_token:
        raise FeishuVCAPIError(
            code=0,
            msg="Feishu sent no refresh_token: the app needs the offline_access scope, and the sign-in must ask for it",
            http_status=200,
        )
    yield MaskSecret(token.refresh_token)
    return _to_store(token, payload)


def _to_store(token: AccessToken, payload: Mapping[str, Any]) -> StoredUserTokens:
    refresh_lifetime = payload.get("refresh_token_expires_in")
    return StoredUserTokens(
        token.value,
        time.time() + token.lifetime,
        token.lifetime,
        token.refresh_token,
        time.time() + float(refresh_lifetime) if isinstance(refresh_lifetime, (int, float)) else None,
    )


def _refresh(config: ClientConfig, refresh_token: str, policy: RetryPolicy) -> Flow[dict[str, Any]]:
    return (yield from _oauth_grant(config, policy, "refresh_token", refresh_token=refresh_token))


def _oauth_grant(config: ClientConfig, policy: RetryPolicy, grant_type: str, **fields: str) -> Flow[dict[str, Any]]:
    """One request to the v2 OAuth token endpoint, as the app (client) asking for ``grant_type``."""
    body = {"grant_type": grant_type, "client_id": config.app_id, "client_secret": config.app_secret, **fields}
    return (yield from _post(USER_TOKEN_PATH, body, policy))


def _successor_of(spent: str) -> Flow[StoredUserTokens | None]:
    """The tokens another process saved after spending ``spent``, looked for a few times (bounded)."""
    for wait in SHARED_TOKEN_WAITS:
        if wait:
            yield Sleep(wait)
        stored: StoredUserTokens | None = yield SharedUserTokens()
        if stored is not None and stored.refresh_token and stored.refresh_token != spent:
            return stored
    return None


def fetch_token(config: ClientConfig, policy: RetryPolicy, current: AccessToken | None) -> Flow[AccessToken]:
    """Fetch the access token the app acts with: tenant token (self-built or store app) or user token."""
    if config.uses_user_token:
        return (yield from fetch_user_token(config, policy, current))

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
