"""How both drivers use httpx: client options, TLS, timeouts, request and response conversion, and the
mapping of transport errors. httpx is imported only when a client is built."""

from __future__ import annotations

import functools
import os
import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCTransportError
from airflow_provider_feishu_vc.client.protocol import HttpRequest, HttpResponse

if TYPE_CHECKING:
    import httpx

SecretCallback = Callable[[str], Any]

_URL_QUERY = re.compile(r"\?[^\s'\"]*")


@functools.cache
def tls_context(verify: bool) -> ssl.SSLContext | bool:
    """One TLS context per process: loading the CA bundle takes tens of milliseconds, too long for a loop."""
    if not verify:
        return False
    import certifi

    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


def client_options(config: ClientConfig) -> dict[str, Any]:
    """Options of every httpx client: the API origin only, redirects never followed, the shared TLS context."""
    import httpx

    return {
        "base_url": config.base_url,
        "timeout": httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0)),
        "verify": tls_context(config.verify_ssl),
        "follow_redirects": False,
    }


@contextmanager
def transport_errors(config: ClientConfig) -> Iterator[None]:
    """Turn httpx's transport errors (refused, reset, timeout, DNS) into ``FeishuVCTransportError``."""
    import httpx

    try:
        yield
    except httpx.TransportError as error:
        raise transport_failure(config, error) from error


def transport_failure(config: ClientConfig, error: Exception) -> FeishuVCTransportError:
    """The error a driver raises for a library's transport error: its name and message, with any URL's query
    (a file token, say) cut out."""
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return FeishuVCTransportError(config.base_url, _URL_QUERY.sub("?...", detail))


def build_request(http: httpx.Client | httpx.AsyncClient, request: HttpRequest, driver_name: str) -> httpx.Request:
    return http.build_request(
        request.method,
        request.path,
        params=request.params,
        content=request.body_bytes(),
        headers=request.headers(driver_name),
    )


def response_head(response: httpx.Response, request: HttpRequest) -> HttpResponse:
    """What the flow reads of ``response``: a streamed request keeps the response open as ``stream``; any other
    answer was read whole by httpx."""
    headers = {name.lower(): value for name, value in response.headers.items()}
    if request.stream:
        return HttpResponse(response.status_code, headers, stream=response)
    return HttpResponse(response.status_code, headers, response.content)
