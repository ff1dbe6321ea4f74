"""Access tokens: how each kind of app obtains one (as flows), and the process-wide cache that shares them.

The cache is keyed by app (base URL, App ID, tenant key) and token kind. Drivers fetch under
:meth:`TokenCache.thread_lock` / :meth:`TokenCache.async_lock`, so that many callers asking at once cause one
fetch.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import STALE_APP_TICKET_CODE, FeishuVCAPIError
from airflow_provider_feishu_vc.client.protocol import Flow, HttpRequest, MaskSecret, RetryPolicy, call_with_retries

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


def fetch_token(config: ClientConfig, policy: RetryPolicy, current: AccessToken | None) -> Flow[AccessToken]:
    """Fetch the access token the app acts with: tenant token (self-built or store app) or user token."""
    if config.uses_user_token:
        if current is None and config.user_access_token:
            # Feishu does not say how long a given user token has left: use it until Feishu rejects it.
            return AccessToken(config.user_access_token, time.monotonic() + 7200, 7200)
        refresh_token = (current.refresh_token if current else None) or config.refresh_token
        if not refresh_token:
            raise FeishuVCAPIError(
                code=99991677,
                msg="the user access token is invalid or expired and the connection has no refresh_token",
                http_status=401,
            )
        body = {
            "grant_type": "refresh_token",
            "client_id": config.app_id,
            "client_secret": config.app_secret,
            "refresh_token": refresh_token,
        }
        payload = yield from _post(USER_TOKEN_PATH, body, policy)
        return _token_from(payload, "access_token", "expires_in")

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
