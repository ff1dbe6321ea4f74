"""The engine of :class:`~airflow_provider_feishu_vc.operators.attendance.FeishuVCMeetingParticipantsOperator`: one
participant_list export per meeting, pipelined at Feishu's per-API limits, resumable from a manifest.

Three kinds of threads share one client (and so the process's per-API rate budgets, see ``client/budget.py``):
creators start exports, pollers ask about each export when it is likely ready, downloaders land each finished file
as a typed per-meeting part. Each kind spends its own API's budget, so all three run at Feishu's pace at once, and a
part is typed while later exports are still being built.

- **Polling**: an export's first status query waits for the build time learned from the exports done so far (the
  median of what they took, plus a margin); one still processing is asked again after a growing pause (half its
  age, within ``[min_poll, max_poll]``).
- **Resuming**: every export id is written to the manifest as soon as Feishu returns it, and every part is landed
  whole (written beside its name and moved, or one object PUT); a later try reads the manifest and the parts
  folder, and creates no export again whose id it has, nor lands a part again that is there.
- **Failures**: an export Feishu reports failed (status 2), or whose file is gone (121004 at download), is created
  anew, at most ``export_attempts`` times per meeting; a meeting Feishu refuses to export (121004 / 121005 at
  create) is listed as unexportable.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import shutil
import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError, FeishuVCError
from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_feishu_vc.client import protocol

#: Feishu's answers to a participant_list create for a meeting it cannot export: no such meeting, no permission.
UNEXPORTABLE_CODES = (121004, 121005)
#: 121004 at a status query or a download: the export or its file is gone (create it anew).
GONE_CODE = 121004
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
#: The API buckets calls are counted in.
CALL_KINDS = ("create", "status", "download", "token")


@dataclass(frozen=True)
class Meeting:
    """One meeting of the meeting list: its numbers, topic and times (unix seconds)."""

    meeting_no: str
    meeting_id: str
    topic: str | None
    start: int
    end: int


@dataclass
class MeetingExport:
    """Where one meeting's participant export stands."""

    meeting: Meeting
    export_task_id: str | None = None
    stage: str = "pending"  # pending -> created -> ready -> landed, or unexportable / failed
    created_at: float = 0.0
    last_processing_age: float = 0.0
    polls: int = 0
    creates: int = 0
    file_token: str | None = None
    rows: int = 0
    problem: str | None = None
    code: int | None = None


class CountingClient(FeishuVCClient):
    """The blocking client, counting every HTTP request it sends by API (refused ones included)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()
        self._counting = threading.Lock()

    def _send(self, request: protocol.HttpRequest) -> protocol.HttpResponse:
        path = request.path
        if "/auth/" in path or "/authen/" in path:
            kind = "token"
        elif request.method == "POST":
            kind = "create"
        elif path.endswith("/download"):
            kind = "download"
        else:
            kind = "status"
        with self._counting:
            self.calls[kind] += 1
        return super()._send(request)

    def spent(self) -> dict[str, int]:
        """Requests sent so far, by API (every one of :data:`CALL_KINDS`)."""
        with self._counting:
            return {kind: self.calls.get(kind, 0) for kind in CALL_KINDS}


class Manifest:
    """The run's manifest: the request it is for, the meetings, and each meeting's export id, kept as one JSON
    object in the parts folder and rewritten whole (never half-written) after each change."""

    def __init__(self, folder: ObjectStoragePath, request: str) -> None:
        self.folder = folder
        self.path = folder / MANIFEST_NAME
        self.request = request
        self.meeting_list_export: str | None = None
        self.meetings: list[Meeting] | None = None
        self.exports: dict[str, str] = {}
        #: How many exports each meeting has had, over every try and deferral (bounds ``export_attempts``).
        self.attempts: dict[str, int] = {}
        #: Calls spent by API (the run's so far, see ``count_calls``), and seconds before the task deferred (kept
        #: here: a deferral's kwargs may be lost).
        self.spent: dict[str, Any] = {}
        #: Counts the calls spent so far, the earlier tries' included: each save keeps the count as
        #: ``spent["calls"]``, so that a retry after a failed or lost try reports the whole run's calls.
        self.count_calls: Callable[[], dict[str, int]] | None = None
        self._lock = threading.Lock()
        #: The meetings last encoded, and their JSON: each save after an export reuses it (re-encoding every
        #: meeting per save made a run's manifest cost grow with N^2).
        self._encoded: tuple[tuple[Meeting, ...], str] | None = None

    def load(self) -> bool:
        """Read what an earlier try kept for the same request; False (and nothing kept) when there is none."""
        if not self.path.exists():
            return False
        try:
            kept = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(kept, dict) or kept.get("version") != MANIFEST_VERSION or kept.get("request") != self.request:
            return False
        self.meeting_list_export = kept.get("meeting_list_export")
        meetings = kept.get("meetings")
        self.meetings = None if meetings is None else [Meeting(**meeting) for meeting in meetings]
        self.exports = {str(k): str(v) for k, v in (kept.get("exports") or {}).items()}
        self.attempts = {str(k): int(v) for k, v in (kept.get("attempts") or {}).items()}
        self.spent = dict(kept.get("spent") or {})
        return True

    def earlier_calls(self) -> dict[str, int]:
        """The calls the tries before this one spent, by API, as their last save kept them."""
        return {str(kind): int(count) for kind, count in (self.spent.get("calls") or {}).items()}

    def save(self) -> None:
        with self._lock:
            spent = dict(self.spent)
            if self.count_calls is not None:  # counted under the lock: no saved export's create is left out
                spent["calls"] = self.count_calls()
            document = {
                "version": MANIFEST_VERSION,
                "request": self.request,
                "meeting_list_export": self.meeting_list_export,
                "exports": dict(self.exports),
                "attempts": dict(self.attempts),
                "spent": spent,
            }
            text = json.dumps(document, ensure_ascii=False)
            text = f'{text[:-1]}, "meetings": {self._meetings_json()}}}'  # the object, one member more
            write_whole(self.path, text.encode())

    def _meetings_json(self) -> str:
        """The meetings as JSON, encoded again only when the list is another (or holds other meetings)."""
        if self.meetings is None:
            return "null"
        meetings = tuple(self.meetings)
        encoded = self._encoded
        same = encoded is not None and len(encoded[0]) == len(meetings)
        if encoded is None or not same or any(a is not b for a, b in zip(encoded[0], meetings, strict=True)):
            encoded = self._encoded = (meetings, json.dumps([asdict(m) for m in meetings], ensure_ascii=False))
        return encoded[1]

    def keep_export(self, meeting_no: str, export_task_id: str | None) -> None:
        with self._lock:
            if export_task_id is None:
                self.exports.pop(meeting_no, None)
            else:
                self.exports[meeting_no] = export_task_id
                self.attempts[meeting_no] = self.attempts.get(meeting_no, 0) + 1
        self.save()


def added_calls(spent: dict[str, int], earlier: dict[str, int]) -> dict[str, int]:
    """Calls by API (every one of :data:`CALL_KINDS`): this try's and the earlier tries' together."""
    return {kind: spent.get(kind, 0) + earlier.get(kind, 0) for kind in CALL_KINDS}


def is_local(path: ObjectStoragePath) -> bool:
    protocols = path.fs.protocol if isinstance(path.fs.protocol, (tuple, list)) else (path.fs.protocol,)
    return bool({"file", "local"} & set(protocols))


def write_whole(path: ObjectStoragePath, data: bytes) -> None:
    """Write ``data`` so that ``path`` appears whole or not at all: locally beside it and renamed, on an object
    store as one PUT (which is atomic)."""
    if is_local(path):
        os.makedirs(os.path.dirname(path.path), exist_ok=True)
        temporary = f"{path.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path.path)
    else:
        path.write_bytes(data)


def copy_whole(local_file: str, path: ObjectStoragePath) -> None:
    """Put a local file at ``path``, whole or not at all (as :func:`write_whole`)."""
    if is_local(path):
        os.makedirs(os.path.dirname(path.path), exist_ok=True)
        temporary = f"{path.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        shutil.copyfile(local_file, temporary)
        os.replace(temporary, path.path)
    else:
        with open(local_file, "rb") as handle:
            path.write_bytes(handle.read())


@dataclass
class PollTiming:
    """When to ask about an export: after the build time learned so far, then after growing pauses."""

    first_poll: float
    min_poll: float
    max_poll: float
    learned: list[float] = field(default_factory=list)

    def first(self) -> float:
        """Seconds after its create to ask about a new export for the first time."""
        if not self.learned:
            return self.first_poll
        return max(self.min_poll, statistics.median(self.learned[-64:]) * 1.1)

    def again(self, age: float) -> float:
        return min(self.max_poll, max(self.min_poll, age / 2))

    def done(self, export: MeetingExport, age: float) -> None:
        """Learn from a finished export: it took between its last 'processing' answer and now."""
        self.learned.append((export.last_processing_age + age) / 2 if export.polls > 1 else age)


@dataclass
class RunOutcome:
    """What the exports came to: each meeting's export, and what the run spent."""

    exports: list[MeetingExport]
    calls: dict[str, int]
    seconds: float


class ParticipantsPipeline:
    """Export, wait for and land the participant list of every meeting, with creates, status queries and downloads
    each at their own API's pace at once."""

    def __init__(
        self,
        client: CountingClient,
        manifest: Manifest,
        landed_parts: set[str],
        land_part: Callable[[MeetingExport, str], int],
        *,
        user_id_type: str | None,
        timing: PollTiming,
        export_attempts: int,
        progress_every: float,
        log: Any,
        workers: int = 2,
        poll: bool = True,
        done: dict[str, str] | None = None,
        failed: dict[str, str] | None = None,
        earlier_calls: dict[str, int] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.client = client
        self.manifest = manifest
        self.land_part = land_part
        self.user_id_type = user_id_type
        self.timing = timing
        self.export_attempts = export_attempts
        self.progress_every = progress_every
        self.log = log
        self.workers = workers
        #: False: only create (a trigger waits for the exports, see ``triggers/attendance.py``).
        self.poll = poll
        self.earlier_calls = earlier_calls or {}
        manifest.count_calls = self.calls
        #: ``time.monotonic()`` after which the run gives up (the try fails; a retry resumes).
        self.deadline = deadline
        done, failed = done or {}, failed or {}
        assert manifest.meetings is not None
        self.exports = [MeetingExport(meeting) for meeting in manifest.meetings]
        self._changed = threading.Condition()
        self._to_create: deque[MeetingExport] = deque()
        self._to_poll: list[tuple[float, int, MeetingExport]] = []
        self._to_download: deque[MeetingExport] = deque()
        self._order = itertools.count()
        self._error: BaseException | None = None
        self._stop = False
        self._started = time.monotonic()
        for export in self.exports:
            meeting_no = export.meeting.meeting_no
            if meeting_no in landed_parts:
                export.stage = "landed"
            elif manifest.exports.get(meeting_no) in done:  # the trigger saw it done
                export.export_task_id, export.stage = manifest.exports[meeting_no], "ready"
                export.file_token = done[manifest.exports[meeting_no]]
                self._to_download.append(export)
            elif manifest.exports.get(meeting_no) in failed:  # the trigger saw it fail: create it anew
                export.creates = manifest.attempts.get(meeting_no, 1)
                self._again(export, failed[manifest.exports[meeting_no]])
            elif meeting_no in manifest.exports:  # created by an earlier try: ask about it now
                export.export_task_id, export.stage = manifest.exports[meeting_no], "created"
                export.created_at = self._started - timing.first()
                if poll:
                    self._to_poll.append((self._started, next(self._order), export))
            else:
                self._to_create.append(export)
            export.creates = max(export.creates, manifest.attempts.get(meeting_no, 0))
        heapq.heapify(self._to_poll)

    # -- running ---------------------------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        works = (self._create_one, self._poll_one, self._download_one) if self.poll else (self._create_one,)
        threads = [
            threading.Thread(
                target=self._guarded, args=(work,), name=f"feishu-vc-{work.__name__}-{number}", daemon=True
            )
            for work in works
            # downloads overlap their HTTP with the typing of the file before (one sheet reader serves them all)
            for number in range(self.workers * (2 if work == self._download_one else 1))
        ]
        for thread in threads:
            thread.start()
        next_report = time.monotonic() + self.progress_every
        try:
            while True:
                with self._changed:
                    if self._error is not None or self._finished():
                        break
                    self._changed.wait(timeout=max(0.0, min(1.0, next_report - time.monotonic())))
                    due = time.monotonic() >= next_report
                    if due:
                        self.report()
                        next_report = time.monotonic() + self.progress_every
                    if self.deadline is not None and time.monotonic() > self.deadline:
                        self._error = FeishuVCError("the participant exports were not all landed before the timeout")
                if due:  # outside the lock: the threads go on while the manifest is written
                    self._keep_calls()
        finally:
            with self._changed:
                self._stop = True
                self._changed.notify_all()
            for thread in threads:
                thread.join()
        if self._error is not None:
            self._keep_calls()  # the retry counts this try's calls too
            raise self._error
        self.report()
        return RunOutcome(self.exports, self.calls(), time.monotonic() - self._started)

    def _finished(self) -> bool:
        ends = ("landed", "unexportable", "failed") if self.poll else ("created", "landed", "unexportable", "failed")
        return all(export.stage in ends for export in self.exports)

    def waiting(self) -> dict[str, float]:
        """The exports created and not yet done, with their create times (wall clock): what a trigger waits for."""
        offset = time.time() - time.monotonic()
        return {
            export.export_task_id: export.created_at + offset
            for export in self.exports
            if export.stage == "created" and export.export_task_id is not None
        }

    def _guarded(self, work: Callable[[], bool]) -> None:
        """Run ``work`` until the run stops; the first error stops the run and is raised by :meth:`run`."""
        try:
            while work():
                pass
        except BaseException as error:
            with self._changed:
                if self._error is None:
                    self._error = error
                self._changed.notify_all()

    def _take(self, ready: Callable[[], MeetingExport | None]) -> MeetingExport | None:
        """Wait until ``ready`` hands out a piece of work; None when the run stops."""
        with self._changed:
            while not self._stop:
                work = ready()
                if work is not None:
                    return work
                self._changed.wait(timeout=self._next_poll_wait())
            return None

    def _next_poll_wait(self) -> float:
        if not self._to_poll:
            return 1.0
        return max(0.0, min(1.0, self._to_poll[0][0] - time.monotonic()))

    # -- creates ---------------------------------------------------------------------------------------------

    def _create_one(self) -> bool:
        export = self._take(lambda: self._to_create.popleft() if self._to_create else None)
        if export is None:
            return False
        meeting = export.meeting
        export.creates += 1
        try:
            export_task_id = self.client.create_export(
                "participant_list",
                user_id_type=self.user_id_type,
                meeting_no=meeting.meeting_no,
                meeting_start_time=meeting.start,
                meeting_end_time=meeting.end,
            )
        except FeishuVCAPIError as error:
            if error.code not in UNEXPORTABLE_CODES:
                raise
            self.log.warning("Meeting %s cannot be exported: %s", meeting.meeting_no, error)
            with self._changed:
                export.stage, export.problem, export.code = "unexportable", str(error), error.code
                self._changed.notify_all()
            return True
        self.manifest.keep_export(meeting.meeting_no, export_task_id)
        with self._changed:
            export.export_task_id, export.stage, export.polls = export_task_id, "created", 0
            export.created_at = time.monotonic()
            if self.poll:
                heapq.heappush(self._to_poll, (export.created_at + self.timing.first(), next(self._order), export))
            self._changed.notify_all()
        return True

    def _create_anew(self, export: MeetingExport, why: str) -> None:
        """The export failed or its file is gone: create another, unless the meeting had its attempts."""
        self.manifest.keep_export(export.meeting.meeting_no, None)
        with self._changed:
            self._again(export, why)
            self._changed.notify_all()

    def _again(self, export: MeetingExport, why: str) -> None:
        if export.creates >= self.export_attempts:
            export.stage, export.problem = "failed", f"{why} (after {export.creates} exports)"
        else:
            self.log.warning("Meeting %s: %s; exporting it again", export.meeting.meeting_no, why)
            export.stage, export.export_task_id = "pending", None
            self._to_create.append(export)

    # -- status queries --------------------------------------------------------------------------------------

    def _due(self) -> MeetingExport | None:
        if self._to_poll and self._to_poll[0][0] <= time.monotonic():
            return heapq.heappop(self._to_poll)[2]
        return None

    def _poll_one(self) -> bool:
        from airflow_provider_feishu_vc.client.api import ExportStatus

        export = self._take(self._due)
        if export is None:
            return False
        assert export.export_task_id is not None
        export.polls += 1
        try:
            task = self.client.get_export(export.export_task_id)
        except FeishuVCError as error:
            if isinstance(error, FeishuVCAPIError) and error.code == GONE_CODE:
                self._create_anew(export, f"export {export.export_task_id} is gone ({error})")
                return True
            if not error.retryable:
                raise
            task = None  # Feishu could not be asked now: ask again later
        age = time.monotonic() - export.created_at
        with self._changed:
            if task is not None and task.status is ExportStatus.DONE:
                self.timing.done(export, age)
                export.stage, export.file_token = "ready", task.file_token
                self._to_download.append(export)
            elif task is not None and task.status is ExportStatus.FAILED:
                pass
            else:
                export.last_processing_age = age
                heapq.heappush(self._to_poll, (time.monotonic() + self.timing.again(age), next(self._order), export))
            self._changed.notify_all()
        if task is not None and task.status is ExportStatus.FAILED:
            self._create_anew(export, f"export {export.export_task_id} failed: {task.fail_msg or 'no reason given'}")
        return True

    # -- downloads -------------------------------------------------------------------------------------------

    def _download_one(self) -> bool:
        export = self._take(lambda: self._to_download.popleft() if self._to_download else None)
        if export is None:
            return False
        assert export.file_token is not None
        try:
            rows = self.land_part(export, export.file_token)
        except FeishuVCAPIError as error:
            if error.code != GONE_CODE:
                raise
            self._create_anew(export, f"the file of export {export.export_task_id} is gone ({error})")
            return True
        with self._changed:
            export.stage, export.rows = "landed", rows
            self._changed.notify_all()
        return True

    # -- progress --------------------------------------------------------------------------------------------

    def calls(self) -> dict[str, int]:
        return added_calls(self.client.spent(), self.earlier_calls)

    def _keep_calls(self) -> None:
        """Save the manifest with the calls spent so far (a try killed outright misses at most the calls since)."""
        try:
            self.manifest.save()
        except Exception as error:  # the count is a report: never the reason a try fails
            self.log.warning("Could not keep the calls spent in %s: %s", self.manifest.path, error)

    def report(self) -> None:
        """Log created / ready / landed of N, the calls spent, and when the run should end at its current pace."""
        stages = Counter(export.stage for export in self.exports)
        total = len(self.exports)
        ready = stages["ready"] + stages["landed"]
        created = ready + stages["created"]
        done = stages["landed"] + stages["unexportable"] + stages["failed"]
        elapsed = time.monotonic() - self._started
        calls = self.calls()
        if done >= total:
            expected = "now"
        elif done:
            left = elapsed / done * (total - done)
            expected = time.strftime("%H:%M:%S", time.localtime(time.time() + left)) + f" (in {left:.0f} s)"
        else:
            expected = "unknown yet"
        self.log.info(
            "Participants: created %d / ready %d / landed %d of %d meetings (%d cannot be exported, %d failed); "
            "%d calls spent (%s); expected finish: %s",
            created, ready, stages["landed"], total, stages["unexportable"], stages["failed"], sum(calls.values()),
            ", ".join(f"{kind} {count}" for kind, count in calls.items()), expected,
        )  # fmt: skip
