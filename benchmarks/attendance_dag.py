"""A day's attendance as a whole DAG run in a real Airflow deployment: ONE ``FeishuVCMeetingParticipantsOperator``
task against the way a user does it today (issue #38's second goal: at least 10x fewer CPU-seconds, no slower).

The deployment is the e2e one (tests/e2e/deployment.py) on this machine: PostgreSQL, API server, scheduler with
LocalExecutor (its 16 worker processes, each task a supervisor and a task process under them), DAG processor and
ONE triggerer, with Airflow's defaults otherwise. The emulator runs in its own process on a scaled clock: 100
calls per ``window`` seconds per API (6 s: Feishu's minute ten times faster), the connection told 1,000 a minute,
exports built in ``BUILD_SECONDS``, and ``known_meetings_only`` so that a participant export must match its
meeting list (one meeting every hour of the range: N meetings). The DAGs (benchmarks/dags/) run one after the
other in that same deployment:

- ``one task``: the operator's default, polling in its worker (downloads overlap the builds);
- ``one task, deferrable``: the same with ``deferrable=True`` (one deferral waits on every export);
- ``mapped``: the user's way: ``FeishuVCExportOperator`` exports the meeting list as a typed table, a ``@task``
  turns its rows into per-meeting kwargs, and ``FeishuVCExportOperator.partial(export_type="participant_list",
  deferrable=True, output_format="parquet", retries=3).expand_kwargs(...)`` lands one typed table per meeting. The
  user's join of those N tables into one is left out: it only makes the baseline cheaper.

CPU-seconds, measured with psutil: for each component's process tree (the process the deployment started and
every descendant alive at that moment) the sum of user + system + children_user + children_system times, read
just before the run is triggered and again once the scheduler has logged the run finished (plus ``SETTLE_SECONDS``
so that the last task process has exited and been reaped). A process that ends in between is reaped by its parent
in the tree (LocalExecutor workers wait for their task supervisors, supervisors for their task processes, the
scheduler for its workers, the DAG processor for its parsing processes), so its whole time rolls up into the
parent's children times; the difference of the two sums is the CPU the deployment spent while the run was going.
Nothing is subtracted: the components' idle work (scheduler loop, parsing, heartbeats) over the run's span is part
of what the run costs; it is measured once before the runs and shown beside them, so its share can be judged.
The Airflow figure counts API server, scheduler (with workers and tasks), DAG processor and triggerer; PostgreSQL
is shown beside it (not an Airflow process, but work the run caused). The emulator and this script are not
counted. A process that exits between the listing of its tree and the reading of its times may be counted twice
or missed: the snapshots are taken while the deployment is quiet, so this is far below a task's cost.

Wall time: from the trigger (this script's POST) to the run's ``end_date`` as Airflow recorded it. Task starts:
the task processes the executor ran, one "TaskInstance Finished" line of the scheduler each (a deferral and its
resumption are two, a retry another; the TI's state when the scheduler read the exit is shown too). The run's
end is logged before its last task process has exited, so the last CPU reading waits until the scheduler has read
at least as many exits as the run's task logs hold starts ("Worker startup parse complete"; a resumed process that
Airflow's deferral race kills early writes none, so the scheduler's count can be the larger).

python benchmarks/attendance_dag.py --meetings 30          # the three cases, printed as JSON
python benchmarks/attendance_dag.py --meetings 30 --cases one,mapped
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.attendance import BUILD_SECONDS, DAY_START

DAGS = Path(__file__).resolve().parent / "dags"
CASES = {
    "one": "feishu_vc_bench_one_task",
    "one-deferrable": "feishu_vc_bench_one_task_deferrable",
    "mapped": "feishu_vc_bench_mapped",
}
#: One small run before anything is measured (see benchmarks/dags/feishu_vc_bench_mapped.py).
WARM_UP = "feishu_vc_bench_warm_up"
EVERY = 3600
#: After the scheduler logged the run finished: time for the last task process to exit and be reaped.
SETTLE_SECONDS = 3.0
#: How long the idle deployment is measured before the runs (its CPU per second is shown beside the runs).
IDLE_SECONDS = 30.0
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process tree: each living member's own times plus those of the children it reaped."""
    import psutil

    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for member in members:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def snapshot(processes: dict[str, Any]) -> dict[str, float]:
    return {name: tree_cpu_seconds(process.pid) for name, process in processes.items()}


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before[name], 2) for name in before}


class SchedulerLog:
    """Reads the scheduler's log as it grows (no Airflow process is asked while a run is measured)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = ""
        self._offset = 0

    def read(self) -> str:
        if self.path.exists():
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
            self._offset += len(chunk)
            self.text += chunk.decode(errors="replace")
        return self.text

    def finished(self, dag_id: str, run_id: str) -> str | None:
        found = re.search(
            rf"DagRun Finished: dag_id={re.escape(dag_id)}, logical_date=[^,]*, run_id={re.escape(run_id)}, "
            r".*?state=(\w+),",
            self.read(),
        )
        return found.group(1) if found else None

    def task_starts(self, dag_id: str, run_id: str) -> dict[str, int]:
        """Task processes that ran for the run, by the state each ended in (deferred, success, failed, ...)."""
        counts: dict[str, int] = {}
        pattern = (rf"TaskInstance Finished: dag_id={re.escape(dag_id)}, task_id=[^,]+, "
                   rf"run_id={re.escape(run_id)}, .*?, state=(\w+),")  # fmt: skip
        for found in re.finditer(pattern, self.read()):
            counts[found.group(1)] = counts.get(found.group(1), 0) + 1
        return counts


def run_cases(
    meetings: int, cases: list[str], window: float = 6.0, timeout: float = 2400, keep: bool = False
) -> dict[str, Any]:
    """Start the emulator and the deployment, warm it up with one small run, measure the idle deployment, then run
    each case's DAG once (``keep``: leave the deployment's folder, logs included, and print where)."""
    from airflow_provider_feishu_vc.testing.process import EmulatorProcess
    from tests.e2e.deployment import Deployment, StepFailed

    root = Path(tempfile.mkdtemp(prefix="feishu-vc-attendance-dag-bench-"))
    options = {"export_delay": BUILD_SECONDS, "rate_limit": 100, "rate_window": window,
               "known_meetings_only": True, "meeting_every": EVERY}  # fmt: skip
    result: dict[str, Any] = {"meetings": meetings, "window": window, "build_seconds": BUILD_SECONDS}
    with EmulatorProcess(**options) as feishu:
        env = {
            "AIRFLOW_CONN_FEISHU_VC_DEFAULT": feishu.connection(rate_limit_per_minute=100 * 60 / window),
            "AIRFLOW__FEISHU_VC__STORAGE_BASE": (root / "exports").as_uri(),
            "FEISHU_VC_BENCH_MEETINGS": str(meetings),
            "FEISHU_VC_BENCH_DAY_START": str(DAY_START),
            "FEISHU_VC_BENCH_EVERY": str(EVERY),
            "FEISHU_VC_BENCH_BUILD_SECONDS": str(BUILD_SECONDS),
            # Airflow's defaults where the e2e deployment shortens them for its fail-over tests
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
            "AIRFLOW__SCHEDULER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "30",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "5",
        }
        airflow = Deployment(root, env, dag_files=sorted(DAGS.glob("*.py")))
        try:
            airflow.start_postgres()
            airflow.airflow("db", "migrate")
            command = str(Path(sys.executable).with_name("airflow"))
            airflow.start("api-server", [command, "api-server", "--port", str(airflow.api_port), "--host", "127.0.0.1"])
            for component in ("scheduler", "dag-processor", "triggerer"):
                airflow.start(component, [command, component])
            airflow.wait_for("the API server", lambda: airflow.api("GET", "/api/v2/monitor/health"), 180)
            for dag_id in (WARM_UP, *(CASES[case] for case in cases)):
                airflow.wait_for(f"{dag_id} to be parsed", lambda d=dag_id: airflow.api("GET", f"/api/v2/dags/{d}"),
                                 300)  # fmt: skip
            components = {name: airflow.processes[name] for name in (*AIRFLOW_COMPONENTS, "postgres")}
            log = SchedulerLog(airflow.logs / "scheduler.log")
            warm_up = run_one(airflow, feishu, log, components, WARM_UP, timeout)
            result["warm_up"] = {key: warm_up[key] for key in ("state", "wall_s", "cpu_s", "cpu_by_component")}
            time.sleep(10)
            before = snapshot(components)
            time.sleep(IDLE_SECONDS)
            idle = spent(before, snapshot(components))
            result["idle_cpu_per_s"] = {name: round(v / IDLE_SECONDS, 4) for name, v in idle.items()}
            for case in cases:
                result[case] = run_one(airflow, feishu, log, components, CASES[case], timeout)
        except StepFailed as failure:
            raise RuntimeError(f"{failure}\n{airflow.tails()}") from None
        finally:
            airflow.stop_all()
            if keep:
                print(f"The deployment's folder (logs included) is kept: {root}", file=sys.stderr)
            else:
                shutil.rmtree(root, ignore_errors=True)
    return result


def run_one(
    airflow: Any, feishu: Any, log: SchedulerLog, components: dict[str, Any], dag_id: str, timeout: float
) -> dict[str, Any]:
    """Trigger ``dag_id`` once and measure its run: CPU by component, wall time, task starts, Feishu calls."""
    import pendulum

    calls_before, exports_before = feishu.stats()["requests"], set(feishu.export_requests())
    load_before = os.getloadavg()[0]
    before = snapshot(components)
    triggered = time.time()
    run_id = airflow.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]
    deadline = time.monotonic() + timeout
    while (state := log.finished(dag_id, run_id)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{dag_id} did not finish within {timeout:.0f} s\n{airflow.tails()}")
        time.sleep(0.5)
    # The run ends when its last task reports success; its process exits, and the scheduler reads that exit, a few
    # seconds later on a loaded machine: wait for every task process's exit before the last reading.
    started_tasks = task_starts(airflow.home / "logs", dag_id, run_id)
    exits_by = time.monotonic() + 60
    while sum(log.task_starts(dag_id, run_id).values()) < started_tasks and time.monotonic() < exits_by:
        time.sleep(0.5)
    time.sleep(SETTLE_SECONDS)
    cpu = spent(before, snapshot(components))
    load_after = os.getloadavg()[0]
    quoted = urllib.parse.quote(run_id, safe="")
    run = airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}")
    wall = pendulum.parse(run["end_date"]).timestamp() - triggered
    instances = task_instances(airflow, dag_id, run_id)
    states: dict[str, int] = {}
    for instance in instances:
        states[instance["state"]] = states.get(instance["state"], 0) + 1
    exports = feishu.export_requests()
    created: dict[str, int] = {}
    for export_id, request in exports.items():
        if export_id not in exports_before:
            created[request["kind"]] = created.get(request["kind"], 0) + 1
    starts = log.task_starts(dag_id, run_id)
    outcome: dict[str, Any] = {
        "state": state, "wall_s": round(wall, 1), "cpu_s": round(sum(cpu[n] for n in AIRFLOW_COMPONENTS), 1),
        "cpu_by_component": cpu, "task_starts": max(started_tasks, sum(starts.values())), "task_exits": starts,
        "task_instances": states, "calls": feishu.stats()["requests"] - calls_before, "exports_created": created,
        "load_1min": [round(load_before, 2), round(load_after, 2)],
    }  # fmt: skip
    if dag_id.startswith("feishu_vc_bench_one_task"):
        value = airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/participants"
                                   "/xcomEntries/return_value")["value"]  # fmt: skip
        value = json.loads(value) if isinstance(value, str) else value
        outcome["landed_meetings"], outcome["rows"] = value["landed_meetings"], value["rows"]
    elif dag_id == CASES["mapped"]:
        outcome["landed_meetings"] = sum(1 for i in instances if i["task_id"] == "participants"
                                         and i["state"] == "success")  # fmt: skip
    return outcome


def task_starts(logs: Path, dag_id: str, run_id: str) -> int:
    """Task processes the run started: each writes "Worker startup parse complete" once into its try's log (a
    deferral's resumption appends to the same file)."""
    folder = logs / f"dag_id={dag_id}" / f"run_id={run_id}"
    return sum(
        path.read_text(errors="replace").count("Worker startup parse complete")
        for path in folder.rglob("attempt=*.log")
        if ".trigger." not in path.name
    )


def task_instances(airflow: Any, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every task instance of a run (the REST API pages at 100)."""
    found: list[dict[str, Any]] = []
    while True:
        page = airflow.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
            f"?limit=100&offset={len(found)}",
        )
        found += page["task_instances"]
        if not page["task_instances"] or len(found) >= page["total_entries"]:
            return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meetings", type=int, default=30)
    parser.add_argument("--window", type=float, default=6.0)
    parser.add_argument("--cases", default=",".join(CASES), help=f"some of {', '.join(CASES)}, run in this order")
    parser.add_argument("--keep", action="store_true", help="keep the deployment's folder (logs) and say where")
    arguments = parser.parse_args()
    cases = [case for case in arguments.cases.split(",") if case]
    print(json.dumps(run_cases(arguments.meetings, cases, arguments.window, keep=arguments.keep), indent=1))


if __name__ == "__main__":
    main()
