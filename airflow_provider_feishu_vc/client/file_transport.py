"""How the blocking driver streams a file's body: with urllib3, whose reads go through http.client's buffered
reader in C and gather a megabyte per Python call, over TLS too (many 16 KiB records). httpx reads a body 64 KiB
at a time (one TLS record over TLS) and parses each read in h11 in Python: four to five times the CPU per byte,
and on a busy worker the CPU is the download's speed (docs/performance.md). Everything else (the API's JSON
calls, the async driver) stays on httpx. urllib3 is imported when the first file is opened."""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCTransportError
from airflow_provider_feishu_vc.client.protocol import HttpRequest, HttpResponse
from airflow_provider_feishu_vc.client.transport import tls_context, transport_failure

if TYPE_CHECKING:
    import urllib3

#: Connections kept per origin for reuse; more may open at once (one per concurrent download), the rest close.
FILE_CONNECTIONS_KEPT = 8
#: What one read gathers before it is handed on (less at the body's end): one Python call per megabyte.
READ_BYTES = 1024 * 1024


def file_pool(config: ClientConfig) -> urllib3.PoolManager:
    """The connections that file downloads reuse: the same TLS trust, timeouts and environment proxies
    (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, ...) as the httpx client of the API's calls; no redirect is
    followed and no request is retried here (the flow decides)."""
    import urllib3

    options: dict[str, Any] = {
        "timeout": urllib3.Timeout(connect=min(config.timeout, 10.0), read=config.timeout),
        "retries": False,
        "maxsize": FILE_CONNECTIONS_KEPT,
        **({"ssl_context": tls_context(True)} if config.verify_ssl else {"cert_reqs": "CERT_NONE"}),
    }
    proxy = environment_proxy(config.base_url)
    if proxy is None:
        return urllib3.PoolManager(**options)
    if urllib.parse.urlsplit(proxy).scheme.startswith("socks"):
        try:
            from urllib3.contrib.socks import SOCKSProxyManager
        except ImportError:  # PySocks is missing
            needs = f"the environment's proxy {_without_credentials(proxy)} needs `pip install urllib3[socks]`"
            raise FeishuVCTransportError(config.base_url, needs) from None
        return SOCKSProxyManager(proxy, **options)
    return urllib3.ProxyManager(proxy, **options)


def environment_proxy(origin: str) -> str | None:
    """The proxy the environment names for ``origin`` (its scheme's, else ``ALL_PROXY``), or None when there is
    none or ``NO_PROXY`` covers the host (``*``, the host, or a domain above it): what httpx does with
    ``trust_env``."""
    proxies = urllib.request.getproxies()
    parts = urllib.parse.urlsplit(origin)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    host = (parts.hostname or "").lower()
    bypass = [name.strip().lstrip(".").lower() for name in proxies.get("no", "").split(",") if name.strip()]
    if not proxy or any(name in ("*", host) or host.endswith(f".{name}") for name in bypass):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def open_file(pool: urllib3.PoolManager, config: ClientConfig, request: HttpRequest, driver_name: str) -> HttpResponse:
    """Send a streamed request; a file's answer keeps its body open as a :class:`FileStream`, an error's JSON
    envelope is read whole."""
    url = config.base_url + request.path
    if request.params:
        url += "?" + urllib.parse.urlencode(request.params)
    with file_errors(config):
        answer = pool.request(
            request.method,
            url,
            body=request.body_bytes(),
            headers=request.headers(driver_name),
            preload_content=False,
            redirect=False,
        )
    headers = {name.lower(): value for name, value in answer.headers.items()}
    stream = FileStream(answer, config)
    head = HttpResponse(answer.status, headers, stream=stream)
    if not head.is_file:
        head.body = stream.read()
    return head


class FileStream:
    """An open file answer: its body as chunks of :data:`READ_BYTES` (the last one shorter)."""

    def __init__(self, answer: urllib3.BaseHTTPResponse, config: ClientConfig) -> None:
        self._answer, self._config = answer, config
        self._read_to_end = False

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The body as it arrives; a broken or stalled connection raises ``FeishuVCTransportError``."""
        size = chunk_size or READ_BYTES
        with file_errors(self._config):
            while chunk := self._answer.read(size):
                yield chunk
        self._read_to_end = True

    @property
    def num_bytes_downloaded(self) -> int:
        """Bytes received off the wire so far (before any content decoding), as the headers count them."""
        return self._answer.tell()

    def read(self) -> bytes:
        with file_errors(self._config):
            body = self._answer.read()
        self._read_to_end = True
        self.close()
        return body

    def close(self) -> None:
        """Give the connection back for reuse when the body was read to its end; drop it otherwise."""
        if not self._read_to_end:
            self._answer.close()
        self._answer.release_conn()


@contextmanager
def file_errors(config: ClientConfig) -> Iterator[None]:
    """Turn urllib3's transport errors (refused, reset, cut short, timeout, TLS) into ``FeishuVCTransportError``,
    as :func:`.transport.transport_errors` does httpx's."""
    import urllib3

    try:
        yield
    except urllib3.exceptions.HTTPError as error:
        raise transport_failure(config, error) from error


def _without_credentials(proxy: str) -> str:
    parts = urllib.parse.urlsplit(proxy)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
