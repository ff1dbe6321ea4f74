"""The emulator's HTTP face: Feishu's routes and envelopes over :class:`~.state.TenantState`, fault injection,
and the emulator's own admin paths (which are not part of Feishu's API)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, unquote

from airflow_provider_feishu_vc.testing.emulator.faults import ANSWER_FAULTS, Fault, FaultPlan
from airflow_provider_feishu_vc.testing.emulator.rules import (
    EXPORT_KINDS,
    FeishuError,
    OAuthError,
    RateLimited,
    check_user_id_type,
)
from airflow_provider_feishu_vc.testing.emulator.state import (
    EXPORTS_PREFIX,
    TOKEN_PATH_PREFIXES,
    RequestRecord,
    TenantState,
)
from airflow_provider_feishu_vc.testing.emulator.workbook import XLSX_CONTENT_TYPE

#: Where the status answer's ``url`` points (Feishu's is a CDN address; unconfirmed whether it needs auth:
#: served here without).
CDN_PREFIX = "/cdn/"
DOWNLOAD_PATH = EXPORTS_PREFIX + "download"
DOWNLOAD_CHUNK = 1024 * 1024
#: Not a Feishu path: the emulator's own request statistics, for tests that run it as a separate process.
ADMIN_STATS_PATH = "/_emulator/stats"
#: Not a Feishu path either: when each export is (or was) done, as wall-clock epoch seconds (``?detail=1``: what
#: each export was asked for, ``{"kind", "body"}``).
ADMIN_EXPORTS_PATH = "/_emulator/exports"
#: POST a JSON object of option changes ({"rate_limit": n, ...}) to change a running emulator process.
ADMIN_CONFIG_PATH = "/_emulator/config"
#: POST to forget every token, export and request (a fresh tenant, same options).
ADMIN_RESET_PATH = "/_emulator/reset"
#: POST to make every pending export done now ({"export_task_id": id}: only that one).
ADMIN_FINISH_PATH = "/_emulator/finish"
#: POST {"fault": name, "path": prefix, "times": n, "params": {...}} to inject a fault into a running process.
ADMIN_FAULTS_PATH = "/_emulator/faults"


def request_line(record: RequestRecord) -> str:
    """``<UTC time> <method> <path> <status>``, with every query value and a CDN address's file token shown as
    ``***``: the headers (the access token) are never shown, and a file token is as good as the file."""
    path = CDN_PREFIX + "***" if record.path.startswith(CDN_PREFIX) else record.path
    names = [pair.partition("=")[0] for pair in record.query.split("&") if pair]
    query = "?" + "&".join(f"{name}=***" for name in names) if names else ""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.at))
    return f"{when} {record.method} {path}{query} {record.status}"


class EmulatorApp:
    """An ASGI application serving one tenant's state; ``origin`` tells it its own URL (for status ``url``)."""

    def __init__(self, state: TenantState, faults: FaultPlan, origin: Callable[[], str]) -> None:
        self.state = state
        self.faults = faults
        self.origin = origin
        #: Told one line per answered API request (``-v`` on the command line), as :func:`request_line` shows it.
        self.request_log: Callable[[str], None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        from starlette.requests import Request

        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if request.url.path.startswith("/_emulator/"):
            await (await self._admin(request))(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in request.headers.items()}
        record = RequestRecord(
            request.method, request.url.path, request.url.query, headers.get("authorization"),
            headers.get("user-agent", ""),
        )  # fmt: skip
        self.state.record(record)
        response = await self._cdn(path=request.url.path) if request.url.path.startswith(CDN_PREFIX) else None
        response = response or await self._respond(request, headers)
        record.status = response.status_code
        if self.request_log is not None:
            self.request_log(request_line(record))
        response.headers["X-Tt-Logid"] = f"{time.strftime('%Y%m%d%H%M%S')}{secrets.token_hex(8)}"
        await response(scope, receive, _with_header_case(send))

    async def _admin(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        path = request.url.path
        if path == ADMIN_CONFIG_PATH:
            self.state.options.change(await request.json())
        elif path == ADMIN_RESET_PATH:
            self.faults.clear()
            self.state.reset()
        elif path == ADMIN_FINISH_PATH:
            self.state.finish_now((await request.json()).get("export_task_id"))
        elif path == ADMIN_EXPORTS_PATH:
            if request.query_params.get("detail"):
                return JSONResponse(self.state.export_requests())
            return JSONResponse(self.state.export_ready_times())
        elif path == ADMIN_FAULTS_PATH:
            wanted = await request.json()
            self.faults.inject(wanted["fault"], wanted.get("path", "/open-apis/"), int(wanted.get("times", 1)),
                               dict(wanted.get("params") or {}))  # fmt: skip
        elif path != ADMIN_STATS_PATH:
            return JSONResponse({"error": f"unknown admin path {path}"}, status_code=404)
        return JSONResponse(self.state.stats())

    async def _respond(self, request: Any, headers: dict[str, str]) -> Any:
        path = request.url.path
        delay = self.faults.take(path, Fault.LATENCY)
        if delay:
            await asyncio.sleep(float(delay.params.get("seconds", 1.0)))
        fault = self.faults.take(path, *ANSWER_FAULTS)
        if fault is not None:
            return self._fault_answer(fault.fault, fault.params)
        try:
            body = await _json_body(request) if request.method == "POST" else {}
            return await self._route(request, path, headers, body)
        except RateLimited as error:
            return self._rate_limited(error.reset)
        except FeishuError as error:
            return _error(error)

    def _fault_answer(self, fault: Fault, params: dict[str, Any]) -> Any:
        from starlette.responses import HTMLResponse, Response

        if fault is Fault.GATEWAY_HTML:
            status = int(params.get("status", 502))
            return HTMLResponse(f"<html><body><h1>{status} Bad Gateway</h1>nginx</body></html>", status_code=status)
        if fault is Fault.MALFORMED_JSON:
            return Response(b'{"code": 0, "data": {', media_type="application/json")
        if fault is Fault.REDIRECT:
            return Response(status_code=302, headers={"Location": str(params["location"])})
        if fault is Fault.RATE_LIMIT:
            return self._rate_limited(params.get("reset", 1.0))
        return _error(FeishuError(int(params.get("status", 500)), int(params.get("code", 121001)), "injected"))

    def _rate_limited(self, reset: float | None) -> Any:
        from starlette.responses import JSONResponse

        headers = {"x-ogw-ratelimit-limit": str(self.state.options.rate_limit)}
        if reset is not None:
            headers["x-ogw-ratelimit-reset"] = f"{reset:.3f}".rstrip("0").rstrip(".")
        return JSONResponse(
            {"code": 99991400, "msg": "request trigger frequency limit"}, status_code=429, headers=headers
        )

    async def _route(self, request: Any, path: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
        method = request.method
        if path.startswith(TOKEN_PATH_PREFIXES):
            if method != "POST":
                raise FeishuError(404, 404, "404 page not found: token endpoints accept POST only")
            return self._token_endpoint(path, body)
        if path.startswith(EXPORTS_PREFIX):
            name = path.removeprefix(EXPORTS_PREFIX)
            if method == "POST" and name in EXPORT_KINDS:
                self._authenticate(headers)
                self.state.spend_rate(name)
                check_user_id_type(name, request.query_params.get("user_id_type"))
                return _ok({"data": {"task_id": self.state.create_export(name, body).task_id}})
            if method == "GET" and name == "download":
                self._authenticate(headers)
                self.state.spend_rate("download")
                return await self._download(request.query_params.get("file_token", ""))
            if method == "GET" and "/" not in name:
                self._authenticate(headers)
                self.state.spend_rate("get")
                return _ok({"data": self._status(name)})
        raise FeishuError(404, 404, f"404 page not found: {method} {path}")

    def _authenticate(self, headers: dict[str, str]) -> None:
        self.state.authenticate(headers.get("authorization", ""))
        fault = self.faults.take("/open-apis/vc/", Fault.TOKEN_INVALID)
        if fault is not None:
            raise FeishuError(400, int(fault.params.get("code", 99991663)), "injected token error")

    def _status(self, task_id: str) -> dict[str, Any]:
        payload = self.state.status(task_id, self.origin())
        if self.faults.take(EXPORTS_PREFIX + task_id, Fault.UNKNOWN_STATUS):
            payload["status"] = 7
        if self.faults.take(EXPORTS_PREFIX + task_id, Fault.MISSING_FILE_TOKEN):
            payload.pop("file_token", None)
        return payload

    # -- tokens --------------------------------------------------------------------------------------------

    def _token_endpoint(self, path: str, body: dict[str, Any]) -> Any:
        state = self.state

        def answer(token: Any, field_name: str, **more: Any) -> Any:
            return _ok({field_name: token.value, "expire": int(token.remaining()), **more}, msg="ok")

        if path == "/open-apis/auth/v3/tenant_access_token/internal":
            state.check_app(body)
            return answer(state.issue("tenant", "tenant"), "tenant_access_token")
        if path == "/open-apis/auth/v3/app_access_token/internal":
            state.check_app(body)
            tenant = state.issue("tenant", "tenant")
            return answer(state.issue("app", "app"), "app_access_token", tenant_access_token=tenant.value)
        if path == "/open-apis/auth/v3/app_access_token":
            state.check_app(body)
            if body.get("app_ticket") != state.options.app_ticket:
                raise FeishuError(200, 10012, "app_ticket is invalid")
            return answer(state.issue("app", "app"), "app_access_token")
        if path == "/open-apis/auth/v3/tenant_access_token":
            if not state.valid_token(str(body.get("app_access_token")), "app"):
                raise FeishuError(200, 10002, "app_access_token invalid")
            if not body.get("tenant_key"):
                raise FeishuError(200, 10003, "invalid param: tenant_key")
            return answer(state.issue("tenant", f"tenant:{body['tenant_key']}"), "tenant_access_token")
        if path == "/open-apis/auth/v3/app_ticket/resend":
            state.check_app(body)
            return _ok({}, msg="ok")
        if path == "/open-apis/authen/v2/oauth/token":
            grant = body.get("grant_type")
            if grant not in ("refresh_token", "authorization_code"):
                raise OAuthError(
                    400, 20001, "unsupported_grant_type", "grant_type must be refresh_token or authorization_code"
                )
            state.check_app(body, "client_id", "client_secret")
            if grant == "refresh_token":
                token, successor = state.refresh_user_token(body.get("refresh_token"))
            else:
                token, successor = state.exchange_authorization_code(body.get("code"))
            return _ok(
                {
                    "access_token": token.value,
                    "expires_in": int(state.options.token_ttl),
                    "refresh_token": successor,
                    "refresh_token_expires_in": int(state.options.refresh_token_ttl),
                    "token_type": "Bearer",
                    "scope": "vc:export",
                },
                msg=None,
            )
        raise FeishuError(404, 404, f"404 page not found: {path}")

    # -- downloads -----------------------------------------------------------------------------------------

    async def _cdn(self, path: str) -> Any:
        try:
            return await self._download(unquote(path.removeprefix(CDN_PREFIX)))
        except FeishuError as error:
            return _error(error)

    async def _download(self, file_token: str) -> Any:
        from starlette.responses import StreamingResponse

        job = self.state.finished_export(file_token)
        path = await asyncio.to_thread(self.state.workbook, job)
        size = path.stat().st_size
        name = self.state.download_filename or f"视频会议_{job.kind}_{job.task_id}.xlsx"
        ascii_name = "".join(ch if " " <= ch < "\x7f" and ch not in '"\\' else "_" for ch in name)
        if self.faults.take(DOWNLOAD_PATH, Fault.EMPTY_FILE):
            size = 0
        cut = self.faults.take(DOWNLOAD_PATH, Fault.DROP_CONNECTION, Fault.TRUNCATE)
        limit = int(cut.params.get("after_bytes", size // 2)) if cut else size
        slow = self.faults.take(DOWNLOAD_PATH, Fault.SLOW_BODY)
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
            if cut is not None and cut.fault is Fault.DROP_CONNECTION:
                raise ConnectionAbortedError("emulator dropped the connection on purpose")

        return StreamingResponse(
            body(),
            media_type=XLSX_CONTENT_TYPE,
            headers={
                "Content-Length": str(size),
                "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
            },
        )


async def _json_body(request: Any) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise FeishuError(400, 9499, "Bad Request: body is not JSON") from None
    if not isinstance(body, dict):
        raise FeishuError(400, 9499, "Bad Request: body must be a JSON object")
    return body


def _ok(payload: dict[str, Any], msg: str | None = "success") -> Any:
    from starlette.responses import JSONResponse

    envelope: dict[str, Any] = {"code": 0} if msg is None else {"code": 0, "msg": msg}
    return JSONResponse({**envelope, **payload})


def _error(error: FeishuError) -> Any:
    from starlette.responses import JSONResponse

    if isinstance(error, OAuthError):
        oauth = {"code": error.code, "error": error.oauth_error, "error_description": error.msg}
        return JSONResponse(oauth, status_code=error.http_status)
    payload: dict[str, Any] = {"code": error.code, "msg": error.msg}
    if error.error:
        payload["error"] = error.error
    return JSONResponse(payload, status_code=error.http_status)


#: Feishu's spelling of the header names it sends (the emulator's framework lower-cases every name).
_HEADER_SPELLING = {b"x-tt-logid": b"X-Tt-Logid", b"x-request-id": b"X-Request-Id"}


def _spelled(name: bytes) -> bytes:
    if name.startswith(b"x-ogw-"):
        return name  # Feishu's rate-limit headers are lower case
    return _HEADER_SPELLING.get(name) or b"-".join(part.capitalize() for part in name.split(b"-"))


def _with_header_case(send: Callable[..., Any]) -> Callable[..., Any]:
    """Send header names as Feishu writes them (``Content-Disposition``, ``X-Tt-Logid``): the official SDK looks
    them up case-sensitively."""

    async def spelled(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [(_spelled(name), value) for name, value in message["headers"]]}
        await send(message)

    return spelled
