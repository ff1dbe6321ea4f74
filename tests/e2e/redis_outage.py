"""What a Redis restart does to a CeleryExecutor scheduler, on its own and in a few minutes (no workers, no Feishu):

    PYTHONPATH=$PWD .venv/bin/python -m tests.e2e.redis_outage [--supervise] [--freeze]

It starts PostgreSQL, Redis, the API server, the DAG processor and the scheduler as the fleet does (tests/e2e/fleet.py),
triggers a one-task DAG (no worker takes it: the task stays in the executor, which asks Redis for its state in every
scheduler loop), stops Redis until the scheduler has met the outage, starts it again, then triggers a second run.
It prints whether the scheduler was DEAD (its process exited), HUNG (alive, no heartbeat) or ALIVE, and exits 0 only
when the second run's task was sent to Celery. Without ``--supervise`` Airflow 3.3's scheduler dies and nothing is
sent; with it, the supervisor starts the scheduler again and the second task is sent. ``--freeze`` stops the
scheduler's main process (SIGSTOP) instead of Redis: a hung scheduler, which only the supervisor's health probes
(``[scheduler] enable_health_check``) find and replace."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

from tests.e2e.deployment import AIRFLOW, StepFailed
from tests.e2e.fleet import Fleet

DAG_ID = "redis_outage"
DAG = f'''
from airflow.sdk import DAG, task

with DAG("{DAG_ID}", schedule=None, catchup=False):

    @task
    def never_taken() -> None:
        pass

    never_taken()
'''
#: How long the second run's task may take to reach Celery once the scheduler runs: it is sent in its first loops.
SEND_SECONDS = 180


def sent_to_celery(fleet: Fleet, run_id: str) -> bool:
    """The scheduler logs this line once ``apply_async`` has returned the Celery task id (the message is in Redis)."""
    logs = sorted(fleet.logs.glob("scheduler*.log"))
    return any(f"Setting external_executor_id for <TaskInstance: {DAG_ID}.never_taken {run_id}" in log.read_text(
        errors="replace") for log in logs)  # fmt: skip


def trigger(fleet: Fleet) -> str:
    return str(fleet.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None})["dag_run_id"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supervise", action="store_true", help="run the scheduler under the fleet's supervisor")
    parser.add_argument("--freeze", action="store_true", help="hang the scheduler (SIGSTOP) instead of stopping Redis")
    args = parser.parse_args()
    fleet = Fleet(Path(tempfile.mkdtemp(prefix="feishu-vc-redis-outage-")), {}, supervise=args.supervise)
    (fleet.dags / f"{DAG_ID}.py").write_text(DAG)
    try:
        fleet.start_postgres()
        fleet.start_redis()
        fleet.airflow("db", "migrate")
        fleet.start("api-server", [AIRFLOW, "api-server", "--port", str(fleet.api_port), "--host", "127.0.0.1"])
        fleet.start("scheduler", [AIRFLOW, "scheduler"])
        fleet.start("dag-processor", [AIRFLOW, "dag-processor"])
        if args.supervise:
            fleet.supervisor.keep("scheduler", f"http://127.0.0.1:{fleet.scheduler_health_port}/health")
            fleet.supervisor.start()
        fleet.wait_for(f"{DAG_ID} to be parsed", lambda: fleet.api("GET", f"/api/v2/dags/{DAG_ID}"), 300)
        first = trigger(fleet)
        fleet.wait_for("the first task to be sent to Celery", lambda: sent_to_celery(fleet, first), SEND_SECONDS)
        scheduler = fleet.processes["scheduler"]
        if args.freeze:  # hung by construction: only the supervisor's probes can tell
            os.kill(scheduler.pid, signal.SIGSTOP)  # its health endpoint's process runs on and answers 503
            print(f"HUNG: froze the scheduler (pid {scheduler.pid})", flush=True)
        else:
            outage = fleet.restart_redis()
            print(f"Redis was down {outage.seconds:.1f} s; the scheduler {outage.scheduler}", flush=True)
            if scheduler.poll() is not None:
                print(f"DEAD: the scheduler (pid {scheduler.pid}) exited with {scheduler.returncode}", flush=True)
            else:
                before = fleet.scheduler_heartbeat()
                try:  # Airflow's scheduler heartbeats every 5 s: a minute without one is a hang, not a slow loop
                    fleet.wait_for("a scheduler heartbeat", lambda: fleet.scheduler_heartbeat() != before, 60)
                    print(f"ALIVE: the scheduler (pid {scheduler.pid}) runs and heartbeats", flush=True)
                except StepFailed:
                    print(f"HUNG: the scheduler (pid {scheduler.pid}) runs, no heartbeat for 60 s", flush=True)
        second = trigger(fleet)
        try:
            fleet.wait_for("the second task to be sent to Celery", lambda: sent_to_celery(fleet, second), SEND_SECONDS)
        except StepFailed as failure:
            print(f"NOT RECOVERED: {failure}", flush=True)
            return 1
        restarts = [str(restart) for restart in fleet.supervisor.restarts] or "none"
        print(f"RECOVERED: the second run's task was sent to Celery; restarts: {restarts}", flush=True)
        return 0
    finally:
        fleet.stop_all()
        print(f"logs: {fleet.logs}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
