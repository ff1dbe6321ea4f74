"""Blocking Feishu VC client: performs the steps of :mod:`.api` flows with ``httpx.Client`` and ``time.sleep``;
a file's body streams through :mod:`.file_transport` (urllib3), which reads it with a fraction of httpx's CPU."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client import api, file_transport, protocol, transport
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
    import urllib3


@dataclass
class Download:
    """An open file download: what its headers say, and its bytes as chunks."""

    info: FileInfo
    chunks: Iterator[bytes]


class FeishuVCClient(ExportCalls):
    """Talks to one Feishu app with blocking I/O. Thread-safe; tokens and rate budgets are shared process-wide."""

    driver_name = "sync"

    def __init__(
        self, config: ClientConfig, *, on_secret: SecretCallback | None = None, token_cache: TokenCache = TOKEN_CACHE,
        policy: RetryPolicy | None = None, token_store: UserTokenStore | None = None,
    ) -> None:  # fmt: skip
        super().__init__(config, token_cache=token_cache, policy=policy, token_store=token_store)
        self._on_secret = on_secret
        self._http: httpx.Client | None = None
        self._files: urllib3.PoolManager | None = None
        self._opening = threading.Lock()  # threads that send first at once build one pool, not one each

    if TYPE_CHECKING:  # what the shared calls of ExportCalls return when this driver runs them

        def create_export(self, export_type: str, user_id_type: str | None = None, **fields: Any) -> str: ...

        def get_export(self, export_task_id: str, *, retries: int | None = None) -> api.ExportTask: ...

        def _renew_token(self, stale: str | None = None) -> AccessToken: ...

    def access_token(self, *, stale: str | None = None, force: bool = False) -> str:
        """The app's access token from the cache, fetched when missing, near expiry, equal to ``stale``, or
        when ``force`` is set (to check the credentials)."""
        with self.tokens.thread_lock(self.token_key):
            token = None if force else self.tokens.usable(self.token_key, stale)
            return (token or self._renew_token(stale)).value

    @contextmanager
    def open_download(self, file_token: str, chunk_size: int | None = None) -> Iterator[Download]:
        """Open the export file; iterate ``chunks`` to stream it. Raises if fewer or more bytes arrive than
        announced."""
        answer = self.run(api.open_download(file_token, self.policy, self.budgets))

        def chunks() -> Iterator[bytes]:
            yield from answer.stream.iter_bytes(chunk_size)
            answer.check_complete(answer.stream.num_bytes_downloaded)

        try:
            yield Download(answer.info, chunks())
        finally:
            answer.stream.close()

    def close(self) -> None:
        """Close the connections; first, offer the store any user tokens this process could not save yet."""
        if self.token_store is not None:
            from airflow_provider_feishu_vc.client import grant_process, unsaved_tokens

            unsaved_tokens.flush(grant_process.PROCESS.find(self.config), self.token_store)
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._files is not None:
            self._files.clear()
            self._files = None

    def __enter__(self) -> FeishuVCClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- performing the steps of a flow ----------------------------------------------------------------------

    def run(self, flow: Flow[T]) -> T:
        driving = Driving(flow)
        try:
            while (step := driving.next_step()) is not None:
                try:
                    driving.outcome = getattr(self, f"_{step.handler}")(step)
                except (FeishuVCTransportError, FeishuVCTokenStoreError) as error:
                    driving.outcome = error
        finally:
            flow.close()  # cut short (a task's time limit, Ctrl-C): its clean-up (a grant's turn) runs now
        return driving.result  # type: ignore[return-value]

    def _send(self, request: protocol.HttpRequest) -> protocol.HttpResponse:
        if request.stream:
            return file_transport.open_file(self._file_pool(), self.config, request, self.driver_name)
        http = self._http_client()
        with transport_errors(self.config):
            response = http.send(transport.build_request(http, request, self.driver_name))
            return transport.response_head(response, request)

    def _http_client(self) -> httpx.Client:
        with self._opening:
            if self._http is None:
                import httpx

                self._http = httpx.Client(**transport.client_options(self.config))
            return self._http

    def _file_pool(self) -> urllib3.PoolManager:
        with self._opening:
            if self._files is None:
                self._files = file_transport.file_pool(self.config)
            return self._files

    def _sleep(self, step: protocol.Sleep) -> None:
        time.sleep(step.seconds)

    def _token(self, step: protocol.NeedToken) -> str:
        return self.access_token(stale=step.stale)

    def _mask(self, step: protocol.MaskSecret) -> None:
        if self._on_secret is not None:
            self._on_secret(step.value)

    def _shared_tokens(self, step: protocol.SharedUserTokens) -> Any:
        if self.token_store is None:
            raise FeishuVCTokenStoreError("this client has no shared user-token store")
        if step.action == "keep_saving":
            from airflow_provider_feishu_vc.client import unsaved_tokens

            return unsaved_tokens.keep_saving(step.value, self.token_store, on_loop=False)
        use = getattr(self.token_store, step.action)
        return use(step.value) if step.action.startswith("save") else use()
