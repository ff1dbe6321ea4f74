"""How to talk to Feishu, written once for the sync and the async driver.

Each API call is a *flow*: a generator that yields what it needs done (send this request, sleep, give me a
token, mask this secret) and receives the outcome. The flow holds every rule (envelope parsing, error mapping,
retries, the token-invalid replay, the rate budget); a driver only performs the steps with its kind of I/O.
Flows can be tested by feeding them scripted outcomes, with no server at all.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from airflow_provider_feishu_vc import __version__
from airflow_provider_feishu_vc.client.budget import RateBudget, Slot
from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError, FeishuVCError

T = TypeVar("T")

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
USER_AGENT = f"airflow-provider-feishu-vc/{__version__}"


# --- what a flow asks its driver for ------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request to the API origin. ``token`` becomes the Bearer header; ``stream`` keeps the body open
    (a file download); ``budget`` paces the request under the API's rate limit."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json_body: Mapping[str, Any] | None = None
    token: str | None = field(default=None, repr=False)
    stream: bool = False
    budget: RateBudget | None = field(default=None, compare=False)

    handler = "send"

    def headers(self, driver_name: str) -> dict[str, str]:
        """``driver_name`` ("sync" / "async") goes into the User-Agent, so a server's logs tell workers from
        triggerers."""
        # A download answers with the file's own type: it must not be asked for JSON.
        headers = {"Accept": "*/*" if self.stream else "application/json", "User-Agent": f"{USER_AGENT} {driver_name}"}
        if self.json_body is not None:
            headers["Content-Type"] = JSON_CONTENT_TYPE
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def body_bytes(self) -> bytes | None:
        return None if self.json_body is None else json.dumps(self.json_body).encode()


@dataclass
class HttpResponse:
    """The part of an HTTP answer a flow reads. ``stream`` is the driver's open response of a file download;
    ``payload`` is the decoded JSON envelope once :func:`parse_envelope` accepted it."""

    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes = b""
    stream: Any = None
    payload: dict[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def is_file(self) -> bool:
        """A download answers with raw bytes on success and with a JSON envelope on error."""
        return self.status == 200 and "json" not in self.headers.get("content-type", "").lower()


@dataclass(frozen=True)
class Sleep:
    seconds: float

    handler = "sleep"


@dataclass(frozen=True)
class NeedToken:
    """Ask the driver for the app's access token; ``stale`` is one Feishu just rejected (drop it, fetch anew)."""

    stale: str | None = field(default=None, repr=False)

    handler = "token"


@dataclass(frozen=True)
class MaskSecret:
    """Register a secret (a token just fetched) with the driver's secret masker before it can reach a log."""

    value: str = field(repr=False)

    handler = "mask"


@dataclass(frozen=True)
class SharedUserTokens:
    """Use the store where every process of the deployment shares a user's tokens: ``action`` is ``load`` or
    ``save`` (the tokens), ``load_lease`` or ``save_lease`` (which process may refresh them now); ``value`` is what
    to save. The driver answers with what is stored (None when nothing is) and throws
    ``FeishuVCTokenStoreError`` into the flow when the store cannot be reached."""

    action: str
    value: Any = field(default=None, repr=False)

    handler = "shared_tokens"


Step = HttpRequest | Sleep | NeedToken | MaskSecret | SharedUserTokens
Flow = Generator[Step, Any, T]


class Driving(Generic[T]):
    """The bookkeeping of driving one flow: which step comes next, and the flow's result once it returns.

    A driver loops ``while (step := driving.next_step()) is not None: driving.outcome = <perform step>``.
    An outcome that is an exception (a transport error) is thrown into the flow instead of sent.
    """

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self.outcome: Any = None
        self.result: T | None = None

    def next_step(self) -> Step | None:
        outcome, self.outcome = self.outcome, None
        try:
            if isinstance(outcome, BaseException):
                return self._flow.throw(outcome)
            return self._flow.send(outcome)
        except StopIteration as stop:
            self.result = stop.value
            return None


# --- responses and errors -----------------------------------------------------------------------------------


#: Feishu's rate-limit window lasts a minute: a longer reset is junk, not an instruction to stop for longer.
MAX_RATE_LIMIT_RESET = 60.0


def _finite_header(headers: Mapping[str, str], name: str) -> float | None:
    try:
        value = float(headers.get(name, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def rate_limit_reset(headers: Mapping[str, str]) -> float | None:
    """Seconds until Feishu's window frees a place (``x-ogw-ratelimit-reset``): finite, at most a minute."""
    value = _finite_header(headers, "x-ogw-ratelimit-reset")
    return None if value is None or value < 0 else min(value, MAX_RATE_LIMIT_RESET)


def rate_limit_cap(headers: Mapping[str, str]) -> float | None:
    """Requests Feishu's window allows (``x-ogw-ratelimit-limit``): a whole number of at least 1."""
    value = _finite_header(headers, "x-ogw-ratelimit-limit")
    return None if value is None or value <= 0 else float(max(1, math.floor(value)))


def parse_envelope(response: HttpResponse, *, quote_body: bool = True) -> HttpResponse:
    """Decode the JSON body into ``response.payload`` when ``code`` is 0; raise ``FeishuVCAPIError`` otherwise.

    ``code`` is read from the body whatever the HTTP status; a body that is not JSON (a gateway's HTML page)
    becomes an error quoting the HTTP status and, unless ``quote_body`` is off (token endpoints, whose answers
    carry secrets), the body's first words. A redirect is never followed: it is an error naming where it pointed.
    """
    log_id = response.header("x-tt-logid")
    retry_after = rate_limit_reset(response.headers)
    window_cap = rate_limit_cap(response.headers)
    try:
        payload = json.loads(response.body, parse_constant=_refuse_constant, parse_float=_finite_float)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        code = int(payload.get("code", -1))
    except (ValueError, TypeError, OverflowError):
        snippet = " ".join(response.body[:160].decode("utf-8", "replace").split()) if quote_body else ""
        shown = snippet or ("(empty body)" if not response.body else f"({len(response.body)} bytes not shown)")
        raise FeishuVCAPIError(
            code=None,
            msg=f"the answer is not a Feishu JSON envelope: {shown}",
            http_status=response.status,
            log_id=log_id,
            retry_after=retry_after,
            window_cap=window_cap,
        ) from None
    if 300 <= response.status < 400:
        location = response.header("location") or "nowhere"
        raise FeishuVCAPIError(
            code=code if code else None,
            msg=f"Feishu answered with a redirect (to {location[:100]}), which is never followed",
            http_status=response.status,
            log_id=log_id,
        )
    if code == 0 and response.status < 400:
        response.payload = payload
        return response
    raw_error = payload.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    # The v2 OAuth endpoint answers errors in OAuth's shape: ``error`` (a word) and ``error_description``, no msg.
    oauth_words = " / ".join(
        str(payload[key])
        for key in ("error", "error_description")
        if payload.get(key) and isinstance(payload[key], str)
    )
    message = payload.get("msg")
    logged = error.get("log_id")
    raise FeishuVCAPIError(
        code=code,
        msg=(message if isinstance(message, str) and message else oauth_words)[:MAX_QUOTED],
        http_status=response.status,
        log_id=log_id or (logged[:MAX_QUOTED] if isinstance(logged, str) and logged else None),
        permission_violations=_violations(error.get("permission_violations")),
        field_violations=_violations(error.get("field_violations")),
        retry_after=retry_after,
        window_cap=window_cap,
    )


def _refuse_constant(name: str) -> float:
    """``Infinity``, ``-Infinity``, ``NaN``: Python's JSON decoder takes them, JSON does not, and Feishu never sends
    them (a proxy or a broken gateway might): the answer is no envelope."""
    raise ValueError(f"{name} is no JSON number")


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent; one too large for a float (``1e400``) is refused, not infinite."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


#: The most of a message from Feishu an error quotes.
MAX_QUOTED = 500


def _violations(value: Any) -> list[dict[str, Any]]:
    """Feishu's ``permission_violations`` / ``field_violations``: the objects among them, whatever else came."""
    return [item for item in value if isinstance(item, dict)][:20] if isinstance(value, list) else []


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
        if attempt > self.max_retries or not error.retryable:
            return None
        if isinstance(error, FeishuVCAPIError) and error.rate_limited:
            return error.retry_after if error.retry_after is not None else self.backoff(attempt) + 1.0
        return self.backoff(attempt)


def wait_for_budget(budget: RateBudget) -> Flow[Slot]:
    """Wait for the next free slot of ``budget``, and for any pause a 429 put on it to pass."""
    while True:
        slot = budget.reserve()
        if slot.wait > 0:
            yield Sleep(slot.wait)
        if not budget.paused():
            return slot


# --- one API call -------------------------------------------------------------------------------------------


def call_with_retries(request: HttpRequest, policy: RetryPolicy, *, authenticated: bool = True) -> Flow[HttpResponse]:
    """Send ``request`` until it succeeds or fails for good; return the answer, its envelope parsed once.

    A JSON answer is checked with :func:`parse_envelope`; a streamed file answer is returned untouched.
    On a token-invalid code the token is replaced and the request replayed once. A 429 pauses every caller
    of the request's rate budget until Feishu's reset time and slows the budget's pace; accepted requests
    raise it back. The token is asked for right before each send, after any wait for the budget or a retry, so
    that it never expires while the request waits its turn.
    """
    token: str | None = None
    rejected: str | None = None  # the token Feishu just refused, which the next ask replaces
    budget, slot = request.budget, None
    replayed = False
    attempt = 0
    while True:
        attempt += 1
        if budget is not None:
            slot = yield from wait_for_budget(budget)
        if authenticated:
            token = yield NeedToken(stale=rejected)
            rejected = None
        try:
            response: HttpResponse = yield replace(request, token=token)
            answered = (
                response
                if request.stream and response.is_file
                else parse_envelope(response, quote_body=authenticated)  # token answers carry secrets
            )
        except FeishuVCAPIError as error:
            if budget and slot and not error.rate_limited:
                budget.accepted(slot)  # Feishu's limiter let it through; the error is about something else
            if error.token_invalid and authenticated and not replayed:
                replayed, rejected = True, token
                attempt -= 1
                continue
            failure: FeishuVCError = error
        except FeishuVCError as error:  # transport errors, thrown in by the driver
            failure = error
        else:
            if budget and slot:
                budget.accepted(slot)
            return answered
        delay = policy.delay_after(attempt, failure)
        if budget and slot and isinstance(failure, FeishuVCAPIError) and failure.rate_limited:
            # Every caller of the budget waits for Feishu's reset, also when this one has no retries left.
            pause = delay if delay is not None else (failure.retry_after or 0.0)
            budget.refused(slot, pause, failure.window_cap)
        if delay is None:
            raise failure.after(attempt) if attempt > 1 else failure
        yield Sleep(delay)
