"""The process-wide token cache: one token per app (base URL, App ID, tenant key) and token kind. Drivers fetch
under :meth:`TokenCache.thread_lock` / :meth:`TokenCache.async_lock`, so that many callers asking at once cause one
fetch.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.protocol import Flow, RetryPolicy
from airflow_provider_feishu_vc.client.tokens import AccessToken, fetch_tenant_token, mask_secrets
from airflow_provider_feishu_vc.client.user_grant import fetch_user_token

TokenKey = tuple[str, str, str, str]


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

    def forked(self) -> None:
        """In the child of ``os.fork``: locks of its own (a parent's thread may have held one at the fork, which
        the child would then wait on for ever); the tokens stay valid."""
        self._guard = threading.Lock()
        self._thread_locks = {}
        self._async_locks = weakref.WeakKeyDictionary()

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
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=TOKEN_CACHE.forked)


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
    token = yield from fetch_tenant_token(config, policy)
    yield from mask_secrets(token.value)
    return token
