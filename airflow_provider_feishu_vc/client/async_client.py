"""Non-blocking Feishu VC client for triggers: drives the flows of :mod:`.protocol` with ``httpx.AsyncClient``.

Everything that can be shared is shared per app inside one event loop (one triggerer): the HTTP pool, the
token (one fetch however many callers ask at once) and the rate budget of the export endpoints.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client import endpoints
from airflow_provider_feishu_vc.client.budget import RateBudget
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCTransportError
from airflow_provider_feishu_vc.client.files import FileInfo, check_complete
from airflow_provider_feishu_vc.client.protocol import (
    ExportTask,
    Flow,
    HttpRequest,
    HttpResponse,
    NeedToken,
    RetryPolicy,
    Sleep,
    T,
    call,
    call_json,
    fetch_token,
    is_file_response,
)
from airflow_provider_feishu_vc.client.tokens import TOKEN_CACHE, TokenCache, token_key
from airflow_provider_feishu_vc.client.transport import (
    CHUNK_SIZE,
    SecretCallback,
    client_options,
    lowercase_headers,
    transport_error,
)

if TYPE_CHECKING:
    import httpx

MAX_POOL_CONNECTIONS = 32


@dataclass
class AppSession:
    """What one app shares inside one event loop."""

    http: httpx.AsyncClient
    budget: RateBudget
    users: int = 0
    closing: set[asyncio.Task[Any]] = field(default_factory=set)


_SESSIONS: dict[tuple[int, tuple[str, str, str]], AppSession] = {}


def _new_session(config: ClientConfig) -> AppSession:
    import httpx

    http = httpx.AsyncClient(
        **client_options(config),
        limits=httpx.Limits(max_connections=MAX_POOL_CONNECTIONS, max_keepalive_connections=MAX_POOL_CONNECTIONS),
    )
    return AppSession(http=http, budget=RateBudget(config.rate_limit_per_minute))


@asynccontextmanager
async def shared_client(
    config: ClientConfig, *, on_secret: SecretCallback | None = None, policy: RetryPolicy | None = None
) -> AsyncIterator[AsyncFeishuVCClient]:
    """An async client using the app's shared pool and budget; the pool closes when its last user leaves."""
    key = (id(asyncio.get_running_loop()), config.app_key)
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = _new_session(config)
    session.users += 1
    try:
        yield AsyncFeishuVCClient(config, session, on_secret=on_secret, policy=policy)
    finally:
        session.users -= 1
        if session.users == 0:
            del _SESSIONS[key]
            await asyncio.shield(session.http.aclose())


def open_sessions() -> int:
    """How many app sessions are open in this process (for tests of the cleanup)."""
    return len(_SESSIONS)


@dataclass
class AsyncDownload:
    info: FileInfo
    chunks: AsyncIterator[bytes]


class AsyncFeishuVCClient:
    """Async twin of :class:`~.sync_client.FeishuVCClient`; get one from :func:`shared_client`."""

    def __init__(
        self,
        config: ClientConfig,
        session: AppSession,
        *,
        on_secret: SecretCallback | None = None,
        token_cache: TokenCache = TOKEN_CACHE,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self.policy = policy or RetryPolicy(max_retries=config.max_retries)
        self._session = session
        self._on_secret = on_secret
        self._tokens = token_cache

    async def access_token(self, *, stale: str | None = None) -> str:
        key = token_key(self.config)
        token = self._tokens.usable(key, stale)
        if token is None:
            async with self._tokens.async_lock(key):
                token = self._tokens.usable(key, stale)
                if token is None:
                    token = await self._run(fetch_token(self.config, self.policy, self._tokens.current(key)))
                    await self._mask(token.value, token.refresh_token)
                    self._tokens.store(key, token)
        return token.value

    async def create_export(self, export_type: str, user_id_type: str | None = None, **fields: Any) -> str:
        request = endpoints.create_export_request(export_type, fields, user_id_type)
        return endpoints.read_export_task_id(await self._run(call_json(request, self.policy)))

    async def get_export(self, export_task_id: str) -> ExportTask:
        request = endpoints.get_export_request(export_task_id)
        return endpoints.read_export_task(export_task_id, await self._run(call_json(request, self.policy)))

    @asynccontextmanager
    async def open_download(self, file_token: str, chunk_size: int | None = CHUNK_SIZE) -> AsyncIterator[AsyncDownload]:
        import httpx

        response = await self._run(call(endpoints.download_request(file_token), self.policy))
        stream = response.stream
        info = FileInfo.from_headers(response.headers)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in stream.aiter_bytes(chunk_size):
                    yield chunk
            except httpx.TransportError as error:
                raise transport_error(self.config, error) from error
            check_complete(info, stream.num_bytes_downloaded)

        try:
            yield AsyncDownload(info, chunks())
        finally:
            await stream.aclose()

    async def _mask(self, *secrets: str | None) -> None:
        if self._on_secret is None:
            return
        for secret in secrets:
            if secret:
                result = self._on_secret(secret)
                if inspect.isawaitable(result):
                    await result

    async def _run(self, flow: Flow[T]) -> T:
        outcome: Any = None
        failure: Exception | None = None
        while True:
            try:
                step = flow.throw(failure) if failure is not None else flow.send(outcome)
            except StopIteration as stop:
                return stop.value
            outcome, failure = None, None
            if isinstance(step, HttpRequest):
                try:
                    outcome = await self._send(step)
                except FeishuVCTransportError as error:
                    failure = error
            elif isinstance(step, Sleep):
                if step.rate_limited:
                    self._session.budget.pause(step.seconds)
                await asyncio.sleep(step.seconds)
            elif isinstance(step, NeedToken):
                outcome = await self.access_token(stale=step.stale)

    async def _send(self, request: HttpRequest) -> HttpResponse:
        import httpx

        if request.rate_limited_endpoint:
            await self._session.budget.aacquire()
        http = self._session.http
        try:
            built = http.build_request(
                request.method,
                request.path,
                params=request.params,
                content=request.body_bytes(),
                headers=request.headers("async"),
            )
            response = await http.send(built, stream=True)
        except httpx.TransportError as error:
            raise transport_error(self.config, error) from error
        headers = lowercase_headers(response.headers)
        if request.stream and is_file_response(response.status_code, headers):
            return HttpResponse(response.status_code, headers, stream=response)
        try:
            body = await response.aread()
        except httpx.TransportError as error:
            raise transport_error(self.config, error) from error
        finally:
            await response.aclose()
        return HttpResponse(response.status_code, headers, body)
