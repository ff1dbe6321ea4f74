"""The process-wide token cache, keyed by app (base URL, App ID, tenant key) and token kind."""

from __future__ import annotations

import asyncio
import threading
import weakref

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.protocol import AccessToken

TokenKey = tuple[str, str, str, str]


def token_key(config: ClientConfig) -> TokenKey:
    return (*config.app_key, config.token_kind)


class TokenCache:
    """Holds one token per app. Callers fetch under :meth:`thread_lock` / :meth:`async_lock`, so that many
    callers asking at once cause one fetch."""

    def __init__(self) -> None:
        self._tokens: dict[TokenKey, AccessToken] = {}
        self._guard = threading.Lock()
        self._thread_locks: dict[TokenKey, threading.Lock] = {}
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[TokenKey, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )

    def usable(self, key: TokenKey, stale: str | None) -> AccessToken | None:
        """The cached token, unless it is close to expiry or is the one Feishu just rejected."""
        token = self._tokens.get(key)
        if token is None or not token.is_fresh() or (stale is not None and token.value == stale):
            return None
        return token

    def current(self, key: TokenKey) -> AccessToken | None:
        return self._tokens.get(key)

    def store(self, key: TokenKey, token: AccessToken) -> None:
        self._tokens[key] = token

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


TOKEN_CACHE = TokenCache()
