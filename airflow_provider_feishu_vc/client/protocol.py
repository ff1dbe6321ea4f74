"""How to talk to Feishu, written once for the sync and the async client.

Each API call is a *flow*: a generator that yields what it needs done (send this request, sleep, give me a
token) and receives the outcome. The flow holds every rule (envelope parsing, error mapping, retries, the
token-invalid replay); a driver only performs I/O. ``FeishuVCClient`` drives flows with blocking I/O,
``AsyncFeishuVCClient`` with asyncio, so the two cannot disagree on a rule.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, TypeVar

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import (
    STALE_APP_TICKET_CODE,
    FeishuVCAPIError,
    FeishuVCError,
    FeishuVCTransportError,
)

T = TypeVar("T")

TENANT_TOKEN_INTERNAL_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
STORE_APP_TOKEN_PATH = "/open-apis/auth/v3/app_access_token"
STORE_TENANT_TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token"
APP_TICKET_RESEND_PATH = "/open-apis/auth/v3/app_ticket/resend"
USER_TOKEN_PATH = "/open-apis/authen/v2/oauth/token"

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
USER_AGENT = "airflow-provider-feishu-vc/0.1.0"


# --- what a flow asks its driver for ------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request to the API origin. ``token`` becomes the Bearer header; ``stream`` keeps the body open."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json_body: Mapping[str, Any] | None = None
    token: str | None = field(default=None, repr=False)
    stream: bool = False
    rate_limited_endpoint: bool = False

    def headers(self, flavour: str) -> dict[str, str]:
        """``flavour`` ("sync" / "async") goes into the User-Agent, so a server's logs tell workers from triggerers."""
        headers = {"Accept": "application/json", "User-Agent": f"{USER_AGENT} {flavour}"}
        if self.json_body is not None:
            headers["Content-Type"] = JSON_CONTENT_TYPE
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def body_bytes(self) -> bytes | None:
        return None if self.json_body is None else json.dumps(self.json_body).encode()


@dataclass
class HttpResponse:
    """The part of an HTTP answer a flow reads. ``stream`` is the driver's open response for a file download."""

    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes = b""
    stream: Any = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Sleep:
    seconds: float
    rate_limited: bool = False  # a 429: the async driver pauses every caller of the same app


@dataclass(frozen=True)
class NeedToken:
    """Ask the driver for the app's access token; ``stale`` is one Feishu just rejected (drop it, fetch anew)."""

    stale: str | None = field(default=None, repr=False)


Step = HttpRequest | Sleep | NeedToken
Flow = Generator[Step, Any, T]


# --- responses and errors -----------------------------------------------------------------------------------


def is_file_response(status: int, headers: Mapping[str, str]) -> bool:
    """A download answers with raw bytes on success and with a JSON envelope on error."""
    content_type = headers.get("content-type", "").lower()
    return status == 200 and "json" not in content_type


def _float_header(headers: Mapping[str, str], name: str) -> float | None:
    try:
        value = float(headers.get(name, ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def parse_envelope(response: HttpResponse) -> dict[str, Any]:
    """Return the decoded JSON body when ``code`` is 0; raise ``FeishuVCAPIError`` otherwise.

    ``code`` is read from the body whatever the HTTP status; a body that is not JSON (a gateway's HTML page)
    becomes an error quoting the HTTP status.
    """
    log_id = response.header("x-tt-logid")
    retry_after = _float_header(response.headers, "x-ogw-ratelimit-reset")
    try:
        payload = json.loads(response.body)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        code = int(payload.get("code", -1))
    except (ValueError, TypeError):
        snippet = " ".join(response.body[:160].decode("utf-8", "replace").split())
        raise FeishuVCAPIError(
            code=None,
            msg=f"the answer is not a Feishu JSON envelope: {snippet or '(empty body)'}",
            http_status=response.status,
            log_id=log_id,
            retry_after=retry_after,
        ) from None
    if code == 0 and response.status < 400:
        return payload
    error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
    raise FeishuVCAPIError(
        code=code,
        msg=str(payload.get("msg", "")),
        http_status=response.status,
        log_id=log_id or error.get("log_id"),
        permission_violations=error.get("permission_violations") or (),
        field_violations=error.get("field_violations") or (),
        retry_after=retry_after,
    )


# --- retries ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``max_retries`` more attempts after the first."""

    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))

    def delay_after(self, attempt: int, error: FeishuVCError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None when ``error`` must be raised now."""
        if attempt > self.max_retries or not getattr(error, "retryable", False):
            return None
        if isinstance(error, FeishuVCAPIError) and error.rate_limited:
            return error.retry_after if error.retry_after is not None else self.backoff(attempt) + 1.0
        return self.backoff(attempt)


# --- one API call -------------------------------------------------------------------------------------------


def call(request: HttpRequest, policy: RetryPolicy, *, authenticated: bool = True) -> Flow[HttpResponse]:
    """Send ``request`` until it succeeds or fails for good; return the successful response.

    A JSON answer is checked with :func:`parse_envelope`; a streamed file answer is returned untouched.
    On a token-invalid code the token is replaced and the request replayed once.
    """
    token = (yield NeedToken()) if authenticated else None
    replayed = False
    attempt = 0
    while True:
        attempt += 1
        try:
            response: HttpResponse = yield replace(request, token=token)
            if not (request.stream and is_file_response(response.status, response.headers)):
                parse_envelope(response)
            return response
        except FeishuVCTransportError as error:
            failure: FeishuVCError = error
        except FeishuVCAPIError as error:
            if error.token_invalid and authenticated and not replayed:
                replayed = True
                token = yield NeedToken(stale=token)
                attempt -= 1
                continue
            failure = error
        delay = policy.delay_after(attempt, failure)
        if delay is None:
            raise failure.after(attempt) if attempt > 1 else failure  # type: ignore[attr-defined]
        rate_limited = isinstance(failure, FeishuVCAPIError) and failure.rate_limited
        yield Sleep(delay, rate_limited=rate_limited)


def call_json(request: HttpRequest, policy: RetryPolicy, *, authenticated: bool = True) -> Flow[dict[str, Any]]:
    response = yield from call(request, policy, authenticated=authenticated)
    return parse_envelope(response)


# --- export status ------------------------------------------------------------------------------------------


class ExportStatus(IntEnum):
    PROCESSING = 1
    FAILED = 2
    DONE = 3


@dataclass(frozen=True)
class ExportTask:
    """The state of one Feishu export task."""

    export_task_id: str
    status: ExportStatus
    url: str | None = None
    file_token: str | None = None
    fail_msg: str | None = None

    @classmethod
    def from_payload(cls, export_task_id: str, payload: Mapping[str, Any]) -> ExportTask:
        data = payload.get("data") or {}
        raw_status = data.get("status")
        try:
            status = ExportStatus(int(raw_status))
        except (TypeError, ValueError):
            raise FeishuVCAPIError(
                code=0,
                msg=f"export {export_task_id} has an unknown status {raw_status!r} (expected 1, 2 or 3)",
                http_status=200,
            ) from None
        file_token = data.get("file_token") or None
        if status is ExportStatus.DONE and not file_token:
            raise FeishuVCAPIError(
                code=0, msg=f"export {export_task_id} is done but Feishu sent no file_token", http_status=200
            )
        return cls(export_task_id, status, data.get("url") or None, file_token, data.get("fail_msg") or None)


# --- tokens -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    expires_at: float  # time.monotonic() seconds
    lifetime: float
    refresh_token: str | None = field(default=None, repr=False)  # user tokens: the single-use successor

    def is_fresh(self, now: float | None = None) -> bool:
        """Fresh until a few minutes before expiry (a quarter of its life for short-lived tokens)."""
        margin = min(300.0, self.lifetime / 4)
        return (time.monotonic() if now is None else now) < self.expires_at - margin


def _token_from(payload: Mapping[str, Any], value_key: str, ttl_key: str) -> AccessToken:
    source = payload.get("data") if value_key not in payload and isinstance(payload.get("data"), dict) else payload
    value = source.get(value_key)
    try:
        lifetime = float(source.get(ttl_key))
    except (TypeError, ValueError):
        lifetime = 0.0
    if not value or lifetime <= 0:
        raise FeishuVCAPIError(code=0, msg=f"the token answer has no {value_key} / {ttl_key}", http_status=200)
    return AccessToken(
        value=value,
        expires_at=time.monotonic() + lifetime,
        lifetime=lifetime,
        refresh_token=source.get("refresh_token"),
    )


def fetch_token(config: ClientConfig, policy: RetryPolicy, current: AccessToken | None) -> Flow[AccessToken]:
    """Fetch the access token the app acts with: tenant token (self-built or store app) or user token."""
    if config.uses_user_token:
        if current is None and config.user_access_token:
            # Feishu does not say how long a given user token has left: use it until Feishu rejects it.
            return AccessToken(config.user_access_token, time.monotonic() + 7200, 7200)
        refresh_token = (current.refresh_token if current else None) or config.refresh_token
        if not refresh_token:
            raise FeishuVCAPIError(
                code=99991677,
                msg="the user access token is invalid or expired and the connection has no refresh_token",
                http_status=401,
            )
        body = {
            "grant_type": "refresh_token",
            "client_id": config.app_id,
            "client_secret": config.app_secret,
            "refresh_token": refresh_token,
        }
        payload = yield from call_json(
            HttpRequest("POST", USER_TOKEN_PATH, json_body=body), policy, authenticated=False
        )
        return _token_from(payload, "access_token", "expires_in")

    credentials = {"app_id": config.app_id, "app_secret": config.app_secret}
    if config.app_type == "self_built":
        request = HttpRequest("POST", TENANT_TOKEN_INTERNAL_PATH, json_body=credentials)
        payload = yield from call_json(request, policy, authenticated=False)
        return _token_from(payload, "tenant_access_token", "expire")

    app_request = HttpRequest("POST", STORE_APP_TOKEN_PATH, json_body={**credentials, "app_ticket": config.app_ticket})
    try:
        app_payload = yield from call_json(app_request, policy, authenticated=False)
    except FeishuVCAPIError as error:
        if error.code == STALE_APP_TICKET_CODE:
            resend = HttpRequest("POST", APP_TICKET_RESEND_PATH, json_body=credentials)
            yield from call_json(resend, policy, authenticated=False)
        raise
    app_token = _token_from(app_payload, "app_access_token", "expire")
    tenant_request = HttpRequest(
        "POST",
        STORE_TENANT_TOKEN_PATH,
        json_body={"app_access_token": app_token.value, "tenant_key": config.tenant_key},
    )
    payload = yield from call_json(tenant_request, policy, authenticated=False)
    return _token_from(payload, "tenant_access_token", "expire")
