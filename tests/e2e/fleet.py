"""A CeleryExecutor fleet on this machine (make e2e-celery): PostgreSQL, Redis (Debian's redis-server, append-only),
moto's S3, an API server, scheduler, DAG processor and two triggerers, and two Celery workers that share nothing but
the broker, the API server and S3: each has its own AIRFLOW_HOME and its own copy of the DAG folder, files land in
S3 only and task logs go to S3 (remote logging), so the UI reads them without the workers. The scheduler runs under
a supervisor (tests/e2e/supervisor.py), as in Airflow's docker-compose quick start: restarted when it exits or its
health endpoint stops answering, each restart recorded for the tests to check.

Workers are given the metadata DB's address with an ``application_name`` of their own, and PostgreSQL logs every
connection, so a test can count the connections workers opened (there must be none)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from airflow_provider_feishu_vc.testing.process import free_port
from tests import os_packages
from tests.e2e.deployment import AIRFLOW, REPO, Deployment, StepFailed, _wait_for_port
from tests.e2e.supervisor import Supervisor

WORKERS = ("worker-a", "worker-b")
#: How long a task's heartbeat may be missing before the scheduler fails the try (Airflow's default is 300 s): a
#: lost worker's task is retried elsewhere within about a minute and a half, and a task outlives an API server
#: restart (its supervisor sends no heartbeat while it retries a call, up to the outage plus one wait).
HEARTBEAT_TIMEOUT_SECONDS = 60
DAG_FILES = [
    REPO / "example_dags" / "example_feishu_vc_export.py",
    REPO / "tests" / "e2e" / "fleet_dags" / "feishu_vc_fleet.py",
]
CONTROL_APPLICATION = "fleet-control-plane"
#: How long Redis may stay down waiting for the scheduler to meet the outage (it meets it within a few loops).
REDIS_OUTAGE_LIMIT_SECONDS = 180


@dataclass(frozen=True)
class RedisOutage:
    #: ``time.monotonic()`` when Redis was stopped, and how long it was down.
    at: float
    seconds: float
    #: How the scheduler met it: ``exited 1`` or ``ran 2 heartbeats``.
    scheduler: str


def redis_server() -> str:
    try:
        return os_packages.command("redis-server", "redis-server")
    except os_packages.MissingOSPackage as error:
        raise StepFailed(str(error)) from None


class Fleet(Deployment):
    def __init__(self, root: Path, extra_env: dict[str, str], *, supervise: bool = True) -> None:
        super().__init__(root, extra_env, dag_files=DAG_FILES)
        self.redis_port = free_port()
        self.scheduler_health_port = free_port()
        self.supervise = supervise
        self.supervisor = Supervisor(self)
        self._starting = threading.Lock()  # the supervisor's thread restarts processes too
        self.redis_dir = root / "redis"
        self.redis_dir.mkdir()
        self.postgres_settings = ["log_connections=on"]
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        database = self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        self.env.update(
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{database}?application_name={CONTROL_APPLICATION}",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                # Results in Redis too: with a database result backend the workers would connect to the metadata DB.
                "AIRFLOW__CELERY__RESULT_BACKEND": f"redis://127.0.0.1:{self.redis_port}/1",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_SECONDS),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                # An API server restart takes 15-30 s: a task keeps running through that many missed heartbeats, and
                # its calls to the API server retry for longer than Airflow's 5 tries (15 s at most), at most 8 s
                # apart, so that a call goes through soon after the API server is back.
                "AIRFLOW__WORKERS__MAX_FAILED_HEARTBEATS": "10",
                "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
                "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX": "8",
                "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
                "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": "s3://fleet-logs/task-logs",
                "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "aws_fleet",
                # The scheduler's health endpoint (a process beside it: 200 while its heartbeat is fresh), which
                # the supervisor probes as docker-compose's health check does.
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self.scheduler_health_port),
            }
        )
        self.database = database

    # -- processes -----------------------------------------------------------------------------------------------

    def start(self, name: str, command: list[str], **env: str) -> subprocess.Popen[bytes]:
        with self._starting:
            self.commands[name] = (command, env)
            if (self.logs / f"{name}.log").exists():  # a restart: keep what the earlier process wrote
                (self.logs / f"{name}.log").rename(self.logs / f"{name}.{time.time_ns()}.log")
            return super().start(name, command, **env)

    def restart(self, name: str) -> None:
        command, env = self.commands[name]
        self.start(name, command, **env)

    def start_redis(self) -> None:
        command = [redis_server(), "--port", str(self.redis_port), "--bind", "127.0.0.1", "--appendonly", "yes",
                   "--dir", str(self.redis_dir), "--save", "", "--protected-mode", "no"]  # fmt: skip
        _wait_for_port(self.redis_port, 30, "redis-server", self.start("redis", command))

    def restart_redis(self) -> RedisOutage:
        """Stop Redis (SIGTERM: it flushes its append-only file), keep it down until the scheduler has met the
        outage, start it again.

        The scheduler has met it when it has exited, or when it has written two heartbeats since Redis stopped:
        between those its loop asked Celery's result backend for the states of the tasks it sent (the executor's
        ``sync``, before the heartbeat in every loop). A restart of a fraction of a second falls between two of the
        scheduler's calls to Redis or not, by chance; held down until the scheduler has met it, every run takes the
        same path."""
        scheduler = self.processes["scheduler"]
        process = self.processes["redis"]
        down_at, down_since = time.monotonic(), datetime.now(timezone.utc)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        beats: set[datetime] = set()
        try:
            while scheduler.poll() is None and len(beats) < 2:
                if time.monotonic() - down_at > REDIS_OUTAGE_LIMIT_SECONDS:
                    raise StepFailed(f"the scheduler neither exited nor sent 2 heartbeats in the "
                                     f"{REDIS_OUTAGE_LIMIT_SECONDS} s Redis was down")  # fmt: skip
                beat = self.scheduler_heartbeat()
                if beat is not None and beat > down_since:
                    beats.add(beat)
                time.sleep(0.2)
            met = f"exited {scheduler.returncode}" if scheduler.poll() is not None else "ran 2 heartbeats"
        finally:
            self.restart("redis")
            _wait_for_port(self.redis_port, 30, "redis-server", self.processes["redis"])
        return RedisOutage(down_at, time.monotonic() - down_at, met)

    def scheduler_heartbeat(self) -> datetime | None:
        """The latest scheduler heartbeat in the metadata DB, as the API server reports it."""
        try:
            latest = self.api("GET", "/api/v2/monitor/health")["scheduler"]["latest_scheduler_heartbeat"]
        except (OSError, KeyError, TypeError, ValueError):
            return None
        return datetime.fromisoformat(latest.replace("Z", "+00:00")) if latest else None

    def worker_env(self, name: str) -> dict[str, str]:
        """A worker's own AIRFLOW_HOME and DAG folder, and the metadata DB's address under a name of its own."""
        home, dags = self.root / name / "home", self.root / name / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        home.mkdir(parents=True, exist_ok=True)
        for dag_file in self.dag_files:
            shutil.copy(dag_file, dags)
        return {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "E2E_HOSTNAME": name,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{self.database}?application_name=fleet-{name}",
        }

    def start_worker(self, name: str) -> None:
        command = [AIRFLOW, "celery", "worker", "-H", f"{name}@%h", "--skip-serve-logs", "--without-mingle",
                   "--without-gossip"]  # fmt: skip
        self.start(name, command, **self.worker_env(name))

    def wait_for_workers(self, seconds: float = 120) -> None:
        def ready() -> bool:
            return all("ready." in (self.logs / f"{name}.log").read_text(errors="replace") for name in WORKERS)

        deadline = time.monotonic() + seconds
        while not ready():
            for name in WORKERS:
                if self.processes[name].poll() is not None:
                    raise StepFailed(f"{name} exited with {self.processes[name].returncode} while starting")
            if time.monotonic() > deadline:
                raise StepFailed(f"the Celery workers were not ready within {seconds:.0f} s")
            time.sleep(0.5)

    def start_airflow(self) -> None:
        self.start_redis()
        super().start_airflow()
        if self.supervise:
            self.supervisor.keep("scheduler", f"http://127.0.0.1:{self.scheduler_health_port}/health")
            self.supervisor.start()
        for name in WORKERS:
            self.start_worker(name)
        self.wait_for_workers()
        #: Connections the workers opened while starting: the ``airflow`` CLI writes an audit row for the command
        #: it runs (``airflow.utils.cli_action_loggers.default_action_log``) when it has the DB's address.
        self.worker_connections_at_start = self.worker_connections()

    def stop_all(self) -> None:
        self.supervisor.stop()  # first: what is stopped now stays stopped
        super().stop_all()

    def tails(self, lines: int = 25) -> str:
        restarts = "\n".join(str(restart) for restart in self.supervisor.restarts) or "none"
        return f"{super().tails(lines)}\n--- restarts by the supervisor:\n{restarts}"

    def worker_connections(self) -> int:
        return sum(n for name, n in self.database_connections().items() if name.startswith("fleet-worker"))

    # -- what the tests read -------------------------------------------------------------------------------------

    def database_connections(self) -> dict[str, int]:
        """Connections PostgreSQL authorised, by ``application_name`` (its log, ``log_connections=on``)."""
        found: dict[str, int] = {}
        pattern = re.compile(r"connection authorized: .*?application_name=(\S+)")
        for log in self.logs.glob("postgres*.log"):
            for match in pattern.finditer(log.read_text(errors="replace")):
                found[match.group(1)] = found.get(match.group(1), 0) + 1
        return found

    def workloads_run(self) -> list[tuple[str, str, str, int, int]]:
        """Every task workload a worker's Celery process started: (worker, dag_id, run_id, map_index, try_number)."""
        started = []
        for name in WORKERS:
            for log in sorted(self.logs.glob(f"{name}*.log")):
                for line in log.read_text(errors="replace").splitlines():
                    if "Executing workload in Celery" not in line:
                        continue
                    fields = dict(re.findall(r"\b(dag_id|run_id|map_index|try_number)=['\"]?([^'\",)\s]+)", line))
                    if {"dag_id", "run_id", "map_index", "try_number"} <= set(fields):
                        started.append((name, fields["dag_id"], fields["run_id"], int(fields["map_index"]),
                                        int(fields["try_number"])))  # fmt: skip
        return started

    def worker_log_count(self, text: str) -> int:
        """Lines of the workers' logs (restarted ones included) that contain ``text``."""
        return sum(
            log.read_text(errors="replace").count(text) for name in WORKERS for log in self.logs.glob(f"{name}*.log")
        )

    def kill_worker(self, name: str) -> int:
        """``kill -9`` every process of the worker, as when its machine is lost: the Celery parent's process group
        (its pool) and each task's own group (Airflow starts a task in a process group of its own, which a
        ``killpg`` of the worker's group leaves running). Returns how many processes were killed."""
        import psutil

        worker = psutil.Process(self.processes[name].pid)
        doomed = [worker, *worker.children(recursive=True)]
        groups = {os.getpgid(process.pid) for process in doomed if process.is_running()}
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.processes[name].wait()
        gone, alive = psutil.wait_procs(doomed, timeout=10)
        if alive:
            raise StepFailed(f"{len(alive)} processes of {name} outlived kill -9: {alive}")
        return len(gone)


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
