"""What keeps a deployment's long-running processes up, as a production one is kept: Airflow's docker-compose quick
start runs every service with ``restart: always`` and probes the scheduler's health endpoint; its Helm chart gives
the scheduler a liveness probe. Here a thread of the test process does both for the processes it is told to keep:

- a process that exits is started again (``restart: always``);
- a process whose health endpoint has failed ``UNHEALTHY_PROBES`` probes in a row, once it has answered or its
  start period is over, is hung: it is killed (``kill -9`` of its process group) and started again.

Every restart is recorded (why, and the last error its log ends with) and printed, so that a test can tell the
restarts it expects from a crash it must not hide."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.e2e.fleet import Fleet

#: How often the supervisor looks whether a process still runs.
CHECK_EVERY = 1.0
#: How often a health endpoint is probed, and how many failed probes in a row make a process hung. The scheduler's
#: endpoint fails once its last heartbeat is ``[scheduler] scheduler_health_check_threshold`` (30 s) old, so a
#: scheduler is killed after about a minute without a heartbeat.
PROBE_EVERY = 5.0
UNHEALTHY_PROBES = 6
#: A process that has not answered its health endpoint yet is left alone for this long after it starts.
START_PERIOD = 240.0
#: The last exception line of a Python traceback (``redis.exceptions.ConnectionError: Error 111 ...``).
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*$", re.MULTILINE)


@dataclass
class Restart:
    name: str
    #: ``time.monotonic()`` when the supervisor found the process gone or hung.
    at: float
    #: ``exited 1``, or ``unhealthy: ...``.
    why: str
    #: The last exception line of the log of the process that was replaced (empty when it has none).
    last_error: str
    #: ``time.monotonic()`` when the new process first answered its health endpoint (None: no endpoint or not yet).
    healthy_at: float | None = None

    def __str__(self) -> str:
        back = f", healthy {self.healthy_at - self.at:.0f} s later" if self.healthy_at is not None else ""
        error = f" ({self.last_error})" if self.last_error else ""
        return f"{self.name} {self.why}{error}; restarted by the supervisor{back}"


@dataclass
class _Watched:
    health_url: str | None
    started_at: float = field(default_factory=time.monotonic)
    answered: bool = False
    failed_probes: int = 0
    last_probe: float = 0.0
    last_failure: str = ""


class Supervisor:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.restarts: list[Restart] = []
        self._watched: dict[str, _Watched] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-supervisor", daemon=True)

    def keep(self, name: str, health_url: str | None = None) -> None:
        """Keep the already started process ``name`` up from now on, probing ``health_url`` when given."""
        self._watched[name] = _Watched(health_url)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the deployment stops its processes, which must then stay stopped)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def restarts_of(self, name: str, since: float = 0.0) -> list[Restart]:
        return [restart for restart in list(self.restarts) if restart.name == name and restart.at >= since]

    # -- the loop ------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(CHECK_EVERY):
            for name, watched in list(self._watched.items()):
                try:
                    self._check(name, watched)
                except Exception as error:  # the supervisor must outlive one bad check
                    print(f"\n[supervisor] checking {name} failed: {error!r}", flush=True)

    def _check(self, name: str, watched: _Watched) -> None:
        process = self.fleet.processes[name]
        if process.poll() is not None:
            with contextlib.suppress(ProcessLookupError):  # what it started (its health endpoint's process) goes too
                os.killpg(process.pid, signal.SIGKILL)
            self._replace(name, f"exited {process.returncode}")
        elif watched.health_url is not None and time.monotonic() - watched.last_probe >= PROBE_EVERY:
            self._probe(name, watched)

    def _probe(self, name: str, watched: _Watched) -> None:
        watched.last_probe = time.monotonic()
        try:
            with urllib.request.urlopen(str(watched.health_url), timeout=PROBE_EVERY) as answer:
                healthy = answer.status == 200
                watched.last_failure = f"HTTP {answer.status}"
        except (urllib.error.URLError, OSError) as error:
            healthy, watched.last_failure = False, str(error)
        if healthy:
            if not watched.answered:
                watched.answered = True
                for restart in self.restarts_of(name):
                    if restart.healthy_at is None:
                        restart.healthy_at = time.monotonic()
            watched.failed_probes = 0
            return
        if not watched.answered and time.monotonic() - watched.started_at < START_PERIOD:
            return
        watched.failed_probes += 1
        if watched.failed_probes >= UNHEALTHY_PROBES:
            process = self.fleet.processes[name]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            self._replace(name, f"unhealthy: {watched.failed_probes} probes failed ({watched.last_failure}), killed")

    def _replace(self, name: str, why: str) -> None:
        log = (self.fleet.logs / f"{name}.log").read_text(errors="replace")
        errors = _ERROR_LINE.findall(log)
        restart = Restart(name, time.monotonic(), why, errors[-1][:300] if errors else "")
        self.restarts.append(restart)
        print(f"\n[supervisor] {restart}", flush=True)
        with (self.fleet.logs / "supervisor.log").open("a") as record:
            record.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {restart}\n")
        self.fleet.restart(name)
        self._watched[name] = _Watched(self._watched[name].health_url)
