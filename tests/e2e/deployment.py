"""A real Airflow deployment on this machine: PostgreSQL, API server, scheduler, DAG processor and two triggerers
with LocalExecutor, each a process of its own with a log file. Every process it starts is stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from airflow_provider_feishu_vc.testing.process import free_port
from tests import os_packages

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


class StepFailed(AssertionError):
    """A step of the scenario failed; the message says which, with the last log lines of every process."""


def _postgres_bin() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    try:
        os_packages.install("postgresql")
    except os_packages.MissingOSPackage as error:
        raise StepFailed(str(error)) from None
    return _postgres_bin()


def chromium_path() -> Path:
    """Debian's chromium, installed from the OS packages when missing (as PostgreSQL is)."""
    try:
        return Path(os_packages.command("chromium", "chromium"))
    except os_packages.MissingOSPackage as error:
        raise StepFailed(str(error)) from None


def _wait_for_port(port: int, seconds: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StepFailed(f"{what} exited with {process.returncode} before listening on port {port}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise StepFailed(f"{what} did not listen on port {port} within {seconds:.0f} s")


class Deployment:
    def __init__(self, root: Path, extra_env: dict[str, str], dag_files: list[Path] | None = None) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.pg_port = free_port()
        self.api_port = free_port()
        self.home = root / "airflow-home"
        self.dags = root / "dags"
        self.dags.mkdir(exist_ok=True)
        if dag_files is None:
            dag_files = [REPO / "example_dags" / "example_feishu_vc_export.py",
                         *sorted((REPO / "tests" / "e2e" / "dags").glob("*.py"))]  # fmt: skip
        self.dag_files = dag_files
        for dag_file in dag_files:
            shutil.copy(dag_file, self.dags)
        #: Settings PostgreSQL starts with (``-c name=value``) beside the deployment's own.
        self.postgres_settings: list[str] = []
        (root / "support").mkdir(exist_ok=True)
        (root / "support" / "e2e_hostname.py").write_text(
            "import os, socket\n\n\ndef name() -> str:\n    return os.environ.get('E2E_HOSTNAME') or socket.getfqdn()\n"
        )
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "PYTHONPATH": os.pathsep.join([str(root / "support"), os.environ.get("PYTHONPATH", "")]),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "e2e_hostname.name",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://airflow@127.0.0.1:{self.pg_port}/airflow",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the connection form's Test button (off by default)
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            **extra_env,
        }

    # -- processes -----------------------------------------------------------------------------------------------

    def start(self, name: str, command: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            command,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.root,
        )
        self.processes[name] = process
        return process

    def airflow(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        """Run the ``airflow`` CLI against the deployment; its output (stdout, then stderr when not checked)."""
        result = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if not check:
            return result.stdout + result.stderr
        if result.returncode != 0:
            raise StepFailed(f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def start_postgres(self) -> None:
        binaries = _postgres_bin()
        data = self.root / "pgdata"
        as_postgres: list[str] = []
        data.mkdir()
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.root, "postgres")
            shutil.chown(data, "postgres")
            as_postgres = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*as_postgres, str(binaries / "initdb"), "-D", str(data), "-U", "airflow", "-A", "trust", "-E", "UTF8"],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=data,  # a folder the postgres user may enter
        )
        command = [*as_postgres, str(binaries / "postgres"), "-D", str(data), "-p", str(self.pg_port),
                   "-h", "127.0.0.1", "-k", str(data), "-c", "max_connections=300"]  # fmt: skip
        for setting in self.postgres_settings:
            command += ["-c", setting]
        process = self.start("postgres", command)
        _wait_for_port(self.pg_port, 30, "PostgreSQL", process)
        psql = binaries / "psql" if (binaries / "psql").exists() else Path(shutil.which("psql") or "psql")
        for _ in range(50):
            created = subprocess.run(
                [str(psql), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "airflow", "-d", "postgres",
                 "-c", "CREATE DATABASE airflow"], capture_output=True, text=True, check=False,
            )  # fmt: skip
            if created.returncode == 0:
                return
            time.sleep(0.2)
        raise StepFailed(f"could not create the airflow database: {created.stderr}")

    def start_airflow(self) -> None:
        self.airflow("db", "migrate")
        self.start("api-server", [AIRFLOW, "api-server", "--port", str(self.api_port), "--host", "127.0.0.1"])
        self.start("scheduler", [AIRFLOW, "scheduler"])
        self.start("dag-processor", [AIRFLOW, "dag-processor"])
        self.start("triggerer-a", [AIRFLOW, "triggerer"], E2E_HOSTNAME="triggerer-a")
        self.start("triggerer-b", [AIRFLOW, "triggerer"], E2E_HOSTNAME="triggerer-b")
        _wait_for_port(self.api_port, 120, "the API server", self.processes["api-server"])
        self.wait_for("the API server's health endpoint", lambda: self.api("GET", "/api/v2/monitor/health"), 60)

    def kill(self, name: str) -> int:
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return process.pid

    def stop_all(self) -> None:
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def tails(self, lines: int = 25) -> str:
        parts = []
        for name, process in self.processes.items():
            state = "running" if process.poll() is None else f"exited {process.returncode}"
            text = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {name} (pid {process.pid}, {state}), last {len(text)} lines:\n" + "\n".join(text))
        return "\n".join(parts)

    def executor_events_taken_by_scheduler(self, dag_id: str, run_id: str) -> set[tuple[str, int]]:
        """``(task_id, map_index)`` of every task instance of ``dag_id``/``run_id`` whose executor event (such as its
        exit into DEFERRED) the scheduler has already taken in.

        Airflow fails a resumed task when the scheduler reads its deferral exit only after the trigger fired and
        the resumed attempt started (apache/airflow#71580, #72716, open in 3.1-3.3). Tests that end many waits at
        once wait for this set to be complete first, so they test the provider and not that race.

        The scheduler logs "Received executor event" as it takes each event out of the executor's buffer, before
        it locks the task instance. A task instance locked elsewhere at that moment is skipped (``skip_locked``)
        and its event dropped without a "TaskInstance Finished" line, so that line cannot be waited for: it may
        never come. Either way, once received, the event can no longer race the resumed attempt.
        """
        received = re.compile(
            r"Received executor event with state \w+ for task instance TaskInstanceKey\("
            rf"dag_id='{re.escape(dag_id)}', task_id='([^']+)', run_id='{re.escape(run_id)}', "
            r"try_number=\d+, map_index=(-?\d+)\)"
        )
        # Every scheduler's log: a restarted scheduler's earlier logs are kept as scheduler.<ns>.log.
        text = "\n".join(log.read_text(errors="replace") for log in sorted(self.logs.glob("scheduler*.log")))
        return {(match.group(1), int(match.group(2))) for match in received.finditer(text)}

    # -- REST --------------------------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            raw = answer.read()
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def wait_for(self, what: str, probe: Any, seconds: float, interval: float = 0.5) -> Any:
        deadline = time.monotonic() + seconds
        last_error = ""
        while time.monotonic() < deadline:
            try:
                value = probe()
                if value:
                    return value
            except (urllib.error.URLError, OSError, KeyError, ValueError) as error:
                last_error = f" (last error: {error})"
            time.sleep(interval)
        raise StepFailed(f"timed out after {seconds:.0f} s waiting for {what}{last_error}")
