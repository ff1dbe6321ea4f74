"""Faults a test can inject: what each one is, and the one place that hands them out."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Fault(str, Enum):
    """A misbehaviour served instead of, or on top of, the normal answer. Parameters in brackets."""

    LATENCY = "latency"  # [seconds] before answering
    HTTP_ERROR = "http_error"  # [status, code] a Feishu error envelope
    ERROR_CODE = "error_code"  # [status, code] the same, by another name
    GATEWAY_HTML = "gateway_html"  # [status] an nginx HTML page
    RATE_LIMIT = "rate_limit"  # [reset: seconds, or None for no header] a 429
    TOKEN_INVALID = "token_invalid"  # [code] reject the access token
    MALFORMED_JSON = "malformed_json"  # a cut JSON body with HTTP 200
    REDIRECT = "redirect"  # [location] a 302
    UNKNOWN_STATUS = "unknown_status"  # the status answer says 7
    MISSING_FILE_TOKEN = "missing_file_token"  # a done status without file_token
    DROP_CONNECTION = "drop_connection"  # [after_bytes] downloads: reset mid-body
    TRUNCATE = "truncate"  # [after_bytes] downloads: end the body early
    SLOW_BODY = "slow_body"  # [chunk, seconds] downloads: trickle the body
    EMPTY_FILE = "empty_file"  # downloads: a zero-byte file


#: The faults that replace the whole answer of any request.
ANSWER_FAULTS = (
    Fault.HTTP_ERROR, Fault.ERROR_CODE, Fault.GATEWAY_HTML, Fault.RATE_LIMIT, Fault.MALFORMED_JSON, Fault.REDIRECT,
)  # fmt: skip


@dataclass
class Injected:
    fault: Fault
    path: str
    remaining: int
    params: dict[str, Any]


class FaultPlan:
    """Faults waiting to be served, each for the next ``times`` requests whose path starts with its ``path``."""

    def __init__(self) -> None:
        self._pending: list[Injected] = []
        self._lock = threading.Lock()

    def inject(self, fault: Fault | str, path: str, times: int, params: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(Injected(Fault(fault), path, times, params))

    def take(self, path: str, *faults: Fault) -> Injected | None:
        """The first pending fault among ``faults`` that applies to ``path``, used up by one."""
        with self._lock:
            for injected in self._pending:
                if injected.fault in faults and path.startswith(injected.path):
                    injected.remaining -= 1
                    if injected.remaining <= 0:
                        self._pending.remove(injected)
                    return injected
        return None

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
