"""The provider on a Celery fleet (make e2e-celery): two workers that share only Redis, the API server and S3 run
mapped exports, the three-task example and a user's exports; the API server and Redis restart under them, a
worker is killed mid-download, and a day's attendance loses its worker mid-run. Everything is asserted through
Airflow's REST API, the emulator's request log, S3 and PostgreSQL's connection log."""

from __future__ import annotations

import io
import json
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pendulum
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient
from airflow_provider_feishu_vc.operators.attendance_table import MEETING_COLUMNS, participant_schema
from airflow_provider_feishu_vc.tables import read_export
from airflow_provider_feishu_vc.testing.emulator import data
from airflow_provider_feishu_vc.testing.emulator.app import DOWNLOAD_PATH
from airflow_provider_feishu_vc.testing.emulator.faults import Fault
from airflow_provider_feishu_vc.testing.emulator.state import EXPORTS_PREFIX
from airflow_provider_feishu_vc.testing.process import EmulatorProcess
from tests.e2e.deployment import StepFailed
from tests.e2e.fleet import HEARTBEAT_TIMEOUT_SECONDS, WORKERS, Fleet, RedisOutage
from tests.e2e.supervisor import Restart
from tests.e2e.test_deployment import Timeline, all_task_instances, every_deferral_exit_taken, log_text, quoted
from tests.s3 import S3Server
from tests.test_user_tokens import OAUTH_PATH

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

APP_ID, APP_SECRET = "cli_fleet_app", "fleet-app-secret-value"
MAPPED, AS_USER = 20, 6
#: User (and app) tokens live this long, so that the user's tokens rotate several times across the workers.
TOKEN_SECONDS = 40
EXAMPLE = "example_feishu_vc_export"
#: About 20 MiB: three 8-MiB parts, so a worker killed mid-download leaves an upload open.
KILL_ROWS = 20_000
#: The mapped and the user's exports ask for days of October 2026; this is the end of that month (epoch seconds).
OCTOBER_END = int(pendulum.datetime(2026, 11, 1, tz="Asia/Shanghai").timestamp())
#: The attendance DAG's day (2026-11-23 in Shanghai), which its emulator fills with one meeting every
#: ``ATTENDANCE_EVERY`` seconds: ``ATTENDANCE_MEETINGS`` meetings.
ATTENDANCE_APP_ID, ATTENDANCE_SECRET = "cli_fleet_attendance", "fleet-attendance-secret-value"
ATTENDANCE_DAY = int(pendulum.datetime(2026, 11, 23, tz="Asia/Shanghai").timestamp())
ATTENDANCE_MEETINGS = 50
ATTENDANCE_EVERY = 86_400 // ATTENDANCE_MEETINGS
#: Feishu's 100 requests a minute per export API on a clock ten times faster (100 per 6 s), told to the connection.
ATTENDANCE_WINDOW = 6.0
#: Each participant file takes this long to start downloading: the task's four download threads land at most four
#: parts per this many seconds, so a run needs well over ten of them for its 50 parts, and a test that waits for a
#: few parts can kill the worker long before the last.
ATTENDANCE_DOWNLOAD_SECONDS = 1.5
#: Parts landed before the kill, at least: more than the at most four downloads in flight when the worker died, so
#: a retry that fetched every file again would be told from one that reuses the landed parts.
PARTS_BEFORE_KILL = 5
PARTICIPANTS_PATH = EXPORTS_PREFIX + "participant_list"


@pytest.fixture(scope="module")
def feishu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(app_id=APP_ID, app_secret=APP_SECRET, export_delay=3600, token_ttl=TOKEN_SECONDS) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def attendance_feishu() -> Iterator[EmulatorProcess]:
    """The attendance day's tenant: participant exports only of meetings its meeting list holds, built in seconds."""
    options = {"export_delay": 3, "rate_window": ATTENDANCE_WINDOW, "known_meetings_only": True,
               "meeting_every": ATTENDANCE_EVERY}  # fmt: skip
    with EmulatorProcess(app_id=ATTENDANCE_APP_ID, app_secret=ATTENDANCE_SECRET, **options) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server().start()
    for bucket in ("fleet-exports", "fleet-logs"):
        server.client().create_bucket(Bucket=bucket)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fleet(feishu: EmulatorProcess, attendance_feishu: EmulatorProcess, s3: S3Server) -> Iterator[Fleet]:
    root = Path(tempfile.mkdtemp(prefix="feishu-vc-fleet-"))
    env = {
        "AIRFLOW_CONN_AWS_FLEET": s3.connection(),
        "AIRFLOW__FEISHU_VC__STORAGE_BASE": "s3://aws_fleet@fleet-exports/exports",
        "FLEET_EXPORTS": str(MAPPED),
        "FLEET_USER_EXPORTS": str(AS_USER),
    }
    airflow = Fleet(root, env)
    try:
        airflow.start_postgres()
        airflow.start_airflow()
        # The Feishu connections live in the metadata DB: workers read them through the API server.
        app = json.loads(feishu.connection(rate_limit_per_minute=100))  # Feishu's own limit, as the emulator applies it
        user = {**app, "extra": {**app.get("extra", {}), "refresh_token": feishu.options.refresh_token}}
        airflow.airflow("connections", "add", "feishu_vc_default", "--conn-json", json.dumps(app))
        airflow.airflow("connections", "add", "feishu_vc_user", "--conn-json", json.dumps(user))
        attendance = attendance_feishu.connection(rate_limit_per_minute=100 * 60 / ATTENDANCE_WINDOW)
        airflow.airflow("connections", "add", "feishu_vc_attendance", "--conn-json", attendance)
        yield airflow
    except StepFailed as failure:
        raise StepFailed(f"{failure}\n{airflow.tails()}") from None
    finally:
        airflow.stop_all()


def trigger(airflow: Fleet, dag_id: str) -> str:
    airflow.wait_for(f"{dag_id} to be parsed", lambda: airflow.api("GET", f"/api/v2/dags/{dag_id}"), 180)
    # The example exports its run's data interval: a run with a logical date has one.
    logical_date = pendulum.now("Asia/Shanghai").start_of("day").isoformat() if dag_id == EXAMPLE else None
    return str(airflow.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date})["dag_run_id"])


def run_state(airflow: Fleet, dag_id: str, run_id: str) -> str:
    return str(airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted(run_id)}")["state"])


def wait_until_finished(airflow: Fleet, runs: dict[str, str], seconds: float) -> dict[str, str]:
    def finished() -> dict[str, str] | None:
        states = {dag_id: run_state(airflow, dag_id, run_id) for dag_id, run_id in runs.items()}
        return states if all(s in ("success", "failed") for s in states.values()) else None

    return dict(airflow.wait_for("the runs to finish", finished, seconds, interval=2))


def failures(airflow: Fleet, runs: dict[str, str]) -> str:
    """The first log of every task instance that did not succeed (empty when all did)."""
    found = []
    for dag_id, run_id in runs.items():
        for ti in all_task_instances(airflow, dag_id, run_id):
            if ti["state"] != "success":
                log = task_log(airflow, ti, ti["try_number"] or 1)
                found.append(f"{dag_id} {ti['task_id']}[{ti['map_index']}] {ti['state']}:\n{log[-3000:]}")
    return "\n".join(found)


def task_log(airflow: Fleet, ti: dict, try_number: int) -> str:
    """One try's log as the REST API serves it (from S3: no worker serves logs)."""
    return log_text(airflow.api("GET", f"/api/v2/dags/{ti['dag_id']}/dagRuns/{quoted(ti['dag_run_id'])}/"
                                f"taskInstances/{ti['task_id']}/logs/{try_number}?map_index={ti['map_index']}"
                                "&full_content=true"))  # fmt: skip


def running(airflow: Fleet, dag_id: str, run_id: str, task_id: str) -> dict | None:
    return next((ti for ti in all_task_instances(airflow, dag_id, run_id)
                 if ti["task_id"] == task_id and ti["state"] == "running"), None)  # fmt: skip


def test_a_fleet_of_celery_workers_lands_every_file_once_through_restarts_and_a_killed_worker(
    fleet: Fleet, feishu: EmulatorProcess, s3: S3Server
) -> None:
    airflow, timeline, summary = fleet, Timeline(), {}
    try:
        # -- many waits, spread over both workers ------------------------------------------------------------
        runs = {dag_id: trigger(airflow, dag_id) for dag_id in ("feishu_vc_fleet_mapped", "feishu_vc_fleet_user",
                                                                EXAMPLE)}  # fmt: skip
        timeline.mark(f"triggered {MAPPED} mapped exports, {AS_USER} as a user, and the three-task example")
        waits = MAPPED + AS_USER + 1

        def deferred() -> int:
            return sum(1 for dag_id, run_id in runs.items() for ti in all_task_instances(airflow, dag_id, run_id)
                       if ti["state"] == "deferred")  # fmt: skip

        airflow.wait_for(f"all {waits} waits to be deferred", lambda: deferred() == waits, 600, interval=2)
        # Ending waits before the scheduler has read their deferral exits trips an open Airflow race
        # (apache/airflow#71580, #72716); real exports end long after, so the test waits for the scheduler.
        airflow.wait_for(
            "the scheduler to take in every deferral exit",
            lambda: every_deferral_exit_taken(airflow, runs),
            300,
            interval=1,
        )
        timeline.mark(f"all {waits} waits deferred to the triggerers")

        # -- the API server restarted mid-deferral and mid-download ------------------------------------------
        example_export = airflow.api(
            "GET", f"/api/v2/dags/{EXAMPLE}/dagRuns/{quoted(runs[EXAMPLE])}/taskInstances/create_export"
            "/xcomEntries/return_value",
        )["value"]  # fmt: skip
        feishu.inject(Fault.SLOW_BODY, path=DOWNLOAD_PATH, chunk=96, seconds=0.5)  # ~40 s for the example's file
        downloads_before = feishu.stats()["by_path"].get(DOWNLOAD_PATH, 0)
        feishu.finish_now(str(example_export))
        airflow.wait_for("the example's download to run", lambda: running(airflow, EXAMPLE, runs[EXAMPLE],
                                                                          "download_export"), 180)  # fmt: skip
        # Running is not enough: a task that still renders its templates pulls XCom from the API server, and the
        # Task SDK gives that up after ~15 s of retries. Bytes must be moving, as the fault says.
        airflow.wait_for("the example's download to reach Feishu",
                         lambda: feishu.stats()["by_path"].get(DOWNLOAD_PATH, 0) > downloads_before, 60)  # fmt: skip
        airflow.kill("api-server")
        timeline.mark("API server killed while the example's download runs and the other waits are deferred")
        time.sleep(15)
        airflow.restart("api-server")
        airflow.wait_for("the API server to answer again", lambda: airflow.api("GET", "/api/v2/monitor/health"), 120)
        timeline.mark("API server back")
        airflow.wait_for("the example to finish", lambda: run_state(airflow, EXAMPLE, runs[EXAMPLE])
                         in ("success", "failed"), 300, interval=2)  # fmt: skip
        assert run_state(airflow, EXAMPLE, runs[EXAMPLE]) == "success", failures(airflow, {EXAMPLE: runs[EXAMPLE]})
        timeline.mark("the example run succeeded through the API server's restart")
        example_files = [k for k in s3.keys("fleet-exports") if k.startswith(f"exports/{EXAMPLE}/{runs[EXAMPLE]}/")]
        assert example_files == [f"exports/{EXAMPLE}/{runs[EXAMPLE]}/download_export/视频会议_meeting_list_"
                                 f"{example_export}.xlsx"], example_files  # fmt: skip
        summary["restarts survived"] = ["API server (15 s down)"]

        # -- Redis restarted while one task runs and the others are deferred ---------------------------------
        del runs[EXAMPLE]
        october = sorted(i for i, asked in feishu.export_requests().items()  # the mapped and the user's exports
                         if int(asked["body"].get("start_time", 0)) < OCTOBER_END)  # fmt: skip
        feishu.inject(Fault.SLOW_BODY, path=DOWNLOAD_PATH, chunk=256, seconds=0.5)  # ~15 s
        feishu.finish_now(october[0])
        airflow.wait_for("one export's download to run", lambda: any(
            running(airflow, dag_id, run_id, "export") for dag_id, run_id in runs.items()), 180)  # fmt: skip
        outage = airflow.restart_redis()
        timeline.mark(f"Redis restarted ({outage.seconds:.1f} s down, until the scheduler {outage.scheduler}) while "
                      f"one download runs and {waits - 2} waits are deferred")  # fmt: skip
        summary["restarts survived"].append(f"Redis ({outage.seconds:.1f} s down; the scheduler {outage.scheduler})")

        # -- every wait ends ---------------------------------------------------------------------------------
        feishu.finish_now()
        states = wait_until_finished(airflow, runs, 600)
        timeline.mark(f"runs finished: {states}")
        assert set(states.values()) == {"success"}, failures(airflow, runs)
        # Airflow 3.3's scheduler exits when Celery's Redis result backend refuses it (the executor's sync lets the
        # ConnectionError through its loop): the supervisor starts it again, as docker-compose's restart: always
        # does. That restart, and only that one, is expected; any other is a crash this test must not hide.
        restarts = airflow.supervisor.restarts_of("scheduler")
        unexpected = restarts[1:] if restarts and exited_for_redis(restarts[0], outage) else restarts
        assert not unexpected, f"unexpected scheduler restarts: {[str(r) for r in restarts]}"

        instances = [ti for d, r in runs.items() for ti in all_task_instances(airflow, d, r)]
        hostnames = sorted({ti["hostname"] for ti in instances})
        summary["worker hostnames seen"] = hostnames
        assert hostnames == list(WORKERS), hostnames
        starts: dict[tuple[str, str, int, int], set[str]] = {}
        for worker, dag_id, run_id, map_index, try_number in airflow.workloads_run():
            starts.setdefault((dag_id, run_id, map_index, try_number), set()).add(worker)
        crossed = sum(1 for workers in starts.values() if len(workers) > 1)
        summary["waits resumed on the other worker"] = crossed
        assert crossed >= 1, "no wait deferred from one worker resumed on the other"
        # Tries Airflow ended while the provider had nothing to fail on: the Redis restart makes Celery redeliver a
        # message whose task is running, and the worker that receives it ends that try (the task's retry resumes).
        retried = [ti for ti in instances if (ti["try_number"] or 1) > 1]
        redelivered = airflow.worker_log_count("Task already running elsewhere, ignoring redelivered message")
        summary["Airflow race recoveries (retries)"] = f"{len(retried)}; redelivered messages {redelivered}"
        first_tries = {f"{ti['dag_id']}[{ti['map_index']}]": first_try_errors(airflow, s3, ti) for ti in retried}
        for name, errors in first_tries.items():  # why each first try ended, from its log in S3: never hidden
            summary[f"  {name} try 1"] = errors
        # Airflow's races are recovered by retries; a try the provider failed is a defect of ours.
        ours = {name: errors for name, errors in first_tries.items() if "FeishuVC" in errors}
        assert not ours, f"the provider failed these tries: {ours}"
        october = [i for i, asked in feishu.export_requests().items()
                   if int(asked["body"].get("start_time", 0)) < OCTOBER_END]  # fmt: skip
        assert len(october) == MAPPED + AS_USER, f"{len(october)} exports created for {MAPPED + AS_USER} tasks"
        keys = s3.keys("fleet-exports")
        for dag_id, run_id in runs.items():
            landed = [k for k in keys if k.startswith(f"exports/{dag_id}/{run_id}/")]
            expected = MAPPED if dag_id == "feishu_vc_fleet_mapped" else AS_USER
            assert len(landed) == expected, (dag_id, landed)
        stats = feishu.stats()
        oauth, refused = stats["by_path"].get(OAUTH_PATH, 0), stats["errors_by_path"].get(f"400 {OAUTH_PATH}", 0)
        summary["user token refreshes (across both workers and the triggerers)"] = oauth
        summary["Feishu errors by path"] = stats["errors_by_path"]
        assert oauth >= 2 and refused == 0, f"{oauth} refreshes, {refused} refused (a spent refresh token)"

        # -- a worker killed mid-download --------------------------------------------------------------------
        exports_before = set(feishu.export_ready_times())
        run_id = trigger(airflow, "feishu_vc_fleet_kill")
        kill_run = {"feishu_vc_fleet_kill": run_id}
        airflow.wait_for("the export to wait in a triggerer", lambda: deferred_one(airflow, run_id), 300)
        [export_task_id] = set(feishu.export_ready_times()) - exports_before
        feishu.configure(rows=KILL_ROWS, stored_workbooks=True)
        feishu.inject(Fault.SLOW_BODY, path=DOWNLOAD_PATH, chunk=512 * 1024, seconds=0.25)  # ~10 s for 20 MiB
        since = len(s3.requests)
        feishu.finish_now(export_task_id)
        prefix = f"/fleet-exports/exports/feishu_vc_fleet_kill/{run_id}/"
        airflow.wait_for("the first part to be uploaded", lambda: any(
            r.path.startswith(prefix) and "partNumber=1&" in r.query + "&" for r in s3.requests[since:]), 300,
            interval=0.1)  # fmt: skip
        ti = running(airflow, "feishu_vc_fleet_kill", run_id, "export")
        assert ti is not None and ti["hostname"] in WORKERS, ti
        victim = ti["hostname"]
        killed = airflow.kill_worker(victim)
        killed_at = time.monotonic()
        timeline.mark(f"kill -9 every process of {victim} ({killed}: its Celery group and each task's own group) "
                      f"mid-download, an upload of export {export_task_id} open")  # fmt: skip
        assert len(s3.pending_uploads("fleet-exports")) == 1

        def retried() -> dict | None:
            ti = next(iter(all_task_instances(airflow, "feishu_vc_fleet_kill", run_id)))
            return ti if ti["try_number"] >= 2 and ti["state"] in ("running", "success") else None

        retry = airflow.wait_for("the retry to start", retried, 240, interval=1)
        took = time.monotonic() - killed_at
        timeline.mark(f"try {retry['try_number']} started on {retry['hostname']} {took:.0f} s after the kill")
        summary["kill -9 to retry"] = f"{took:.0f} s (heartbeat timeout {HEARTBEAT_TIMEOUT_SECONDS} s)"
        states = wait_until_finished(airflow, kill_run, 300)
        assert states == {"feishu_vc_fleet_kill": "success"}, failures(airflow, kill_run)
        retry = next(iter(all_task_instances(airflow, "feishu_vc_fleet_kill", run_id)))
        assert retry["hostname"] != victim, f"the retry ran on {retry['hostname']}, the killed worker"
        creates = set(feishu.export_ready_times()) - exports_before
        summary["export resumed on the other worker"] = f"{export_task_id}, creates = {len(creates)}"
        assert creates == {export_task_id}, f"the retry created {creates - {export_task_id}} instead of resuming"
        landed = [k for k in s3.keys("fleet-exports") if k.startswith(prefix.removeprefix("/fleet-exports/"))]
        assert landed == [f"exports/feishu_vc_fleet_kill/{run_id}/export/视频会议_meeting_list_{export_task_id}.xlsx"]
        assert s3.pending_uploads("fleet-exports") == [], "the killed try's upload is still open"

        # -- logs and the metadata DB ------------------------------------------------------------------------
        # The retry's log, read by the API server from S3 (no worker serves logs): it aborted what the killed try left.
        log = uploaded_task_log(airflow, s3, retry, retry["try_number"])
        assert "Aborted the upload to" in log, log[-3000:]
        connections = airflow.database_connections()
        while_running = airflow.worker_connections() - airflow.worker_connections_at_start
        summary["metadata-DB connections from workers"] = (
            f"{while_running} while running tasks ({airflow.worker_connections_at_start} at start-up: the airflow "
            "CLI's audit row for 'celery worker')"
        )
        assert connections.get("fleet-control-plane", 0) > 0, f"PostgreSQL logged no connection at all: {connections}"
        assert while_running == 0, connections
        secrets = [APP_SECRET, *feishu.stats()["issued_tokens"]]
        for log_file in airflow.logs.glob("*.log"):
            text = log_file.read_text(errors="replace")
            assert not [s for s in secrets if s in text], f"a secret reached {log_file.name}"
    finally:
        summary["scheduler restarts"] = [str(r) for r in airflow.supervisor.restarts_of("scheduler")] or "none"
        print(f"\nTimeline:\n{timeline}", flush=True)
        print("Fleet summary:\n" + "\n".join(f"  {k}: {v}" for k, v in summary.items()), flush=True)


def exited_for_redis(restart: Restart, outage: RedisOutage) -> bool:
    """Whether ``restart`` replaced the scheduler that exited during ``outage``, on Redis's ConnectionError."""
    return (outage.scheduler.startswith("exited") and outage.at <= restart.at and restart.why.startswith("exited")
            and "redis.exceptions.ConnectionError" in restart.last_error)  # fmt: skip


def uploaded_task_log(airflow: Fleet, s3: S3Server, ti: dict, try_number: int) -> str:
    """One ended try's log, read once its worker has uploaded it: a try's state is final before its log reaches S3.
    The key follows Airflow's default ``log_filename_template``."""
    map_part = f"map_index={ti['map_index']}/" if ti["map_index"] >= 0 else ""
    key = (f"task-logs/dag_id={ti['dag_id']}/run_id={ti['dag_run_id']}/task_id={ti['task_id']}/{map_part}"
           f"attempt={try_number}.log")  # fmt: skip
    airflow.wait_for(f"the log of try {try_number} to reach S3", lambda: key in s3.keys("fleet-logs"), 120)
    return task_log(airflow, ti, try_number)


def first_try_errors(airflow: Fleet, s3: S3Server, ti: dict) -> str:
    log = uploaded_task_log(airflow, s3, ti, 1)
    lines = [line for line in log.splitlines() if line.startswith(("error", "warning", "critical"))]
    return " | ".join(lines)[-1500:] or log[-800:]


def deferred_one(airflow: Fleet, run_id: str) -> bool:
    return any(ti["state"] == "deferred" for ti in all_task_instances(airflow, "feishu_vc_fleet_kill", run_id))


# -- a day's attendance, its worker killed mid-run --------------------------------------------------------------

ATTENDANCE = "feishu_vc_fleet_attendance"


def test_a_days_attendance_lands_one_table_after_its_worker_is_killed_mid_run(
    fleet: Fleet, attendance_feishu: EmulatorProcess, s3: S3Server
) -> None:
    """50 meetings' participants from one task, its worker killed by ``kill -9`` once some (not all) per-meeting
    parts have landed in S3: the retry, on the other worker, creates no export again, reuses the landed parts and
    lands one table of every meeting's participants, and leaves no part or manifest behind."""
    airflow, feishu, timeline, summary = fleet, attendance_feishu, Timeline(), {}
    since = time.monotonic()
    try:
        for name in WORKERS:  # a worker an earlier test killed is started again: the retry needs the other one
            if airflow.processes[name].poll() is not None:
                airflow.restart(name)
        airflow.wait_for_workers()
        feishu.inject(Fault.LATENCY, path=DOWNLOAD_PATH, times=1 + ATTENDANCE_MEETINGS,
                      seconds=ATTENDANCE_DOWNLOAD_SECONDS)  # fmt: skip
        run_id = trigger(airflow, ATTENDANCE)
        run = {ATTENDANCE: run_id}
        timeline.mark(f"triggered a day's attendance of {ATTENDANCE_MEETINGS} meetings")
        ti = airflow.wait_for("the attendance task to run", lambda: running(airflow, ATTENDANCE, run_id,
                                                                            "attendance"), 300)  # fmt: skip
        assert ti["hostname"] in WORKERS, ti
        victim = ti["hostname"]
        folder = f"exports/{ATTENDANCE}/{run_id}/attendance/"
        parts = f"{folder}.participants.parquet.parts/"

        def landed_parts() -> list[str]:
            listed = s3.client().list_objects_v2(Bucket="fleet-exports", Prefix=parts).get("Contents", [])
            return sorted(o["Key"] for o in listed if o["Key"].endswith(".parquet"))

        def exports_kept() -> int:
            keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket="fleet-exports", Prefix=parts)
                    .get("Contents", [])}  # fmt: skip
            if f"{parts}manifest.json" not in keys:
                return 0
            return len(json.loads(s3.read("fleet-exports", f"{parts}manifest.json")).get("exports") or {})

        def mid_run() -> bool:
            # Every export created and kept in the manifest (no create is under way when the worker dies), and a
            # few parts landed: the downloads' pace leaves most of the day to the retry.
            now = running(airflow, ATTENDANCE, run_id, "attendance")
            if now is None or now["try_number"] != ti["try_number"] or now["hostname"] != victim:
                raise StepFailed(f"the attendance task stopped running before the kill ({len(landed_parts())} parts):"
                                 f"\n{failures(airflow, run)}")  # fmt: skip
            return exports_kept() == ATTENDANCE_MEETINGS and len(landed_parts()) >= PARTS_BEFORE_KILL

        airflow.wait_for("every export to be kept and a few parts to land", mid_run, 300, interval=0.2)
        killed = airflow.kill_worker(victim)
        killed_at = time.monotonic()
        landed_before = landed_parts()
        timeline.mark(f"kill -9 every process of {victim} ({killed}) mid-run: {len(landed_before)} of "
                      f"{ATTENDANCE_MEETINGS} parts landed, every export created")  # fmt: skip
        assert PARTS_BEFORE_KILL <= len(landed_before) < ATTENDANCE_MEETINGS, landed_before
        assert f"{folder}participants.parquet" not in s3.keys("fleet-exports")
        summary["parts landed before the kill"] = len(landed_before)

        def retried() -> dict | None:
            ti = next(iter(all_task_instances(airflow, ATTENDANCE, run_id)))
            return ti if ti["try_number"] >= 2 and ti["state"] in ("running", "success") else None

        retry = airflow.wait_for("the retry to start", retried, 240, interval=1)
        took = time.monotonic() - killed_at
        timeline.mark(f"try {retry['try_number']} started on {retry['hostname']} {took:.0f} s after the kill")
        summary["kill -9 to retry"] = f"{took:.0f} s (heartbeat timeout {HEARTBEAT_TIMEOUT_SECONDS} s)"
        airflow.restart(victim)  # the fleet whole again; the retry runs on the other worker already
        states = wait_until_finished(airflow, run, 300)
        assert states == {ATTENDANCE: "success"}, failures(airflow, run)
        timeline.mark("the attendance run succeeded")
        retry = next(iter(all_task_instances(airflow, ATTENDANCE, run_id)))
        assert retry["hostname"] in WORKERS and retry["hostname"] != victim, retry

        # -- Feishu: every export created once, no landed part fetched again ---------------------------------
        stats, created = feishu.stats(), feishu.export_requests()
        kinds = [asked["kind"] for asked in created.values()]
        meetings = [data.listed_meeting(i, ATTENDANCE_DAY, {}, ATTENDANCE_EVERY) for i in range(ATTENDANCE_MEETINGS)]
        numbers = {meeting.meeting_no for meeting in meetings}
        summary["exports created"] = dict(sorted((kind, kinds.count(kind)) for kind in set(kinds)))
        assert kinds.count("meeting_list") == 1, created
        participant_exports = {i: a["body"] for i, a in created.items() if a["kind"] == "participant_list"}
        assert len(participant_exports) == ATTENDANCE_MEETINGS, f"{len(participant_exports)} participant exports"
        assert {str(body["meeting_no"]) for body in participant_exports.values()} == numbers
        accepted = stats["by_path"].get(PARTICIPANTS_PATH, 0) - refused(stats, PARTICIPANTS_PATH)
        assert accepted == ATTENDANCE_MEETINGS, f"the request log shows {accepted} participant_list creates"
        served = stats["by_path"].get(DOWNLOAD_PATH, 0) - refused(stats, DOWNLOAD_PATH)
        summary["downloads (the meeting list's included)"] = served
        summary["Feishu requests by API"] = {name: count for name, count in stats["by_path"].items()
                                             if not name.removeprefix(EXPORTS_PREFIX).isdigit()}  # fmt: skip
        summary["Feishu requests by API"]["status queries"] = sum(
            count for name, count in stats["by_path"].items() if name.removeprefix(EXPORTS_PREFIX).isdigit()
        )
        # The meeting list, each landed part once, and the at most four files the killed try was fetching or typing:
        # a retry that fetched the landed parts again would download at least PARTS_BEFORE_KILL more.
        assert 1 + ATTENDANCE_MEETINGS <= served <= 1 + ATTENDANCE_MEETINGS + 4, served

        # -- S3: one table, nothing else -----------------------------------------------------------------------
        table_key = f"{folder}participants.parquet"
        left = [key for key in s3.keys("fleet-exports") if key.startswith(folder)]
        assert left == [table_key], f"left over beside the table: {sorted(set(left) - {table_key})}"
        assert s3.pending_uploads("fleet-exports") == []
        result = airflow.api("GET", f"/api/v2/dags/{ATTENDANCE}/dagRuns/{quoted(run_id)}/taskInstances/attendance"
                             "/xcomEntries/return_value?deserialize=true")["value"]  # fmt: skip
        result = json.loads(result) if isinstance(result, str) else result
        summary["task result"] = {k: result.get(k) for k in ("rows", "landed_meetings", "calls",
                                                             "calls_per_exported_meeting", "seconds")}  # fmt: skip
        assert result["uri"].endswith(table_key) and result["landed_meetings"] == ATTENDANCE_MEETINGS, result
        # The run's calls, the killed try's included: its creates were kept in the manifest with each export id.
        assert result["calls"]["create"] == 1 + ATTENDANCE_MEETINGS, result["calls"]
        assert sum(result["calls"].values()) <= stats["requests"], (result["calls"], stats["requests"])
        log = uploaded_task_log(airflow, s3, retry, retry["try_number"])
        assert f"{ATTENDANCE_MEETINGS} exports kept by an earlier try" in log, log[-3000:]

        # -- the table: every meeting's participants, as the emulator serves them ------------------------------
        table = pq.read_table(io.BytesIO(s3.read("fleet-exports", table_key)))
        assert table.num_rows == result["rows"] == sum(meeting.participants for meeting in meetings)
        assert set(table.column("meeting_no").to_pylist()) == numbers
        config = ClientConfig.from_connection_parts(
            host=feishu.url, login=ATTENDANCE_APP_ID, password=ATTENDANCE_SECRET, extra={"rate_limit_per_minute": 1000}
        )  # fmt: skip
        by_meeting = {str(body["meeting_no"]): export_id for export_id, body in participant_exports.items()}
        with FeishuVCClient(config) as client:

            def served_file(meeting_no: str) -> bytes:
                with client.open_download(str(client.get_export(by_meeting[meeting_no]).file_token)) as download:
                    return b"".join(download.chunks)

            with ThreadPoolExecutor(8) as pool:
                files = dict(zip(sorted(numbers), pool.map(served_file, sorted(numbers)), strict=True))
        for meeting in meetings:
            own = read_export(files[meeting.meeting_no], "participant_list").cast(participant_schema())
            rows = table.filter(pc.equal(table.column("meeting_no"), meeting.meeting_no))
            assert rows.drop_columns(list(MEETING_COLUMNS)).to_pylist() == own.to_pylist(), meeting
            assert rows.num_rows == meeting.participants, meeting
            assert {t.timestamp() for t in rows.column("meeting_start_time").to_pylist()} == {meeting.start}
            assert {t.timestamp() for t in rows.column("meeting_end_time").to_pylist()} == {meeting.end}
        airflow.wait_for_workers()
        for log_file in airflow.logs.glob("*.log"):
            text = log_file.read_text(errors="replace")
            assert not [s for s in [ATTENDANCE_SECRET, *stats["issued_tokens"]] if s in text], log_file.name
        restarts = airflow.supervisor.restarts_of("scheduler", since)  # nothing here may stop the scheduler
        assert not restarts, f"the scheduler was restarted: {[str(r) for r in restarts]}"
    finally:
        summary["scheduler restarts"] = [str(r) for r in airflow.supervisor.restarts_of("scheduler", since)] or "none"
        print(f"\nTimeline:\n{timeline}", flush=True)
        print("Attendance summary:\n" + "\n".join(f"  {k}: {v}" for k, v in summary.items()), flush=True)


def refused(stats: dict, path: str) -> int:
    """Requests to ``path`` the emulator answered with an error (a 429, say): in its request log, not served."""
    return sum(count for name, count in stats["errors_by_path"].items() if name.endswith(f" {path}"))
