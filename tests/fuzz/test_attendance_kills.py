"""The attendance task killed (``kill -9``) at generated points, then retried to success: the resume promise of
FeishuVCMeetingParticipantsOperator over every kind of point, not one chosen by hand.

Each try runs in its own process, forked from a server process that imported the provider once (``forkserver``:
a try starts in milliseconds, with no thread of the test process copied into it). A drawn point in the try sends
the process SIGKILL itself: no ``finally``, no ``except BaseException`` and no other thread gets to run after it,
as when a worker is lost. The emulator (in the test process) serves drawn faults: an export Feishu reports failed
(status 2), a file that is gone for good at its download, an export forgotten at a status query (121004), a
meeting it refuses (121005; the task then allows partial tables). The task polls, or defers (one trigger waits for
every export; here run in the same process, which may be killed once it fired). The task's state (Airflow 3.3's
store, which survives tries) is a JSON file the tries share.

After the retries: the table is the union of every meeting's participants; each export (the meeting list's and
every meeting's) was created once, plus one for each that failed, whose file went, or whose create Feishu had
answered when a kill came before the manifest kept it (Feishu has no idempotency key: that create is lost with
the process); no part that had landed was downloaded again, nor the meeting list once the manifest held its
meetings; a kill left no table or a whole one at the destination; success leaves the table alone in its folder.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from airflow_provider_feishu_vc.testing.emulator import data
from tests.fuzz.checks import boundary
from tests.task_state import FileTaskState

BOUNDARY = "attendance: kill -9 and retry"
#: 2026-11-23 00:00 in Shanghai; the emulator lists one meeting an hour from the range's start.
DAY_START = 1_795_363_200
#: Where a try can be killed; each is counted in its own kind within the try (the k-th of them).
POINTS = (
    "list_create_answered",  # Feishu answered the meeting list's create; the manifest does not hold it yet
    "list_recorded",  # the manifest holds the meeting list's export id
    "meetings_recorded",  # the manifest holds the meetings
    "create_answered",  # Feishu answered the k-th participant create; the manifest does not hold it yet
    "create_recorded",  # the manifest holds the k-th participant export id
    "status_answered",  # the k-th status answer came (the meeting list's first)
    "mid_download",  # the k-th file is half downloaded (the meeting list's first)
    "part_landing",  # the k-th part is written beside its name, not yet moved into place
    "part_landed",  # the k-th part is in place
    "table_landing",  # the table is written beside its name and the task's state told, not yet moved into place
    "table_landed",  # the table is in place; the parts folder is not removed yet
    "unexported_landing",  # the table is in place; the list of the meetings Feishu refused is not (allow_partial)
    "returned",  # the parts folder is removed; the task did not return yet
    "trigger_fired",  # deferrable: the trigger saw every export done or failed; the task did not resume yet
)
#: Points a try passes once (the others once per export or per meeting).
ONCE = ("list_create_answered", "list_recorded", "meetings_recorded", "table_landing", "table_landed",
        "unexported_landing", "returned", "trigger_fired")  # fmt: skip
#: Points after which the table is at its destination.
TABLE_THERE = ("table_landed", "unexported_landing", "returned")
CREATE_WINDOWS = ("list_create_answered", "create_answered")
#: Creator threads of the pipeline: at most this many creates can be answered and not kept at one kill.
CREATORS = 2
TRY_SECONDS = 120
#: Examples of the deep profile (make fuzz): 4-14 s each on a 2-core machine (quiet or loaded), so 8-23 minutes.
DEEP_EXAMPLES = 100


@dataclass(frozen=True)
class Death:
    point: str
    k: int


@dataclass
class Schedule:
    meetings: int
    deaths: list[Death]
    #: Creates (1 = the first of the run, of any export) that Feishu reports failed.
    failed_creates: set[int] = field(default_factory=set)
    #: Downloads (1 = the first of the run) whose file is gone from then on.
    gone_downloads: set[int] = field(default_factory=set)
    #: Status queries (1 = the first of the run) whose export Feishu has forgotten from then on.
    gone_statuses: set[int] = field(default_factory=set)
    #: A meeting (its index) Feishu refuses to export (121005): the task then allows partial tables.
    refused: int | None = None
    #: One trigger waits for the exports (the try resumes after it fired, in the same process here).
    deferrable: bool = False


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    meetings = draw(st.integers(1, 4))
    deaths = [Death(point, 1 if point in ONCE else draw(st.integers(1, meetings + 1)))
              for point in draw(st.lists(st.sampled_from(POINTS), min_size=1, max_size=2))]  # fmt: skip
    exports = meetings + 1
    return Schedule(
        meetings, deaths, draw(st.sets(st.integers(1, exports + 2), max_size=2)),
        draw(st.sets(st.integers(1, exports + 2), max_size=1)), draw(st.sets(st.integers(1, exports + 2), max_size=1)),
        draw(st.none() | st.integers(0, meetings - 1)), draw(st.booleans()),
    )  # fmt: skip


# -- one try, in its own process ---------------------------------------------------------------------------


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(death: Death | None, table: str) -> None:
    """Patch this process so that it kills itself at ``death`` (its k-th point of that kind); ``table``: the path
    the table lands at."""
    import airflow_provider_feishu_vc.hooks.writing as writing
    import airflow_provider_feishu_vc.operators.attendance as attendance
    import airflow_provider_feishu_vc.operators.attendance_run as run
    from airflow_provider_feishu_vc.hooks.landing import RenameLanding

    counts: dict[str, int] = {}
    counting = threading.Lock()

    def at(point: str) -> bool:
        """Count one ``point``; True when it is the death's."""
        with counting:
            counts[point] = counts.get(point, 0) + 1
            return death is not None and death.point == point and counts[point] == death.k

    def after(owner: Any, name: str, point: Callable[..., str | None]) -> None:
        """Die right after ``owner.name`` returns when ``point(*args)`` names the death's point."""
        original = getattr(owner, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            named = point(*args, **kwargs)
            if named and at(named):
                _die()
            return result

        setattr(owner, name, wrapped)

    after(run.CountingClient, "create_export",
          lambda self, kind, **_: "list_create_answered" if kind == "meeting_list" else "create_answered")  # fmt: skip
    after(run.CountingClient, "get_export", lambda *_, **__: "status_answered")
    after(run.Manifest, "keep_export", lambda self, meeting_no, export_task_id: export_task_id and "create_recorded")

    saved: set[str] = set()

    def manifest_point(self: run.Manifest) -> str | None:
        for point, holds in (("meetings_recorded", self.meetings is not None),
                             ("list_recorded", self.meeting_list_export is not None)):  # fmt: skip
            if holds and point not in saved:
                saved.add(point)
                return point
        return None

    after(run.Manifest, "save", manifest_point)

    write_chunks = writing.write_chunks

    def half_then_die(handle: Any, chunks: Iterator[bytes], *args: Any, **kwargs: Any) -> int:
        def first_half() -> Iterator[bytes]:
            dies = at("mid_download")
            for chunk in chunks:
                if dies:
                    yield chunk[: len(chunk) // 2]
                    _die()
                yield chunk

        return write_chunks(handle, first_half(), *args, **kwargs)

    writing.write_chunks = half_then_die

    replace = os.replace

    def part_moves(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        is_part = str(target).endswith(".parquet") and os.path.dirname(str(target)).endswith(".parts")
        if is_part and at("part_landing"):
            _die()
        replace(source, target, *args, **kwargs)
        if is_part and at("part_landed"):
            _die()

    run.os.replace = part_moves  # type: ignore[assignment]

    link_into_place = RenameLanding._link_into_place

    def table_moves(self: RenameLanding) -> bool:
        if self.target.path == table and at("table_landing"):
            _die()
        return link_into_place(self)

    RenameLanding._link_into_place = table_moves  # type: ignore[method-assign]

    write_whole = attendance.write_whole

    def lands_unexported(path: Any, data: bytes) -> None:
        if at("unexported_landing"):
            _die()
        write_whole(path, data)

    attendance.write_whole = lands_unexported
    _POINTS["trigger_fired"] = death is not None and death.point == "trigger_fired"
    remove = attendance._remove

    def removes_parts(folder: Any) -> None:
        if at("table_landed"):
            _die()
        remove(folder)
        if at("returned"):
            _die()

    attendance._remove = removes_parts


def run_try(spec: dict[str, Any]) -> None:
    """One try of the task (in a forked process): its result, or its error, written to ``spec["out"]``."""
    import logging
    from types import SimpleNamespace

    from airflow.sdk.execution_time.context import OutletEventAccessors

    log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    logging.basicConfig(level=logging.INFO)
    os.environ["AIRFLOW_CONN_FEISHU_VC_DEFAULT"] = spec["connection"]
    _arm(Death(**spec["death"]) if spec["death"] else None, spec["table"])
    from airflow_provider_feishu_vc.operators.attendance import FeishuVCMeetingParticipantsOperator

    operator = FeishuVCMeetingParticipantsOperator(
        task_id="participants", destination=spec["destination"], start_time=spec["start"], end_time=spec["end"],
        poll_interval=0.1, max_poll_interval=0.3, progress_interval=30.0, timeout=TRY_SECONDS / 2,
        export_attempts=6, allow_partial=spec["allow_partial"], deferrable=spec["deferrable"],
    )  # fmt: skip
    context = {
        "outlet_events": OutletEventAccessors(),
        "task_state_store": FileTaskState(spec["state"]),
        "ti": SimpleNamespace(try_number=spec["try_number"]),
    }
    try:
        result: Any = {"result": _execute(operator, context)}
    except BaseException as error:
        result = {"error": f"{type(error).__name__}: {error}"}
    with open(spec["out"], "w") as handle:
        json.dump(result, handle, default=str)


def _execute(operator: Any, context: dict[str, Any]) -> Any:
    """Run the task, and after a deferral its trigger until the first event, then resume the task with it."""
    import asyncio

    from airflow.exceptions import TaskDeferred

    try:
        return operator.execute(context)
    except TaskDeferred as deferred:
        trigger, resume = deferred.trigger, getattr(operator, deferred.method_name)

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    event = asyncio.run(first_event())
    if _POINTS.get("trigger_fired"):
        _die()
    return resume(context, event)


#: The death's point, for points outside the patched code (``trigger_fired``).
_POINTS: dict[str, bool] = {}


def _forkserver() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "airflow_provider_feishu_vc.operators.attendance", "pyarrow.parquet"])
    return context


# -- what the emulator serves and saw ----------------------------------------------------------------------


class Faults:
    """The drawn faults, served by the emulator: creates answered failed, files gone from a download on, exports
    forgotten from a status query on (121004, as Feishu answers)."""

    def __init__(self, emulator: FeishuVCEmulator, schedule: Schedule, monkeypatch: pytest.MonkeyPatch) -> None:
        from airflow_provider_feishu_vc.testing.emulator.rules import FeishuError

        state = emulator.state
        self.creates = 0
        self.downloads: list[tuple[str, bool]] = []  # (file token, served) of every download
        self.gone: set[str] = set()
        self.statuses = 0
        self.forgotten: set[str] = set()
        lock = threading.Lock()
        create_export, finished_export, status = state.create_export, state.finished_export, state.status

        def create(kind: str, body: dict[str, Any]) -> Any:
            job = create_export(kind, body)
            with lock:
                self.creates += 1
                if self.creates in schedule.failed_creates:
                    job.fail_msg = "export failed: drawn fault"
            return job

        def finished(file_token: str) -> Any:
            with lock:
                if len(self.downloads) + 1 in schedule.gone_downloads:
                    self.gone.add(file_token)
                served = file_token not in self.gone
                self.downloads.append((file_token, served))
            if not served:
                raise FeishuError(404, 121004, "data not exist")
            return finished_export(file_token)

        def asked(task_id: str, origin: str) -> Any:
            with lock:
                self.statuses += 1
                if self.statuses in schedule.gone_statuses:
                    self.forgotten.add(task_id)
                if task_id in self.forgotten:
                    raise FeishuError(404, 121004, "data not exist")
            return status(task_id, origin)

        monkeypatch.setattr(state, "create_export", create)
        monkeypatch.setattr(state, "status", asked)
        monkeypatch.setattr(state, "finished_export", finished)


@dataclass
class Snapshot:
    """What a killed try left: the manifest, the parts, the exports Feishu had and the downloads it served."""

    death: Death
    manifest: dict[str, Any]
    parts: set[str]
    exports: int
    downloads: int
    table: bool


def exports_of(emulator: FeishuVCEmulator) -> list[tuple[str, str, str, str | None]]:
    """(export id, kind, meeting_no or "", fail_msg) of every export, in the order they were created."""
    jobs = sorted(emulator.state.exports.values(), key=lambda job: int(job.task_id))
    return [(job.task_id, job.kind, str(job.body.get("meeting_no") or ""), job.fail_msg) for job in jobs]


def _examples() -> settings:
    """A handful of examples for make test, and DEEP_EXAMPLES for make fuzz: each example is two to four tries, each
    a process running the task against the emulator (several seconds), so 10,000 would take a day."""
    base = settings()
    examples = DEEP_EXAMPLES if os.environ.get("FEISHU_VC_FUZZ_PROFILE") == "deep" else 5
    checks = [*base.suppress_health_check, HealthCheck.function_scoped_fixture]
    return settings(base, max_examples=examples, suppress_health_check=checks)


@contextlib.contextmanager
def _folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="feishu-vc-kills-") as folder:
        yield Path(folder)


@_examples()
@given(schedules())
def test_a_task_killed_anywhere_is_retried_into_one_whole_table_creating_no_export_twice(
    session_emulator: FeishuVCEmulator, schedule: Schedule
) -> None:
    emulator = session_emulator
    emulator.reset()
    emulator.configure(known_meetings_only=True, export_delay=0.05)
    if schedule.refused is not None:
        refused = data.listed_meeting(schedule.refused, DAY_START, {}, 3600)
        emulator.configure(failing_meetings=f"{refused.meeting_no}:121005")
    with boundary(BOUNDARY), _folder() as folder, pytest.MonkeyPatch.context() as monkeypatch:
        faults = Faults(emulator, schedule, monkeypatch)
        target = folder / "out" / "participants.parquet"
        parts = target.parent / f".{target.name}.parts"
        spec = {
            "connection": emulator.connection(rate_limit_per_minute=60_000), "destination": target.as_uri(),
            "table": str(target), "allow_partial": schedule.refused is not None, "deferrable": schedule.deferrable,
            "start": DAY_START, "end": DAY_START + schedule.meetings * 3600, "state": str(folder / "state.json"),
        }  # fmt: skip
        processes = _forkserver()
        snapshots: list[Snapshot] = []
        result: dict[str, Any] | None = None
        for try_number in range(1, len(schedule.deaths) + 3):
            death = schedule.deaths[try_number - 1] if try_number <= len(schedule.deaths) else None
            out = folder / f"try{try_number}.json"
            process = processes.Process(target=run_try, args=({
                **spec, "death": None if death is None else vars(death), "try_number": try_number, "out": str(out),
                "log": str(folder / "tries.log"),
            },))  # fmt: skip
            process.start()
            process.join(TRY_SECONDS)
            if process.exitcode is None:
                process.kill()
                process.join()
                raise AssertionError(f"try {try_number} hung:\n{(folder / 'tries.log').read_text()[-4000:]}")
            if process.exitcode == -signal.SIGKILL:
                assert death is not None, "a try died with no death drawn for it"
                manifest = parts / "manifest.json"
                snapshots.append(Snapshot(
                    death, json.loads(manifest.read_text()) if manifest.exists() else {},
                    {path.stem for path in parts.glob("*.parquet")} if parts.exists() else set(),
                    len(emulator.state.exports), len(faults.downloads), target.exists(),
                ))  # fmt: skip
                continue
            outcome = json.loads(out.read_text())
            assert "result" in outcome, (
                f"try {try_number} failed: {outcome.get('error')}\n{(folder / 'tries.log').read_text()[-4000:]}"
            )
            result = outcome["result"]
            break
        assert result is not None, "every try was killed"
        check_the_outcome(emulator, faults, schedule, snapshots, target, result)


def check_the_outcome(
    emulator: FeishuVCEmulator, faults: Faults, schedule: Schedule, snapshots: list[Snapshot], target: Path,
    result: dict[str, Any],
) -> None:  # fmt: skip
    every = [data.listed_meeting(index, DAY_START, {}, 3600) for index in range(schedule.meetings)]
    meetings = [meeting for index, meeting in enumerate(every) if index != schedule.refused]
    # The table: exactly every meeting's participants (but the one Feishu refused, listed beside it); nothing else
    # in its folder.
    table = pq.read_table(target)
    assert set(table.column("meeting_no").to_pylist()) == {meeting.meeting_no for meeting in meetings}
    assert table.num_rows == result["rows"] == sum(meeting.participants for meeting in meetings)
    beside = [target.name]
    if schedule.refused is not None:
        refused = every[schedule.refused].meeting_no
        assert [item["meeting_no"] for item in result["unexported"]] == [refused]
        listed = json.loads((target.parent / f"{target.name}.unexported.json").read_text())
        assert [(item["meeting_no"], item["code"]) for item in listed] == [(refused, 121005)]
        assert not [task_id for task_id, _, meeting_no, _ in exports_of(emulator) if meeting_no == refused]
        beside.append(f"{target.name}.unexported.json")
    assert sorted(path.name for path in target.parent.iterdir()) == beside
    # A kill left no table at the destination, or (once it had landed) the whole one.
    for snapshot in snapshots:
        assert snapshot.table == (snapshot.death.point in TABLE_THERE), snapshot
    # Exports: each created once, plus one for each that failed, whose file went, or that a kill caught between
    # Feishu's answer and the manifest.
    exports = exports_of(emulator)
    tokens = {job.file_token: job.task_id for job in emulator.state.exports.values()}
    gone = {tokens[token] for token in faults.gone} | faults.forgotten
    lost: set[str] = set()
    before = 0
    for snapshot in snapshots:
        kept = {snapshot.manifest.get("meeting_list_export"), *(snapshot.manifest.get("exports") or {}).values()}
        unkept = {task_id for task_id, _, _, _ in exports[before : snapshot.exports] if task_id not in kept}
        if snapshot.table:  # every export was used: the manifest went with the parts
            unkept = set()
        if snapshot.death.point in CREATE_WINDOWS:  # that export may also be one Feishu fails (then it is wasted once)
            assert unkept, f"{snapshot.death} caught no create between Feishu's answer and the manifest"
        caught = {task_id for task_id, _, _, fail in exports if task_id in unkept and fail is None} - gone
        assert len(caught) <= CREATORS, (snapshot, caught)
        lost |= caught
        before = snapshot.exports
    for kind, meeting_no in [("meeting_list", ""), *[("participant_list", m.meeting_no) for m in meetings]]:
        own = [(task_id, fail) for task_id, k, number, fail in exports if k == kind and number == meeting_no]
        wasted = [task_id for task_id, fail in own if fail is not None or task_id in gone or task_id in lost]
        assert len(own) == 1 + len(wasted), (kind, meeting_no, own, wasted)
    # Downloads: no part that had landed, and no meeting list the manifest held the meetings of, fetched again.
    kinds = {task_id: (kind, meeting_no) for task_id, kind, meeting_no, _ in exports}
    for snapshot in snapshots:
        later = [kinds[tokens[token]] for token, served in faults.downloads[snapshot.downloads :] if served]
        assert not [meeting_no for kind, meeting_no in later if meeting_no in snapshot.parts], (snapshot, later)
        if snapshot.manifest.get("meetings") is not None:
            assert ("meeting_list", "") not in later, snapshot
