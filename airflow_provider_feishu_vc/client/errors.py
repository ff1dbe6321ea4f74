"""The one exception family raised by the Feishu VC client, the Hook and everything built on them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Codes that mean "the access token we sent is bad": drop it, fetch a fresh one, replay once.
TENANT_TOKEN_INVALID_CODES = frozenset({99991661, 99991663, 99991664, 99991665, 99991671})
USER_TOKEN_INVALID_CODES = frozenset({99991668, 99991677})
TOKEN_INVALID_CODES = TENANT_TOKEN_INVALID_CODES | USER_TOKEN_INVALID_CODES

RATE_LIMITED_CODE = 99991400
INTERNAL_ERROR_CODE = 121001
STALE_APP_TICKET_CODE = 10012

#: The v2 OAuth endpoint's own server error (HTTP 500).
OAUTH_SERVER_ERROR_CODE = 20050
#: The v2 OAuth endpoint refusing a refresh token: invalid, expired, already used (or revoked).
REFRESH_TOKEN_INVALID_CODE, REFRESH_TOKEN_EXPIRED_CODE, REFRESH_TOKEN_USED_CODE = 20026, 20037, 20064

#: Feishu codes worth another attempt after a backoff (besides rate limiting and transport errors).
RETRYABLE_CODES = frozenset({INTERNAL_ERROR_CODE, OAUTH_SERVER_ERROR_CODE})

_NEW_USER_TOKENS = (
    "Obtain new user tokens (the user signs in to the app again, and the authorization code is exchanged at "
    "/open-apis/authen/v2/oauth/token) and put them in the connection's user_access_token / refresh_token extras."
)

#: Codes that will not change on retry; each with what the user has to fix.
CODE_HINTS: Mapping[int, str] = {
    10003: "Feishu rejected the credentials: check the connection's App ID (login) and App Secret (password).",
    10014: (
        "Feishu says the app is disabled or does not exist: check the App ID (login) and that the app is enabled "
        "and its version published in the developer console."
    ),
    10015: "Feishu rejected the App Secret: check the connection's password (App Secret).",
    STALE_APP_TICKET_CODE: (
        "The store app's app_ticket is stale. A new ticket has been requested from Feishu (it is pushed to the "
        "app's event URL); put it in the connection's `app_ticket_secret` extra."
    ),
    121002: "Feishu does not support this export for the tenant or the request.",
    121003: "Feishu rejected a parameter of the request (see msg / field_violations).",
    121004: "The export task or its data does not exist (wrong export_task_id, or the file expired).",
    121005: (
        "No permission to export. The app needs the `vc:export` scope, and in the Feishu admin console the "
        "app's creator (tenant token) or the calling user (user token) must hold the 'Meeting management' "
        "admin role."
    ),
    99991672: "The app lacks an API scope for this call: grant it in the Feishu developer console and publish.",
    99991679: "The user has not granted the scope this call needs: the user must authorize the app again.",
    99991673: "The app is not installed or not available in this tenant.",
    99991401: "The caller's IP address is not in the app's IP allow-list.",
    99991403: "The app's monthly API quota is used up.",
    REFRESH_TOKEN_INVALID_CODE: f"Feishu does not know the user refresh token. {_NEW_USER_TOKENS}",
    REFRESH_TOKEN_EXPIRED_CODE: f"The user refresh token has expired. {_NEW_USER_TOKENS}",
    REFRESH_TOKEN_USED_CODE: (
        "The user refresh token was already used (each one works once) or was revoked. If another process "
        f"refreshed it, that process holds its successor. {_NEW_USER_TOKENS}"
    ),
}


class FeishuVCError(Exception):
    """Base class of every error raised by this provider.

    ``retryable`` says whether the same request may succeed later; ``after(attempts)`` is the error to raise
    once the retries are spent (the same error, stating how many attempts were made).
    """

    @property
    def retryable(self) -> bool:
        return False

    def after(self, attempts: int) -> FeishuVCError:
        return self


class FeishuVCConfigError(FeishuVCError, ValueError):
    """A bad input (connection field, export field, export id): names the field and what is allowed."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class FeishuVCTransportError(FeishuVCError):
    """The request never got an HTTP answer (refused, reset, timed out, DNS) after every attempt."""

    def __init__(self, host: str, detail: str, attempts: int = 1) -> None:
        self.host = host
        self.detail = detail
        self.attempts = attempts
        super().__init__(f"Could not reach {host} after {attempts} attempt(s): {detail}")

    @property
    def retryable(self) -> bool:
        return True

    def after(self, attempts: int) -> FeishuVCTransportError:
        return FeishuVCTransportError(self.host, self.detail, attempts)


class FeishuVCAPIError(FeishuVCError):
    """Feishu answered with an error (a non-zero ``code``, or an HTTP error without a JSON body)."""

    def __init__(
        self,
        *,
        code: int | None,
        msg: str,
        http_status: int,
        log_id: str | None = None,
        permission_violations: Sequence[Mapping[str, Any]] = (),
        field_violations: Sequence[Mapping[str, Any]] = (),
        retry_after: float | None = None,
        window_cap: float | None = None,
        attempts: int = 1,
    ) -> None:
        self.code = code
        self.msg = msg
        self.http_status = http_status
        self.log_id = log_id
        self.permission_violations = list(permission_violations)
        self.field_violations = list(field_violations)
        self.retry_after = retry_after
        self.window_cap = window_cap
        self.attempts = attempts
        self.hint = _hint_for(code, self.permission_violations, self.field_violations)
        super().__init__(self._describe())

    @property
    def rate_limited(self) -> bool:
        return self.code == RATE_LIMITED_CODE or self.http_status == 429

    @property
    def token_invalid(self) -> bool:
        return self.code in TOKEN_INVALID_CODES

    @property
    def retryable(self) -> bool:
        """True for errors that may go away on their own (Feishu internal errors, gateways, rate limits)."""
        if self.rate_limited or self.code in RETRYABLE_CODES:
            return True
        return self.http_status >= 500 and self.code not in CODE_HINTS

    def after(self, attempts: int) -> FeishuVCAPIError:
        return FeishuVCAPIError(
            code=self.code,
            msg=self.msg,
            http_status=self.http_status,
            log_id=self.log_id,
            permission_violations=self.permission_violations,
            field_violations=self.field_violations,
            retry_after=self.retry_after,
            window_cap=self.window_cap,
            attempts=attempts,
        )

    def _describe(self) -> str:
        code = "no code" if self.code is None else f"code {self.code}"
        # Feishu's words as they came, less the blanks around them (a message may end in one): the parts after it
        # would stand apart ("invalid . Feishu rejected ...")
        text = f"Feishu API error ({code}, HTTP {self.http_status}): {self.msg.strip()}"
        if self.log_id and self.log_id.strip():
            text += f" [log_id {self.log_id.strip()}]"
        if self.attempts > 1:
            text += f" after {self.attempts} attempts"
        if self.hint:
            text += f". {self.hint}"
        return text


class FeishuVCTokenStoreError(FeishuVCError):
    """The store every process shares user tokens through (an Airflow Variable) could not be read or written.

    Retryable: the store is usually back within seconds (an API server restarting, a DB failover)."""

    @property
    def retryable(self) -> bool:
        return True


class FeishuVCTableError(FeishuVCError, ValueError):
    """An export file that cannot become a typed table: not an xlsx workbook, a cell that does not parse for its
    column (the message names the column, its header, the sheet row and the value), an unknown column under
    ``schema="freeze"``."""


class FeishuVCExportFailedError(FeishuVCError):
    """Feishu reports the export task as failed (status 2)."""

    def __init__(self, export_task_id: str, fail_msg: str) -> None:
        self.export_task_id = export_task_id
        self.fail_msg = fail_msg
        super().__init__(f"Feishu export {export_task_id} failed: {fail_msg or '(no fail_msg given)'}")


class FeishuVCDownloadError(FeishuVCError):
    """A download did not deliver the whole file; nothing was left at the destination."""


def _hint_for(
    code: int | None,
    permission_violations: Sequence[Mapping[str, Any]],
    field_violations: Sequence[Mapping[str, Any]],
) -> str:
    hint = CODE_HINTS.get(code, "") if code is not None else ""
    if permission_violations:
        scopes = ", ".join(str(v.get("subject") or v.get("type") or v) for v in permission_violations)
        hint += f" Missing: {scopes}."
    if field_violations:
        fields = ", ".join(f"{v.get('field', '?')} ({v.get('description', 'invalid')})" for v in field_violations)
        hint += f" Fields: {fields}."
    return hint.strip()
