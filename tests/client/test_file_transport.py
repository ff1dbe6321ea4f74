"""File bodies stream through urllib3 (client/file_transport.py): the same answers, errors, proxies and connection
reuse as the API's calls on httpx."""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.parse
from collections.abc import Iterator

import pytest

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCTransportError
from airflow_provider_feishu_vc.client.file_transport import READ_BYTES, environment_proxy, file_pool, open_file
from airflow_provider_feishu_vc.client.protocol import HttpRequest
from airflow_provider_feishu_vc.client.transport import transport_failure
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from airflow_provider_feishu_vc.testing.emulator.faults import Fault
from tests.client.test_sync_client import DAY_RANGE, client_for, wait_done

DOWNLOAD_PATH = "/open-apis/vc/v1/exports/download"


class ForwardProxy(http.server.ThreadingHTTPServer):
    """A plain-HTTP forward proxy on loopback that remembers the absolute URLs it was asked for."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.forwarded: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ForwardProxy

    def _forward(self) -> None:
        self.server.forwarded.append(self.path)
        target = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        headers = {name: value for name, value in self.headers.items() if name.lower() != "proxy-connection"}
        upstream.request(self.command, f"{target.path}?{target.query}", body=body or None, headers=headers)
        answer = upstream.getresponse()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "date", "server"):
                self.send_header(name, value)
        self.end_headers()
        while chunk := answer.read1(READ_BYTES):
            self.wfile.write(chunk)
        upstream.close()

    do_GET = do_POST = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_download_takes_the_environment_s_proxy_as_the_api_calls_do(
    emulator: FeishuVCEmulator, config: ClientConfig, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with client_for(config) as client:
        task = wait_done(client, client.create_export("meeting_list", **DAY_RANGE))
        with client.open_download(task.file_token) as download:
            body = b"".join(download.chunks)
    assert len(body) == download.info.size > 0
    downloads = [url for url in proxy.forwarded if urllib.parse.urlsplit(url).path == DOWNLOAD_PATH]
    assert len(downloads) == 1 and downloads[0].startswith(emulator.url)
    assert any("/tenant_access_token/" in url for url in proxy.forwarded)  # httpx took it too


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*", "localhost,127.0.0.1"])
def test_no_proxy_sends_a_download_straight(
    emulator: FeishuVCEmulator, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, no_proxy: str
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert environment_proxy(emulator.url) is None


def test_the_environment_s_proxy_for_an_origin() -> None:
    proxies = {"HTTPS_PROXY": "proxy.internal:3128", "NO_PROXY": ".corp.example"}
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HTTP_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            patch.delenv(name, raising=False)
        for name, value in proxies.items():
            patch.setenv(name, value)
        assert environment_proxy("https://open.feishu.cn") == "http://proxy.internal:3128"
        assert environment_proxy("https://files.corp.example") is None
        assert environment_proxy("http://127.0.0.1:8080") is None  # no proxy for plain http named
        patch.setenv("ALL_PROXY", "socks5://gate:1080")
        assert environment_proxy("http://127.0.0.1:8080") == "socks5://gate:1080"


def test_a_download_left_early_does_not_spoil_the_next(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    emulator.configure(rows=3000, stored_workbooks=True)  # ~3 MiB: a few reads
    with client_for(config) as client:
        task = wait_done(client, client.create_export("meeting_list", **DAY_RANGE))
        emulator.inject(Fault.SLOW_BODY, path=DOWNLOAD_PATH, chunk=2**18, seconds=0.05)
        with client.open_download(task.file_token) as download:
            first = next(download.chunks)
        with client.open_download(task.file_token) as download:
            chunks = list(download.chunks)
    whole = b"".join(chunks)
    assert len(first) == READ_BYTES and len(whole) == download.info.size > 2 * READ_BYTES
    assert all(len(chunk) == READ_BYTES for chunk in chunks[:-1])  # a read gathers a megabyte
    assert whole.startswith(first) and emulator.count(DOWNLOAD_PATH) == 2


def test_a_cut_download_names_the_break_but_never_the_file_token(
    emulator: FeishuVCEmulator, config: ClientConfig
) -> None:
    with client_for(config) as client:
        task = wait_done(client, client.create_export("meeting_list", **DAY_RANGE))
        emulator.inject(Fault.DROP_CONNECTION, path=DOWNLOAD_PATH, after_bytes=100)
        with pytest.raises(FeishuVCTransportError) as raised:
            with client.open_download(task.file_token) as download:
                b"".join(download.chunks)
    message = str(raised.value)
    assert "ProtocolError" in message and emulator.url in message
    assert task.file_token not in message


def test_a_refused_download_connection_is_a_transport_error() -> None:
    config = ClientConfig.from_connection_parts(host="http://127.0.0.1:9", login="cli_x", password="secret")
    request = HttpRequest("GET", DOWNLOAD_PATH, params=(("file_token", "box-secret-token"),), stream=True)
    with pytest.raises(FeishuVCTransportError, match="NewConnectionError") as raised:
        open_file(file_pool(config), config, request, "sync")
    assert "box-secret-token" not in str(raised.value)


def test_downloads_at_once_through_one_client_keep_their_connections(
    emulator: FeishuVCEmulator, config: ClientConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with client_for(config) as client:
        task = wait_done(client, client.create_export("meeting_list", **DAY_RANGE))
        emulator.inject(Fault.SLOW_BODY, path=DOWNLOAD_PATH, chunk=1024, seconds=0.02, times=3)
        bodies: list[bytes] = []

        def download() -> None:
            with client.open_download(task.file_token) as answer:
                bodies.append(b"".join(answer.chunks))

        threads = [threading.Thread(target=download) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(bodies) == 3 and len(set(bodies)) == 1 and len(bodies[0]) > 0
    assert not [record for record in caplog.records if "pool is full" in record.getMessage()]


def test_a_transport_error_quoting_a_url_loses_the_query() -> None:
    config = ClientConfig.from_connection_parts(host="https://open.feishu.cn", login="cli_x", password="secret")
    error = transport_failure(config, ValueError(f"bad answer from '{DOWNLOAD_PATH}?file_token=box-secret-token'"))
    assert "box-secret-token" not in str(error) and f"{DOWNLOAD_PATH}?..." in str(error)
