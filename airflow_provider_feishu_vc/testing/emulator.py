"""A local Feishu VC server: token endpoints, the export API, rate limits and fault injection.

Written from the API facts alone (it imports nothing from the client), so it cannot share a misunderstanding
with the code it tests. Run it with ``python -m airflow_provider_feishu_vc.testing.emulator`` or use
:class:`FeishuVCEmulator` in-process::

    with FeishuVCEmulator(app_id="cli_test", app_secret="secret", export_delay=1) as feishu:
        print(feishu.url)  # http://127.0.0.1:PORT, to use as the connection's host
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import random
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_provider_feishu_vc.testing import data
from airflow_provider_feishu_vc.testing.workbook import XLSX_CONTENT_TYPE, write_workbook

EXPORT_KINDS = ("meeting_list", "participant_list", "participant_quality_list", "resource_reservation_list")
DAY = 86_400
DOWNLOAD_CHUNK = 1024 * 1024
TOKEN_PATH_PREFIXES = ("/open-apis/auth/", "/open-apis/authen/")
#: Not a Feishu path: the emulator's own request statistics, for tests that run it as a separate process.
ADMIN_STATS_PATH = "/_emulator/stats"
#: Not a Feishu path either: when each export is (or was) done, as wall-clock epoch seconds.
ADMIN_EXPORTS_PATH = "/_emulator/exports"
#: POST {"rate_limit": n} to change the limit of a running emulator process (set-up of load tests).
ADMIN_CONFIG_PATH = "/_emulator/config"


class FeishuError(Exception):
    """An error answer in Feishu's envelope."""

    def __init__(self, http_status: int, code: int, msg: str, **error: Any) -> None:
        super().__init__(msg)
        self.http_status, self.code, self.msg, self.error = http_status, code, msg, error


@dataclass
class Fault:
    """A fault served instead of (or on top of) the normal answer for requests whose path starts with ``path``."""

    kind: str
    path: str
    remaining: int
    params: dict[str, Any]


@dataclass
class RequestRecord:
    method: str
    path: str
    query: str
    authorization: str | None
    user_agent: str = ""
    status: int = 0
    at: float = field(default_factory=time.time)


@dataclass
class IssuedToken:
    value: str
    kind: str  # tenant | app | user
    expires_at: float

    def remaining(self) -> float:
        return self.expires_at - time.monotonic()


@dataclass
class ExportJob:
    task_id: str
    kind: str
    body: dict[str, Any]
    ready_at: float
    fail_msg: str | None
    file_token: str
    path: Path | None = None
    rows: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class FeishuVCEmulator:
    """One Feishu tenant with one app. Every knob is a constructor argument or an attribute tests may change.

    :param app_id / app_secret: the only credentials accepted; others get Feishu's 10003 / 10014.
    :param export_delay: seconds until an export is done; a ``(low, high)`` pair picks at random per export.
    :param token_ttl: lifetime of issued tokens in seconds (Feishu: 7200). Re-asking returns the same token
        while more than a quarter of it (at most 30 min) remains, as Feishu does.
    :param rate_limit / rate_window: requests allowed per window per endpoint (Feishu: 100 per 60 s).
    :param app_ticket: the ticket a store app must present; ``refresh_token`` the user refresh token accepted.
    :param meeting_every: a meeting_list export holds one meeting every this many seconds of its range.
    :param rows_override: force the row count of every export (large-file tests).
    """

    def __init__(
        self,
        *,
        app_id: str = "cli_emulator",
        app_secret: str = "emulator-secret",
        host: str = "127.0.0.1",
        port: int = 0,
        export_delay: float | tuple[float, float] = 2.0,
        token_ttl: float = 7200.0,
        rate_limit: int = 100,
        rate_window: float = 60.0,
        app_ticket: str = "emulator-app-ticket",
        refresh_token: str | None = "emulator-refresh-token",
        meeting_every: int = 3600,
        rows_override: int | None = None,
        tls_certfile: str | None = None,
        tls_keyfile: str | None = None,
    ) -> None:
        self.app_id, self.app_secret = app_id, app_secret
        self.host, self.port = host, port
        self.export_delay = export_delay
        self.token_ttl = token_ttl
        self.rate_limit, self.rate_window = rate_limit, rate_window
        self.app_ticket = app_ticket
        self.meeting_every = meeting_every
        self.rows_override = rows_override
        self.tls_certfile, self.tls_keyfile = tls_certfile, tls_keyfile
        self.log_level = "critical"
        self.granted_scopes = {"vc:export"}
        self.admin_role = True
        self.download_filename: str | None = None
        self.fail_next: list[str] = []
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._tokens: dict[str, IssuedToken] = {}
        self._latest: dict[str, IssuedToken] = {}
        self._refresh_tokens: set[str] = {refresh_token} if refresh_token else set()
        self._exports: dict[str, ExportJob] = {}
        self._by_file_token: dict[str, ExportJob] = {}
        self._windows: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._task_ids = itertools.count(7_111_325_589_855_797_267)
        self._files = Path(tempfile.mkdtemp(prefix="feishu-vc-emulator-"))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # -- running -------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_certfile else 'http'}://{self.host}:{self.port}"

    def start(self) -> FeishuVCEmulator:
        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, self.port))
        self._socket.listen(4096)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.asgi,
            log_level=self.log_level,
            access_log=False,
            lifespan="off",
            interface="asgi3",
            backlog=4096,
            timeout_keep_alive=30,
            ssl_certfile=self.tls_certfile,
            ssl_keyfile=self.tls_keyfile,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="feishu-vc-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Feishu VC emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        shutil.rmtree(self._files, ignore_errors=True)
        self._server = self._thread = self._socket = None

    def __enter__(self) -> FeishuVCEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what tests use ------------------------------------------------------------------------------------

    def inject(self, kind: str, *, path: str = "/open-apis/", times: int = 1, **params: Any) -> None:
        """Serve a fault for the next ``times`` requests under ``path``.

        Kinds: ``latency`` (seconds), ``http_error`` (status, code), ``gateway_html`` (status), ``rate_limit``
        (reset: seconds or None for no header), ``error_code`` (code, status), ``token_invalid`` (code),
        ``malformed_json``, ``unknown_status``, ``missing_file_token``, ``redirect`` (location); downloads:
        ``drop_connection`` (after_bytes), ``truncate`` (after_bytes), ``slow_body`` (chunk, seconds),
        ``empty_file``.
        """
        with self._lock:
            self._faults.append(Fault(kind, path, times, params))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def revoke_tokens(self) -> None:
        """Invalidate every issued access token at once (Feishu can revoke before expiry)."""
        with self._lock:
            self._tokens.clear()
            self._latest.clear()

    def count(self, path: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for record in self.requests
                if (path is None or record.path == path) and (status is None or record.status == status)
            )

    def token_requests(self) -> int:
        with self._lock:
            return sum(1 for record in self.requests if record.path.startswith(TOKEN_PATH_PREFIXES))

    def issued_tokens(self) -> list[str]:
        """Every access token handed out so far that is still known (for leak checks)."""
        with self._lock:
            return list(self._tokens)

    def export_ids(self) -> list[str]:
        with self._lock:
            return list(self._exports)

    def export(self, task_id: str) -> ExportJob:
        with self._lock:
            return self._exports[task_id]

    def finish_now(self) -> None:
        """Make every pending export ready at once."""
        with self._lock:
            for job in self._exports.values():
                job.ready_at = min(job.ready_at, time.monotonic())

    # -- ASGI ----------------------------------------------------------------------------------------------

    async def asgi(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        from starlette.requests import Request

        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if request.url.path in (ADMIN_STATS_PATH, ADMIN_EXPORTS_PATH, ADMIN_CONFIG_PATH):
            from starlette.responses import JSONResponse

            if request.url.path == ADMIN_CONFIG_PATH:
                changes = await request.json()
                self.rate_limit = int(changes.get("rate_limit", self.rate_limit))
                self.export_delay = changes.get("export_delay", self.export_delay)
            answer = self.export_ready_times() if request.url.path == ADMIN_EXPORTS_PATH else self.stats()
            await JSONResponse(answer)(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in request.headers.items()}
        record = RequestRecord(
            request.method,
            request.url.path,
            request.url.query,
            headers.get("authorization"),
            headers.get("user-agent", ""),
        )
        with self._lock:
            self.requests.append(record)
        response = await self._respond(request, headers)
        record.status = response.status_code
        response.headers["X-Tt-Logid"] = f"{time.strftime('%Y%m%d%H%M%S')}{secrets.token_hex(8)}"
        await response(scope, receive, send)

    def _take_fault(self, path: str, kinds: tuple[str, ...]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and path.startswith(fault.path) and fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    async def _respond(self, request: Any, headers: Mapping[str, str]) -> Any:
        from starlette.responses import HTMLResponse, Response

        path = request.url.path
        delay = self._take_fault(path, ("latency",))
        if delay:
            await asyncio.sleep(float(delay.params.get("seconds", 1.0)))
        fault = self._take_fault(
            path, ("http_error", "gateway_html", "rate_limit", "error_code", "malformed_json", "redirect")
        )
        if fault is not None:
            if fault.kind == "gateway_html":
                status = int(fault.params.get("status", 502))
                return HTMLResponse(f"<html><body><h1>{status} Bad Gateway</h1>nginx</body></html>", status_code=status)
            if fault.kind == "malformed_json":
                return Response(b'{"code": 0, "data": {', media_type="application/json")
            if fault.kind == "redirect":
                return Response(status_code=302, headers={"Location": str(fault.params["location"])})
            if fault.kind == "rate_limit":
                return self._rate_limited(fault.params.get("reset", 1.0))
            return self._error(
                FeishuError(int(fault.params.get("status", 500)), int(fault.params.get("code", 121001)), "injected")
            )
        try:
            body = await self._json_body(request) if request.method == "POST" else {}
            return await self._route(request, path, headers, body)
        except _RateLimited as error:
            return self._rate_limited(error.reset)
        except FeishuError as error:
            return self._error(error)

    @staticmethod
    async def _json_body(request: Any) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise FeishuError(400, 9499, "Bad Request: body is not JSON") from None
        if not isinstance(body, dict):
            raise FeishuError(400, 9499, "Bad Request: body must be a JSON object")
        return body

    def _error(self, error: FeishuError) -> Any:
        from starlette.responses import JSONResponse

        payload: dict[str, Any] = {"code": error.code, "msg": error.msg}
        if error.error:
            payload["error"] = error.error
        return JSONResponse(payload, status_code=error.http_status)

    def _rate_limited(self, reset: float | None) -> Any:
        from starlette.responses import JSONResponse

        headers = {"x-ogw-ratelimit-limit": str(self.rate_limit)}
        if reset is not None:
            headers["x-ogw-ratelimit-reset"] = f"{reset:.3f}".rstrip("0").rstrip(".")
        return JSONResponse(
            {"code": 99991400, "msg": "request trigger frequency limit"}, status_code=429, headers=headers
        )

    @staticmethod
    def _ok(payload: dict[str, Any]) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"code": 0, "msg": "success", **payload})

    def export_ready_times(self) -> dict[str, float]:
        """Wall-clock epoch seconds at which each export is (or was) done."""
        offset = time.time() - time.monotonic()
        with self._lock:
            return {task_id: job.ready_at + offset for task_id, job in self._exports.items()}

    def stats(self) -> dict[str, Any]:
        """Request counts by path and by status, and the token requests: what tests of a separate process read."""
        with self._lock:
            by_path = collections.Counter(record.path for record in self.requests)
            by_status = collections.Counter(str(record.status) for record in self.requests)
            token_agents = collections.Counter(
                record.user_agent for record in self.requests if record.path.startswith(TOKEN_PATH_PREFIXES)
            )
        return {
            "requests": sum(by_path.values()),
            "by_path": dict(by_path),
            "by_status": dict(by_status),
            "token_requests": self.token_requests(),
            "token_requests_by_user_agent": dict(token_agents),
            "exports": len(self._exports),
            "issued_tokens": self.issued_tokens(),  # for leak checks of processes that cannot see this object
        }

    async def _route(self, request: Any, path: str, headers: Mapping[str, str], body: dict[str, Any]) -> Any:
        method = request.method
        if path.startswith(TOKEN_PATH_PREFIXES):
            if method != "POST":
                raise FeishuError(404, 404, "404 page not found: token endpoints accept POST only")
            return self._token_endpoint(path, body)
        if path.startswith("/open-apis/vc/v1/exports/"):
            name = path.removeprefix("/open-apis/vc/v1/exports/")
            if method == "POST" and name in EXPORT_KINDS:
                self._authenticate(headers)
                self._check_rate(name)
                return self._create(name, body, request.query_params.get("user_id_type"))
            if method == "GET" and name == "download":
                self._authenticate(headers)
                self._check_rate("download")
                return await self._download(request.query_params.get("file_token", ""))
            if method == "GET" and "/" not in name:
                self._authenticate(headers)
                self._check_rate("get")
                return self._status(name)
        raise FeishuError(404, 404, f"404 page not found: {method} {path}")

    # -- tokens --------------------------------------------------------------------------------------------

    def _issue(self, kind: str, owner: str) -> IssuedToken:
        """Same token while more than the re-issue window remains; otherwise a new one (the old stays valid)."""
        window = min(1800.0, self.token_ttl / 4)
        with self._lock:
            latest = self._latest.get(owner)
            if latest is not None and latest.value in self._tokens and latest.remaining() >= window:
                return latest
            prefix = {"tenant": "t-", "app": "a-", "user": "u-"}[kind]
            token = IssuedToken(prefix + secrets.token_urlsafe(24), kind, time.monotonic() + self.token_ttl)
            self._tokens[token.value] = token
            self._latest[owner] = token
            return token

    def _check_app(self, body: Mapping[str, Any], id_key: str = "app_id", secret_key: str = "app_secret") -> None:
        if body.get(id_key) != self.app_id:
            raise FeishuError(200, 10003, "invalid param: app_id")
        if body.get(secret_key) != self.app_secret:
            raise FeishuError(200, 10014, "app secret invalid")

    def _token_endpoint(self, path: str, body: dict[str, Any]) -> Any:
        from starlette.responses import JSONResponse

        def answer(token: IssuedToken, field_name: str, **more: Any) -> Any:
            return JSONResponse(
                {"code": 0, "msg": "ok", field_name: token.value, "expire": int(token.remaining()), **more}
            )

        if path == "/open-apis/auth/v3/tenant_access_token/internal":
            self._check_app(body)
            return answer(self._issue("tenant", "tenant"), "tenant_access_token")
        if path == "/open-apis/auth/v3/app_access_token/internal":
            self._check_app(body)
            tenant = self._issue("tenant", "tenant")
            return answer(self._issue("app", "app"), "app_access_token", tenant_access_token=tenant.value)
        if path == "/open-apis/auth/v3/app_access_token":
            self._check_app(body)
            if body.get("app_ticket") != self.app_ticket:
                raise FeishuError(200, 10012, "app_ticket is invalid")
            return answer(self._issue("app", "app"), "app_access_token")
        if path == "/open-apis/auth/v3/tenant_access_token":
            app_token = self._tokens.get(str(body.get("app_access_token")))
            if app_token is None or app_token.kind != "app" or app_token.remaining() <= 0:
                raise FeishuError(200, 10002, "app_access_token invalid")
            if not body.get("tenant_key"):
                raise FeishuError(200, 10003, "invalid param: tenant_key")
            return answer(self._issue("tenant", f"tenant:{body['tenant_key']}"), "tenant_access_token")
        if path == "/open-apis/auth/v3/app_ticket/resend":
            self._check_app(body)
            return JSONResponse({"code": 0, "msg": "ok"})
        if path == "/open-apis/authen/v2/oauth/token":
            return self._user_token(body)
        raise FeishuError(404, 404, f"404 page not found: {path}")

    def _user_token(self, body: dict[str, Any]) -> Any:
        from starlette.responses import JSONResponse

        if body.get("grant_type") != "refresh_token":
            raise FeishuError(400, 20001, "grant_type must be refresh_token or authorization_code")
        self._check_app(body, "client_id", "client_secret")
        with self._lock:
            if body.get("refresh_token") not in self._refresh_tokens:
                raise FeishuError(400, 20037, "refresh_token is invalid or has been used")
            self._refresh_tokens.discard(body["refresh_token"])  # single use: the old one dies at once
            successor = "ur-" + secrets.token_urlsafe(24)
            self._refresh_tokens.add(successor)
        token = IssuedToken("u-" + secrets.token_urlsafe(24), "user", time.monotonic() + self.token_ttl)
        with self._lock:
            self._tokens[token.value] = token
        return JSONResponse(
            {
                "code": 0,
                "access_token": token.value,
                "expires_in": int(self.token_ttl),
                "refresh_token": successor,
                "refresh_token_expires_in": 30 * DAY,
                "token_type": "Bearer",
                "scope": "vc:export",
            }
        )

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        authorization = headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            raise FeishuError(400, 99991661, "Missing access token for authorization")
        value = authorization[7:].strip()
        with self._lock:
            token = self._tokens.get(value)
        if token is None or token.remaining() <= 0 or token.kind == "app":
            if value.startswith("u-"):
                raise FeishuError(400, 99991677, "user access token expired or invalid")
            raise FeishuError(400, 99991663, "Invalid access token for authorization")
        fault = self._take_fault("/open-apis/vc/", ("token_invalid",))
        if fault is not None:
            raise FeishuError(400, int(fault.params.get("code", 99991663)), "injected token error")
        if "vc:export" not in self.granted_scopes:
            raise FeishuError(
                400,
                99991672,
                "Access denied. One of the following scopes is required: [vc:export]",
                permission_violations=[{"type": "action_scope_required", "subject": "vc:export"}],
            )
        if not self.admin_role:
            raise FeishuError(403, 121005, "no permission")

    def _check_rate(self, endpoint: str) -> None:
        now = time.monotonic()
        with self._lock:
            window = self._windows[endpoint]
            while window and window[0] <= now - self.rate_window:
                window.popleft()
            if len(window) >= self.rate_limit:
                reset = window[0] + self.rate_window - now
            else:
                window.append(now)
                return
        raise _RateLimited(reset)

    # -- exports -------------------------------------------------------------------------------------------

    def _create(self, kind: str, body: dict[str, Any], user_id_type: str | None) -> Any:
        if user_id_type is not None and (
            kind == "resource_reservation_list" or user_id_type not in ("open_id", "union_id", "user_id")
        ):
            raise _param_error("user_id_type", "must be open_id, union_id or user_id")
        _validate_export(kind, body)
        delay = self.export_delay
        seconds = random.uniform(*delay) if isinstance(delay, (tuple, list)) else float(delay)
        with self._lock:
            task_id = str(next(self._task_ids))
            fail_msg = self.fail_next.pop(0) if self.fail_next else None
            job = ExportJob(
                task_id=task_id,
                kind=kind,
                body=dict(body),
                ready_at=time.monotonic() + seconds,
                fail_msg=fail_msg,
                file_token=secrets.token_urlsafe(18).replace("-", "+").replace("_", "/") + "==",
            )
            self._exports[task_id] = job
            self._by_file_token[job.file_token] = job
        return self._ok({"data": {"task_id": task_id}})

    def _status(self, task_id: str) -> Any:
        if not task_id.isdigit():
            raise _param_error("task_id", "must be numeric")
        with self._lock:
            job = self._exports.get(task_id)
        if job is None:
            raise FeishuError(404, 121004, "data not exist")
        payload: dict[str, Any] = {"status": 1}
        if time.monotonic() >= job.ready_at:
            if job.fail_msg is not None:
                payload = {"status": 2, "fail_msg": job.fail_msg}
            else:
                payload = {"status": 3, "url": f"{self.url}/cdn/{quote(job.file_token)}", "file_token": job.file_token}
        if self._take_fault(f"/open-apis/vc/v1/exports/{task_id}", ("unknown_status",)):
            payload["status"] = 7
        if self._take_fault(f"/open-apis/vc/v1/exports/{task_id}", ("missing_file_token",)):
            payload.pop("file_token", None)
        return self._ok({"data": payload})

    def _workbook(self, job: ExportJob) -> Path:
        with job.lock:
            if job.path is not None:
                return job.path
            count = self.rows_override
            if count is None:
                count = data.row_count(job.kind, job.body, self.meeting_every)
            path = self._files / f"{job.task_id}.xlsx"
            job.rows = write_workbook(
                path,
                data.SHEET_NAMES[job.kind],
                data.COLUMNS[job.kind],
                data.rows(job.kind, job.body, count, self.meeting_every),
                compress=self.rows_override is None,  # large-file mode: stored, so size follows rows
            )
            job.path = path
            return path

    async def _download(self, file_token: str) -> Any:
        from starlette.responses import StreamingResponse

        with self._lock:
            job = self._by_file_token.get(file_token)
        if job is None or time.monotonic() < job.ready_at or job.fail_msg is not None:
            raise FeishuError(404, 121004, "data not exist")
        path = await asyncio.to_thread(self._workbook, job)
        size = path.stat().st_size
        name = self.download_filename or f"视频会议_{job.kind}_{job.task_id}.xlsx"
        ascii_name = "".join(ch if " " <= ch < "\x7f" and ch not in '"\\' else "_" for ch in name)
        if self._take_fault("/open-apis/vc/v1/exports/download", ("empty_file",)):
            size = 0
        fault = self._take_fault("/open-apis/vc/v1/exports/download", ("drop_connection", "truncate"))
        limit = int(fault.params.get("after_bytes", size // 2)) if fault else size
        slow = self._take_fault("/open-apis/vc/v1/exports/download", ("slow_body",))
        chunk_size = int(slow.params.get("chunk", 4096)) if slow else DOWNLOAD_CHUNK
        pause = float(slow.params.get("seconds", 0.1)) if slow else 0.0

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            with path.open("rb") as handle:
                while sent < limit:
                    chunk = handle.read(min(chunk_size, limit - sent))
                    if not chunk:
                        break
                    sent += len(chunk)
                    yield chunk
                    if pause:
                        await asyncio.sleep(pause)
            if fault is not None and fault.kind == "drop_connection":
                raise ConnectionAbortedError("emulator dropped the connection on purpose")

        return StreamingResponse(
            body(),
            media_type=XLSX_CONTENT_TYPE,
            headers={
                "Content-Length": str(size),
                "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
            },
        )


class _RateLimited(FeishuError):
    def __init__(self, reset: float) -> None:
        super().__init__(429, 99991400, "request trigger frequency limit")
        self.reset = reset


def _param_error(field_name: str, description: str) -> FeishuError:
    return FeishuError(
        400, 121003, f"param error: {field_name} {description}",
        field_violations=[{"field": field_name, "description": description}],
    )  # fmt: skip


# What each kind accepts, from the API facts: name -> (type, required).
_FIELDS: dict[str, dict[str, tuple[type, bool]]] = {
    "meeting_list": {
        "start_time": (str, True), "end_time": (str, True), "meeting_status": (int, False),
        "meeting_no": (str, False), "user_id": (str, False), "room_id": (str, False), "meeting_type": (int, False),
    },
    "participant_list": {
        "meeting_start_time": (str, True), "meeting_end_time": (str, True), "meeting_status": (int, False),
        "meeting_no": (str, True), "user_id": (str, False), "room_id": (str, False),
    },
    "participant_quality_list": {
        "meeting_start_time": (str, True), "meeting_end_time": (str, True), "meeting_no": (str, True),
        "join_time": (str, True), "user_id": (str, False), "room_id": (str, False),
    },
    "resource_reservation_list": {
        "room_level_id": (str, True), "need_topic": (bool, False), "start_time": (str, True),
        "end_time": (str, True), "room_ids": (list, False), "is_exclude": (bool, False),
    },
}  # fmt: skip
_RANGES = {
    "meeting_list": ("start_time", "end_time", 366 * DAY),
    "participant_list": ("meeting_start_time", "meeting_end_time", DAY),
    "participant_quality_list": ("meeting_start_time", "meeting_end_time", DAY),
    "resource_reservation_list": ("start_time", "end_time", DAY),
}


_TIME_FIELDS = ("start_time", "end_time", "meeting_start_time", "meeting_end_time", "join_time")


def _validate_export(kind: str, body: Mapping[str, Any]) -> None:
    fields = _FIELDS[kind]
    for name, value in body.items():
        if name not in fields:
            continue  # Feishu ignores unknown JSON fields
        expected, _ = fields[name]
        # Feishu's reference types times as strings, while the official SDK sends them as integers: take both.
        if name in _TIME_FIELDS and type(value) is int:
            continue
        if type(value) is not expected:
            raise _param_error(name, f"must be of type {expected.__name__}")
    for name, (_, required) in fields.items():
        if required and name not in body:
            raise _param_error(name, "is required")
    for name in _TIME_FIELDS:
        if name in body and not str(body[name]).isdigit():
            raise _param_error(name, "must be unix seconds")
    if "meeting_no" in body and not (len(body["meeting_no"]) == 9 and body["meeting_no"].isdigit()):
        raise _param_error("meeting_no", "must be a 9-digit meeting number")
    if kind == "meeting_list":
        filters = [name for name in ("meeting_no", "user_id", "room_id", "meeting_type") if name in body]
        if len(filters) > 1:
            raise _param_error(filters[1], "only one filter among meeting_no, user_id, room_id, meeting_type")
    if kind == "participant_list" and "user_id" in body and "room_id" in body:
        raise _param_error("room_id", "user_id and room_id cannot both be set")
    if kind == "participant_quality_list" and ("user_id" in body) == ("room_id" in body):
        raise _param_error("user_id", "exactly one of user_id and room_id is required")
    start_name, end_name, longest = _RANGES[kind]
    start, end = int(body[start_name]), int(body[end_name])
    if end <= start:
        raise _param_error(end_name, "must be after the start time")
    if end - start > longest:
        raise _param_error(end_name, f"the range is longer than {longest // DAY} day(s)")
    if start > time.time():
        raise _param_error(start_name, "cannot be in the future")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a local Feishu VC API emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--app-id", default="cli_emulator")
    parser.add_argument("--app-secret", default="emulator-secret")
    parser.add_argument("--export-delay", type=float, default=2.0, help="seconds until an export is done")
    parser.add_argument(
        "--export-delay-max", type=float, default=None, help="if set, each export takes a random time up to this"
    )
    parser.add_argument("--token-ttl", type=float, default=7200.0)
    parser.add_argument("--rate-limit", type=int, default=100, help="requests per window per endpoint")
    parser.add_argument("--rate-window", type=float, default=60.0, help="seconds")
    parser.add_argument("--rows", type=int, default=None, help="force the data rows of every export (large files)")
    args = parser.parse_args(argv)
    emulator = FeishuVCEmulator(
        app_id=args.app_id,
        app_secret=args.app_secret,
        host=args.host,
        port=args.port,
        export_delay=args.export_delay if args.export_delay_max is None else (args.export_delay, args.export_delay_max),
        token_ttl=args.token_ttl,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        rows_override=args.rows,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop cleanly (temporary files) on terminate()
    with emulator:
        print(f"Feishu VC emulator listening on {emulator.url} (app {args.app_id})", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
