"""Non-blocking Feishu VC client for triggers: performs the steps of :mod:`.api` flows with ``httpx.AsyncClient``.

Everything that can be shared is shared: per connection settings inside one event loop (one triggerer) the
HTTP pool, per app and process the token (one fetch however many callers ask at once) and the rate budgets.
The first session of a process loads the CA bundle and httpx's async backend in a worker thread, off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client import api, protocol, transport
from airflow_provider_feishu_vc.client.calls import ExportCalls
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCTokenStoreError, FeishuVCTransportError
from airflow_provider_feishu_vc.client.files import FileInfo
from airflow_provider_feishu_vc.client.protocol import Driving, Flow, RetryPolicy, T
from airflow_provider_feishu_vc.client.tokens import TOKEN_CACHE, AccessToken, TokenCache, UserTokenStore
from airflow_provider_feishu_vc.client.transport import SecretCallback, transport_errors

if TYPE_CHECKING:
    import httpx

MAX_POOL_CONNECTIONS = 32


@dataclass
class AppSession:
    """What the callers of one connection's settings share inside one event loop: the HTTP pool, built off the
    loop on first use. (Tokens and rate budgets are shared process-wide, by the base class.)"""

    config: ClientConfig
    users: int = 0
    http: httpx.AsyncClient | None = None
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def opened(self) -> httpx.AsyncClient:
        if self.http is None:
            async with self._opening:
                if self.http is None:
                    self.http = await asyncio.to_thread(_new_http_client, self.config)
        return self.http


def _new_http_client(config: ClientConfig) -> httpx.AsyncClient:
    """Blocking set-up (CA bundle, anyio's asyncio backend): run in a thread, never on the event loop."""
    import httpx

    with contextlib.suppress(ImportError):
        importlib.import_module("anyio._backends._asyncio")  # imported by httpx on its first request otherwise
    limits = httpx.Limits(max_connections=MAX_POOL_CONNECTIONS, max_keepalive_connections=MAX_POOL_CONNECTIONS)
    return httpx.AsyncClient(**transport.client_options(config), limits=limits)


_SESSIONS: dict[tuple[int, ClientConfig], AppSession] = {}


@asynccontextmanager
async def shared_client(
    config: ClientConfig,
    *,
    on_secret: SecretCallback | None = None,
    policy: RetryPolicy | None = None,
    token_store: UserTokenStore | None = None,
) -> AsyncIterator[AsyncFeishuVCClient]:
    """An async client sharing its pool with every caller of the same settings in this loop, and the app's rate
    budgets with the whole process; the pool closes when its last user leaves."""
    key = (id(asyncio.get_running_loop()), config)
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = AppSession(config)
    session.users += 1
    try:
        yield AsyncFeishuVCClient(config, session, on_secret=on_secret, policy=policy, token_store=token_store)
    finally:
        session.users -= 1
        if session.users == 0:
            del _SESSIONS[key]
            if session.http is not None:
                await asyncio.shield(session.http.aclose())


def open_sessions() -> int:
    """How many app sessions are open in this process (for tests of the cleanup)."""
    return len(_SESSIONS)


@dataclass
class AsyncDownload:
    info: FileInfo
    chunks: AsyncIterator[bytes]


class AsyncFeishuVCClient(ExportCalls):
    """Async twin of :class:`~.sync_client.FeishuVCClient`; get one from :func:`shared_client`."""

    driver_name = "async"

    def __init__(
        self, config: ClientConfig, session: AppSession, *, on_secret: SecretCallback | None = None,
        token_cache: TokenCache = TOKEN_CACHE, policy: RetryPolicy | None = None,
        token_store: UserTokenStore | None = None,
    ) -> None:  # fmt: skip
        super().__init__(config, token_cache=token_cache, policy=policy, token_store=token_store)
        self._session = session
        self._on_secret = on_secret

    if TYPE_CHECKING:  # what the shared calls of ExportCalls return when this driver runs them

        async def create_export(self, export_type: str, user_id_type: str | None = None, **fields: Any) -> str: ...

        async def get_export(self, export_task_id: str, *, retries: int | None = None) -> api.ExportTask: ...

        async def _renew_token(self, stale: str | None = None) -> AccessToken: ...

    async def access_token(self, *, stale: str | None = None) -> str:
        token = self.tokens.usable(self.token_key, stale)
        if token is None:
            async with self.tokens.async_lock(self.token_key):
                token = self.tokens.usable(self.token_key, stale) or await self._renew_token(stale)
        return token.value

    @asynccontextmanager
    async def open_download(self, file_token: str, chunk_size: int | None = None) -> AsyncIterator[AsyncDownload]:
        answer = await self.run(api.open_download(file_token, self.policy, self.budgets))

        async def chunks() -> AsyncIterator[bytes]:
            with transport_errors(self.config):
                async for chunk in answer.stream.aiter_bytes(chunk_size):
                    yield chunk
            answer.check_complete(answer.stream.num_bytes_downloaded)

        try:
            yield AsyncDownload(answer.info, chunks())
        finally:
            await answer.stream.aclose()

    # -- performing the steps of a flow ----------------------------------------------------------------------

    async def run(self, flow: Flow[T]) -> T:
        driving = Driving(flow)
        while (step := driving.next_step()) is not None:
            try:
                driving.outcome = await getattr(self, f"_{step.handler}")(step)
            except (FeishuVCTransportError, FeishuVCTokenStoreError) as error:
                driving.outcome = error
        return driving.result  # type: ignore[return-value]

    async def _send(self, request: protocol.HttpRequest) -> protocol.HttpResponse:
        http = await self._session.opened()
        with transport_errors(self.config):
            built = transport.build_request(http, request, self.driver_name)
            response = await http.send(built, stream=request.stream)
            head = transport.response_head(response, request)
            if request.stream and not head.is_file:
                head.body = await response.aread()  # an error's JSON envelope
        return head

    async def _sleep(self, step: protocol.Sleep) -> None:
        await asyncio.sleep(step.seconds)

    async def _token(self, step: protocol.NeedToken) -> str:
        return await self.access_token(stale=step.stale)

    async def _mask(self, step: protocol.MaskSecret) -> None:
        result = self._on_secret(step.value) if self._on_secret is not None else None
        if inspect.isawaitable(result):
            await result

    async def _shared_tokens(self, step: protocol.SharedUserTokens) -> Any:
        if self.token_store is None:
            raise FeishuVCTokenStoreError("this client has no shared user-token store")
        use = getattr(self.token_store, f"a{step.action}")
        return await (use(step.value) if step.action.startswith("save") else use())
