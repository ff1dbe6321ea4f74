"""Non-blocking Feishu VC client for triggers: performs the steps of :mod:`.api` flows with ``httpx.AsyncClient``.

Everything that can be shared is shared: per connection settings inside one event loop (one triggerer) the
HTTP pool, per app and process the token (one fetch however many callers ask at once) and the rate budgets.
The first session of a process loads the CA bundle and httpx's async backend in a worker thread, off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import inspect
import sys
import time
import types
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client import api, protocol, transport
from airflow_provider_feishu_vc.client.calls import ExportCalls
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCTokenStoreError, FeishuVCTransportError
from airflow_provider_feishu_vc.client.files import FileInfo
from airflow_provider_feishu_vc.client.protocol import Driving, Flow, RetryPolicy, T
from airflow_provider_feishu_vc.client.stored_tokens import UserTokenStore
from airflow_provider_feishu_vc.client.token_cache import TOKEN_CACHE, TokenCache
from airflow_provider_feishu_vc.client.tokens import AccessToken
from airflow_provider_feishu_vc.client.transport import SecretCallback, transport_errors

if TYPE_CHECKING:
    import httpx

MAX_POOL_CONNECTIONS = 32
#: How often the thread that builds the first HTTP pool hands the GIL back to the event loop, and for how long.
GIL_HAND_BACK_EVERY = 0.001
GIL_HAND_BACK_PAUSE = 0.0002
#: Status checks of one app that run at once for the waits queued behind them (each paced by the rate budget).
STATUS_CHECKERS = 8


class _StatusCheck(asyncio.Future["api.ExportTask"]):
    """A queued status check: the future its waiter awaits, carrying what to check (one object, not a future and a
    tuple)."""

    __slots__ = ("client", "export_task_id")

    def __init__(self, client: AsyncFeishuVCClient, export_task_id: str) -> None:
        super().__init__()
        self.client = client
        self.export_task_id = export_task_id


class StatusQueue:
    """The export status checks of every wait of one app in a loop, run in turn by at most ``STATUS_CHECKERS``
    shared tasks.

    A wait queued here holds one future, not a request flow of its own sleeping until its rate-budget slot: with
    thousands of waits on one budget most of them sit in this queue, and what each one keeps alive is what the
    event loop's garbage collector walks. The checkers start when there is work and end when there is none; they
    run in an empty context, so no wait's log context tags another's request.
    """

    def __init__(self, checkers: int = STATUS_CHECKERS) -> None:
        self._checkers = checkers
        self._waiting: deque[_StatusCheck] = deque()
        self._running: set[asyncio.Task[None]] = set()
        #: Checkers started and not yet past their last look at the queue (a finished task leaves ``_running`` only
        #: a loop turn later, after the waiter it just answered may have queued its next check).
        self._active = 0

    def get_export(self, client: AsyncFeishuVCClient, export_task_id: str) -> asyncio.Future[api.ExportTask]:
        """Queue a status check; the future holds its result or error (cancel it to leave the queue)."""
        future = _StatusCheck(client, export_task_id)
        self._waiting.append(future)
        if self._active < self._checkers:
            self._active += 1
            checker = contextvars.Context().run(asyncio.ensure_future, self._check_in_turn())
            self._running.add(checker)
            checker.add_done_callback(self._running.discard)
        return future

    async def _check_in_turn(self) -> None:
        try:
            while self._waiting:
                future = self._waiting.popleft()
                if future.done():  # its wait was cancelled while queued
                    continue
                try:
                    task = await future.client.get_export(future.export_task_id)
                except Exception as error:
                    if not future.done():
                        future.set_exception(error)
                except BaseException:
                    future.cancel()
                    raise
                else:
                    if not future.done():
                        future.set_result(task)
        finally:
            self._active -= 1  # in the same step as the last look at the queue: no check is left unserved

    def close(self) -> None:
        """Stop the checkers (the session's last user left: nobody waits for them)."""
        for checker in self._running:
            checker.cancel()


@dataclass
class AppSession:
    """What the callers of one connection's settings share inside one event loop: the HTTP pool, built off the
    loop on first use, and the queue of status checks. (Tokens and rate budgets are shared process-wide, by the
    base class.)"""

    key: tuple[int, ClientConfig]
    users: int = 0
    http: httpx.AsyncClient | None = None
    status_checks: StatusQueue = field(default_factory=StatusQueue)
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def config(self) -> ClientConfig:
        return self.key[1]

    async def opened(self) -> httpx.AsyncClient:
        if self.http is None:
            async with self._opening:
                if self.http is None:
                    self.http = await asyncio.to_thread(_new_http_client, self.config)
        return self.http

    async def leave(self) -> None:
        """One user has left; the last one closes the pool and stops the checkers."""
        self.users -= 1
        if self.users == 0:
            del _SESSIONS[self.key]
            self.status_checks.close()
            if self.http is not None:
                await asyncio.shield(self.http.aclose())


def _new_http_client(config: ClientConfig) -> httpx.AsyncClient:
    """Blocking set-up (CA bundle, anyio's asyncio backend, ~0.15 s): run in a thread, never on the event loop, and
    handing the GIL back often (:func:`_yielding_the_gil`)."""
    with _yielding_the_gil():
        import httpx

        with contextlib.suppress(ImportError):
            importlib.import_module("anyio._backends._asyncio")  # imported by httpx on its first request otherwise
        limits = httpx.Limits(max_connections=MAX_POOL_CONNECTIONS, max_keepalive_connections=MAX_POOL_CONNECTIONS)
        return httpx.AsyncClient(**transport.client_options(config), limits=limits)


@contextlib.contextmanager
def _yielding_the_gil(every: float = GIL_HAND_BACK_EVERY) -> Iterator[None]:
    """While inside, this thread pauses for a moment after each ``every`` seconds of running Python, so that the
    event loop's thread gets the GIL back within about that long each time it returns from I/O, instead of the
    interpreter's switch interval (5 ms): a loop turn makes many such returns, and importing modules holds the GIL
    almost throughout. Only this thread is traced, and its previous trace function is put back."""
    previous = sys.gettrace()
    due = time.perf_counter() + every

    def hand_back(frame: types.FrameType, event: str, arg: object) -> None:
        nonlocal due
        if time.perf_counter() >= due:
            time.sleep(GIL_HAND_BACK_PAUSE)
            due = time.perf_counter() + every

    sys.settrace(hand_back)
    try:
        yield
    finally:
        sys.settrace(previous)


_SESSIONS: dict[tuple[int, ClientConfig], AppSession] = {}


def join_session(
    config: ClientConfig,
    *,
    on_secret: SecretCallback | None = None,
    policy: RetryPolicy | None = None,
    token_store: UserTokenStore | None = None,
) -> AsyncFeishuVCClient:
    """A client on the running loop's session of ``config``; the caller ends it with ``await client.aclose()``.

    For a caller that holds its client through a long wait (a trigger): one object. Everyone else uses
    :class:`shared_client`, which closes it for them.
    """
    key = (id(asyncio.get_running_loop()), config)
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = AppSession(key)
    session.users += 1
    return AsyncFeishuVCClient(config, session, on_secret=on_secret, policy=policy, token_store=token_store)


class shared_client:  # used as a function: ``async with shared_client(config) as client``
    """An async client sharing its pool with every caller of the same settings in this loop, and the app's rate
    budgets with the whole process; the pool closes when its last user leaves."""

    __slots__ = ("_client", "_config", "_on_secret", "_policy", "_token_store")

    def __init__(
        self,
        config: ClientConfig | None,
        *,
        on_secret: SecretCallback | None = None,
        policy: RetryPolicy | None = None,
        token_store: UserTokenStore | None = None,
    ) -> None:
        self._config = config
        self._on_secret = on_secret
        self._policy = policy
        self._token_store = token_store
        self._client: AsyncFeishuVCClient | None = None

    async def _settings(self) -> tuple[ClientConfig, UserTokenStore | None]:
        """The config and user-token store to enter with."""
        assert self._config is not None
        return self._config, self._token_store

    async def __aenter__(self) -> AsyncFeishuVCClient:
        config, token_store = await self._settings()
        self._client = join_session(config, on_secret=self._on_secret, policy=self._policy, token_store=token_store)
        return self._client

    async def __aexit__(self, *exc_info: object) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class shared_client_of(shared_client):
    """:class:`shared_client` for settings looked up on entering (``settings()`` returns the config and the
    user-token store)."""

    __slots__ = ("_lookup",)

    def __init__(
        self,
        settings: Callable[[], Awaitable[tuple[ClientConfig, UserTokenStore | None]]],
        *,
        on_secret: SecretCallback | None = None,
    ) -> None:
        super().__init__(None, on_secret=on_secret)
        self._lookup: Callable[[], Awaitable[tuple[ClientConfig, UserTokenStore | None]]] | None = settings

    async def _settings(self) -> tuple[ClientConfig, UserTokenStore | None]:
        lookup, self._lookup = self._lookup, None
        if lookup is None:
            raise RuntimeError("shared_client_of is entered once")
        return await lookup()


def open_sessions() -> int:
    """How many app sessions are open in this process (for tests of the cleanup)."""
    return len(_SESSIONS)


@dataclass
class AsyncDownload:
    info: FileInfo
    chunks: AsyncIterator[bytes]


class AsyncFeishuVCClient(ExportCalls):
    """Async twin of :class:`~.sync_client.FeishuVCClient`; get one from :class:`shared_client` (or
    :func:`join_session`)."""

    driver_name = "async"

    def __init__(
        self, config: ClientConfig, session: AppSession, *, on_secret: SecretCallback | None = None,
        token_cache: TokenCache = TOKEN_CACHE, policy: RetryPolicy | None = None,
        token_store: UserTokenStore | None = None,
    ) -> None:  # fmt: skip
        super().__init__(config, token_cache=token_cache, policy=policy, token_store=token_store)
        self._session = session
        self._on_secret = on_secret
        self._open = True

    async def aclose(self) -> None:
        """Leave the shared session (the last client to leave closes the pool); later calls do nothing. User
        tokens this process could not save yet are offered to the store first."""
        if self._open:
            self._open = False
            if self.token_store is not None:
                from airflow_provider_feishu_vc.client import grant_process, unsaved_tokens

                await unsaved_tokens.aflush(grant_process.PROCESS.find(self.config), self.token_store)
            await self._session.leave()

    if TYPE_CHECKING:  # what the shared calls of ExportCalls return when this driver runs them

        async def create_export(self, export_type: str, user_id_type: str | None = None, **fields: Any) -> str: ...

        async def get_export(self, export_task_id: str, *, retries: int | None = None) -> api.ExportTask: ...

        async def _renew_token(self, stale: str | None = None) -> AccessToken: ...

    def get_export_in_turn(self, export_task_id: str) -> asyncio.Future[api.ExportTask]:
        """:meth:`get_export`, queued behind the app's other waits in this loop and run by a shared checker: for a
        caller that polls and waits anyway (a trigger). Await it; errors come as from :meth:`get_export`.
        (A future, not a coroutine: one object less per queued wait.)"""
        return self._session.status_checks.get_export(self, export_task_id)

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
        try:
            while (step := driving.next_step()) is not None:
                try:
                    driving.outcome = await getattr(self, f"_{step.handler}")(step)
                except (FeishuVCTransportError, FeishuVCTokenStoreError) as error:
                    driving.outcome = error
        finally:
            flow.close()  # cut short (a cancelled wait): its clean-up (a grant's turn) runs now
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
        if step.action == "keep_saving":
            from airflow_provider_feishu_vc.client import unsaved_tokens

            return unsaved_tokens.keep_saving(step.value, self.token_store, on_loop=True)
        use = getattr(self.token_store, f"a{step.action}")
        return await (use(step.value) if step.action.startswith("save") else use())
