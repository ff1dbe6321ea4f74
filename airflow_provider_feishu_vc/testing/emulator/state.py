"""The emulated tenant's state: issued tokens, exports and their files, rate windows and the request log.

No HTTP here: the app (:mod:`.app`) turns requests into calls on :class:`TenantState` and its answers or
:class:`~.rules.FeishuError` into responses.
"""

from __future__ import annotations

import collections
import itertools
import random
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_provider_feishu_vc.testing.emulator import data
from airflow_provider_feishu_vc.testing.emulator.options import EmulatorOptions
from airflow_provider_feishu_vc.testing.emulator.rules import (
    REFRESH_TOKEN_EXPIRED,
    REFRESH_TOKEN_INVALID,
    REFRESH_TOKEN_USED,
    FeishuError,
    OAuthError,
    RateLimited,
    check_export,
    param_error,
)
from airflow_provider_feishu_vc.testing.emulator.workbook import write_stored_workbook, write_workbook

TOKEN_PATH_PREFIXES = ("/open-apis/auth/", "/open-apis/authen/")
EXPORTS_PREFIX = "/open-apis/vc/v1/exports/"
FIRST_TASK_ID = 7_111_325_589_855_797_267
DAY = 86_400


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
class RefreshToken:
    expires_at: float
    spent: bool = False


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
    polls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class TenantState:
    """One Feishu tenant with one app, as the emulator's options describe it."""

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self._files = Path(tempfile.mkdtemp(prefix="feishu-vc-emulator-"))
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every token, export, request and rate window; restore the test knobs."""
        with self._lock:
            self.granted_scopes = {"vc:export"}
            self.admin_role = True
            self.download_filename: str | None = None
            self.fail_next: list[str] = []
            self.requests: list[RequestRecord] = []
            self.tokens: dict[str, IssuedToken] = {}
            self._latest: dict[str, IssuedToken] = {}
            # Refresh tokens by value: when each expires (monotonic), and whether it was spent (single use).
            self._refresh_tokens: dict[str, RefreshToken] = {}
            if self.options.refresh_token:
                self._refresh_tokens[self.options.refresh_token] = RefreshToken(self._refresh_expiry())
            self._codes_spent: set[str] = set()
            self.exports: dict[str, ExportJob] = {}
            self._by_file_token: dict[str, ExportJob] = {}
            self._windows: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
            self._task_ids = itertools.count(FIRST_TASK_ID)
            #: Every meeting a meeting_list export listed, by meeting number: what participant_list exports find.
            self.meetings: dict[str, data.ListedMeeting] = {}
        for leftover in self._files.iterdir():
            leftover.unlink()

    def close(self) -> None:
        shutil.rmtree(self._files, ignore_errors=True)

    def record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    # -- tokens --------------------------------------------------------------------------------------------

    def issue(self, kind: str, owner: str) -> IssuedToken:
        """Same token while more than the re-issue window remains; otherwise a new one (the old stays valid)."""
        window = min(1800.0, self.options.token_ttl / 4)
        with self._lock:
            latest = self._latest.get(owner)
            if latest is not None and latest.value in self.tokens and latest.remaining() >= window:
                return latest
            token = self._new_token(kind)
            self._latest[owner] = token
            return token

    def _new_token(self, kind: str) -> IssuedToken:
        prefix = {"tenant": "t-", "app": "a-", "user": "u-"}[kind]
        token = IssuedToken(prefix + secrets.token_urlsafe(24), kind, time.monotonic() + self.options.token_ttl)
        self.tokens[token.value] = token
        return token

    def check_app(self, body: dict[str, Any], id_key: str = "app_id", secret_key: str = "app_secret") -> None:
        if body.get(id_key) != self.options.app_id:
            raise FeishuError(200, 10003, "invalid param: app_id")
        if body.get(secret_key) != self.options.app_secret:
            raise FeishuError(200, 10015, "app secret invalid")  # 10015 in Feishu's generic list: wrong secret

    def valid_token(self, value: str, kind: str) -> bool:
        with self._lock:
            token = self.tokens.get(value)
        return token is not None and token.kind == kind and token.remaining() > 0

    def refresh_user_token(self, refresh_token: Any) -> tuple[IssuedToken, str]:
        """Spend ``refresh_token`` (single use) for a new user token and the refresh token that succeeds it."""
        with self._lock:
            known = self._refresh_tokens.get(str(refresh_token))
            if known is None:
                raise OAuthError(*REFRESH_TOKEN_INVALID)
            if known.spent:
                raise OAuthError(*REFRESH_TOKEN_USED)
            if known.expires_at <= time.monotonic():
                raise OAuthError(*REFRESH_TOKEN_EXPIRED)
            known.spent = True
            return self._issue_user_tokens()

    def exchange_authorization_code(self, code: Any) -> tuple[IssuedToken, str]:
        """The first user tokens, for the code a user's login handed out (once)."""
        with self._lock:
            if code != self.options.authorization_code or code in self._codes_spent:
                # 20003 for a bad code is not in shared/feishu-vc-api.md; the OAuth shape is.
                raise OAuthError(400, 20003, "invalid_grant", "The authorization code is invalid or has been used")
            self._codes_spent.add(str(code))
            return self._issue_user_tokens()

    def _issue_user_tokens(self) -> tuple[IssuedToken, str]:
        successor = "ur-" + secrets.token_urlsafe(24)
        self._refresh_tokens[successor] = RefreshToken(self._refresh_expiry())
        return self._new_token("user"), successor

    def _refresh_expiry(self) -> float:
        return time.monotonic() + self.options.refresh_token_ttl

    def refresh_token_spent(self, refresh_token: str) -> bool:
        """Whether ``refresh_token`` was used already (tests check that no process ever sends a spent one)."""
        with self._lock:
            known = self._refresh_tokens.get(refresh_token)
            return known is not None and known.spent

    def authenticate(self, authorization: str) -> None:
        """Accept a live tenant or user token with the scope and admin role exports need."""
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            raise FeishuError(400, 99991661, "Missing access token for authorization")
        value = authorization[7:].strip()
        with self._lock:
            token = self.tokens.get(value)
        if token is None or token.remaining() <= 0 or token.kind == "app":
            if value.startswith("u-"):
                raise FeishuError(400, 99991677, "user access token expired or invalid")
            raise FeishuError(400, 99991663, "Invalid access token for authorization")
        if "vc:export" not in self.granted_scopes:
            raise FeishuError(
                400,
                99991672,
                "Access denied. One of the following scopes is required: [vc:export]",
                permission_violations=[{"type": "action_scope_required", "subject": "vc:export"}],
            )
        if not self.admin_role:
            raise FeishuError(403, 121005, "no permission")

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()
            self._latest.clear()

    # -- rate limits ---------------------------------------------------------------------------------------

    def spend_rate(self, endpoint: str) -> None:
        """Count a request against ``endpoint``'s window; raise ``RateLimited`` when the window is full."""
        now = time.monotonic()
        with self._lock:
            window = self._windows[endpoint]
            while window and window[0] <= now - self.options.rate_window:
                window.popleft()
            if len(window) >= self.options.rate_limit:
                reset = window[0] + self.options.rate_window - now
            else:
                window.append(now)
                return
        raise RateLimited(reset)

    # -- exports -------------------------------------------------------------------------------------------

    def create_export(self, kind: str, body: dict[str, Any]) -> ExportJob:
        check_export(kind, body)
        if kind == "meeting_list":
            self._list_meetings(body)
        elif kind == "participant_list":
            self._check_meeting(body)
        seconds = self.options.export_seconds(random.uniform)
        with self._lock:
            task_id = str(next(self._task_ids))
            job = ExportJob(
                task_id=task_id,
                kind=kind,
                body=dict(body),
                ready_at=time.monotonic() + seconds,
                fail_msg=self.fail_next.pop(0) if self.fail_next else None,
                file_token=secrets.token_urlsafe(18).replace("-", "+").replace("_", "/") + "==",
            )
            self.exports[task_id] = job
            self._by_file_token[job.file_token] = job
        return job

    def _list_meetings(self, body: dict[str, Any]) -> None:
        """Remember the meetings this meeting_list export holds (a filtered list names no new meeting)."""
        if body.get("meeting_no") or body.get("user_id") or body.get("room_id") or body.get("meeting_type"):
            return
        every = self.options.meeting_every
        count = self.options.rows if self.options.rows is not None else data.row_count("meeting_list", body, every)
        listed = [data.listed_meeting(index, int(body["start_time"]), body, every) for index in range(count)]
        with self._lock:
            self.meetings.update((meeting.meeting_no, meeting) for meeting in listed)

    def failing_meetings(self) -> dict[str, int]:
        """``failing_meetings`` as {meeting_no: code}; a code other than 121004 / 121005 is refused."""
        failing: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in self.options.failing_meetings.split(","))):
            meeting_no, _, code = item.partition(":")
            if code not in ("121004", "121005"):
                raise ValueError(f"failing_meetings: {item!r} is not 'meeting_no:121004' or 'meeting_no:121005'")
            failing[meeting_no.strip()] = int(code)
        return failing

    def _check_meeting(self, body: dict[str, Any]) -> None:
        """Refuse a participant_list export of a meeting the tenant does not have (121004) or may not read (121005):
        with ``known_meetings_only``, one no meeting list named, or at other times than it had."""
        meeting_no = str(body["meeting_no"])
        code = self.failing_meetings().get(meeting_no)
        if code == 121005:
            raise FeishuError(403, 121005, "no permission")
        if code == 121004:
            raise FeishuError(404, 121004, "data not exist")
        if not self.options.known_meetings_only:
            return
        with self._lock:
            meeting = self.meetings.get(meeting_no)
        begins, ends = int(body["meeting_start_time"]), int(body["meeting_end_time"])
        if meeting is None or begins > meeting.start or ends < meeting.end:
            raise FeishuError(404, 121004, "data not exist")

    def status(self, task_id: str, origin: str) -> dict[str, Any]:
        if not task_id.isdigit():
            raise param_error("task_id", "must be numeric")
        with self._lock:
            job = self.exports.get(task_id)
        if job is None:
            raise FeishuError(404, 121004, "data not exist")
        job.polls += 1
        if self.options.processing_polls is not None and job.polls > self.options.processing_polls:
            job.ready_at = min(job.ready_at, time.monotonic())
        # Feishu's answer carries all four fields in every state; those that do not apply are empty.
        answer = {"status": 1, "url": "", "file_token": "", "fail_msg": ""}
        if time.monotonic() < job.ready_at:
            return answer
        if job.fail_msg is not None:
            return {**answer, "status": 2, "fail_msg": job.fail_msg}
        return {**answer, "status": 3, "url": f"{origin}/cdn/{quote(job.file_token)}", "file_token": job.file_token}

    def finished_export(self, file_token: str) -> ExportJob:
        with self._lock:
            job = self._by_file_token.get(file_token)
        if job is None or time.monotonic() < job.ready_at or job.fail_msg is not None:
            raise FeishuError(404, 121004, "data not exist")
        return job

    def workbook(self, job: ExportJob) -> Path:
        """The export's file, written on first download (blocking: call it from a thread)."""
        with job.lock:
            if job.path is not None:
                return job.path
            count = self.options.rows
            listed = self.meetings.get(str(job.body.get("meeting_no"))) if job.kind == "participant_list" else None
            if count is None and listed is not None and not (job.body.get("user_id") or job.body.get("room_id")):
                count = listed.participants
            if count is None:
                count = data.row_count(job.kind, job.body, self.options.meeting_every)
            path = self._files / f"{job.task_id}.xlsx"
            style = self.options.header_style
            header = data.headers(job.kind, style)
            rows = data.rows(job.kind, job.body, count, self.options.meeting_every, style)
            sheet = data.SHEET_NAMES[job.kind]
            if self.options.stored_workbooks:
                job.rows = write_stored_workbook(path, sheet, header, rows, count)
            else:
                job.rows = write_workbook(path, sheet, header, rows)
            job.path = path
            return path

    def finish_now(self, export_task_id: str | None = None) -> None:
        """Make every pending export (or only ``export_task_id``) done now."""
        with self._lock:
            for job in self.exports.values():
                if export_task_id is None or job.task_id == export_task_id:
                    job.ready_at = min(job.ready_at, time.monotonic())

    # -- what tests read -----------------------------------------------------------------------------------

    def count(self, path: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for record in self.requests
                if (path is None or record.path == path) and (status is None or record.status == status)
            )

    def export_ready_times(self) -> dict[str, float]:
        """Wall-clock epoch seconds at which each export is (or was) done."""
        offset = time.time() - time.monotonic()
        with self._lock:
            return {task_id: job.ready_at + offset for task_id, job in self.exports.items()}

    def export_requests(self) -> dict[str, dict[str, Any]]:
        """What each export was asked for: its kind and request body, by export id."""
        with self._lock:
            return {task_id: {"kind": job.kind, "body": dict(job.body)} for task_id, job in self.exports.items()}

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
                # "<status> <path>" of every answer of 400 or more: which endpoint refused what
                "errors_by_path": dict(
                    collections.Counter(f"{r.status} {r.path}" for r in self.requests if (r.status or 0) >= 400)
                ),
                "token_requests": sum(token_agents.values()),
                "token_requests_by_user_agent": dict(token_agents),
                "exports": len(self.exports),
                "issued_tokens": list(self.tokens),  # for leak checks of processes that cannot see this object
                # (wall-clock time, HTTP status) of every status query: how much of its limit was used, and when
                "status_queries": [[r.at, r.status] for r in self.requests if _is_status_query(r)],
                # who was refused with 429: workers and triggerers tell themselves apart in the User-Agent
                "refused_by_user_agent": dict(
                    collections.Counter(record.user_agent for record in self.requests if record.status == 429)
                ),
            }


def _is_status_query(record: RequestRecord) -> bool:
    name = record.path.removeprefix(EXPORTS_PREFIX)
    return record.method == "GET" and record.path.startswith(EXPORTS_PREFIX) and name.isdigit()
