"""Blocking Feishu VC client: drives the flows of :mod:`.protocol` with ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client import endpoints
from airflow_provider_feishu_vc.client.budget import process_budget
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCTransportError
from airflow_provider_feishu_vc.client.files import FileInfo, check_complete
from airflow_provider_feishu_vc.client.protocol import (
    AccessToken,
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


@dataclass
class Download:
    """An open file download: what its headers say, and its bytes as chunks."""

    info: FileInfo
    chunks: Iterator[bytes]


class FeishuVCClient:
    """Talks to one Feishu app with blocking I/O. Thread-safe; tokens are shared process-wide."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        on_secret: SecretCallback | None = None,
        token_cache: TokenCache = TOKEN_CACHE,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self.policy = policy or RetryPolicy(max_retries=config.max_retries)
        self._on_secret = on_secret or (lambda secret: None)
        self._tokens = token_cache
        self._http: httpx.Client | None = None
        self._budget = process_budget(config.app_key, config.rate_limit_per_minute)

    # -- public calls ---------------------------------------------------------------------------------------

    def access_token(self, *, stale: str | None = None, force: bool = False) -> str:
        """The app's access token from the cache, fetched when missing, near expiry, equal to ``stale``, or
        when ``force`` is set (to check the credentials)."""
        key = token_key(self.config)
        token = None if force else self._tokens.usable(key, stale)
        if token is None:
            with self._tokens.thread_lock(key):
                token = None if force else self._tokens.usable(key, stale)
                if token is None:
                    token = self._fetch_token(key)
        return token.value

    def create_export(self, export_type: str, user_id_type: str | None = None, **fields: Any) -> str:
        request = endpoints.create_export_request(export_type, fields, user_id_type)
        return endpoints.read_export_task_id(self._run(call_json(request, self.policy)))

    def get_export(self, export_task_id: str) -> ExportTask:
        request = endpoints.get_export_request(export_task_id)
        return endpoints.read_export_task(export_task_id, self._run(call_json(request, self.policy)))

    @contextmanager
    def open_download(self, file_token: str, chunk_size: int | None = CHUNK_SIZE) -> Iterator[Download]:
        """Open the export file; iterate ``chunks`` to stream it. Raises if fewer or more bytes arrive than
        announced."""
        import httpx

        response = self._run(call(endpoints.download_request(file_token), self.policy))
        stream = response.stream
        info = FileInfo.from_headers(response.headers)

        def chunks() -> Iterator[bytes]:
            try:
                yield from stream.iter_bytes(chunk_size)
            except httpx.TransportError as error:
                raise transport_error(self.config, error) from error
            check_complete(info, stream.num_bytes_downloaded)

        try:
            yield Download(info, chunks())
        finally:
            stream.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> FeishuVCClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- driving flows --------------------------------------------------------------------------------------

    def _fetch_token(self, key: Any) -> AccessToken:
        token = self._run(fetch_token(self.config, self.policy, self._tokens.current(key)))
        self._on_secret(token.value)
        if token.refresh_token:
            self._on_secret(token.refresh_token)
        self._tokens.store(key, token)
        return token

    def _run(self, flow: Flow[T]) -> T:
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
                    outcome = self._send(step)
                except FeishuVCTransportError as error:
                    failure = error
            elif isinstance(step, Sleep):
                if step.rate_limited:
                    self._budget.pause(step.seconds)
                time.sleep(step.seconds)
            elif isinstance(step, NeedToken):
                outcome = self.access_token(stale=step.stale)

    def _client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            self._http = httpx.Client(**client_options(self.config))
        return self._http

    def _send(self, request: HttpRequest) -> HttpResponse:
        import httpx

        if request.rate_limited_endpoint:
            self._budget.acquire()
        client = self._client()
        try:
            built = client.build_request(
                request.method,
                request.path,
                params=request.params,
                content=request.body_bytes(),
                headers=request.headers("sync"),
            )
            response = client.send(built, stream=True)
        except httpx.TransportError as error:
            raise transport_error(self.config, error) from error
        headers = lowercase_headers(response.headers)
        if request.stream and is_file_response(response.status_code, headers):
            return HttpResponse(response.status_code, headers, stream=response)
        try:
            body = response.read()
        except httpx.TransportError as error:
            raise transport_error(self.config, error) from error
        finally:
            response.close()
        return HttpResponse(response.status_code, headers, body)
