"""Waiting at scale: N FeishuVCExportTriggers in one event loop against the emulator, beside a baseline.

The emulator runs in its own process with Feishu's 100-requests-per-minute window shrunk by ``--scale``
(20: 100 per 3 s), and the client is told the same limit, so the run shows the real limit in minutes / scale.
The baseline is the pattern common in providers: per poll a new HTTP client and a fresh token, no shared budget.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient
from airflow_provider_feishu_vc.client.token_cache import TOKEN_CACHE
from airflow_provider_feishu_vc.testing.loop_lag import LoopLagMonitor
from airflow_provider_feishu_vc.testing.process import EmulatorProcess
from airflow_provider_feishu_vc.triggers.feishu_vc import FeishuVCExportTrigger

APP_ID, APP_SECRET = "cli_bench", "bench-secret"
TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
#: Batched starts: Airflow's triggerer adds at most 50 new triggers per turn of its ~1 s loop; the benchmark
#: adds them 5x as densely.
BATCH_EVERY = 0.2


class AttributedLagMonitor(LoopLagMonitor):
    """:class:`LoopLagMonitor` that also tells the loop's own delays from the machine's: per tick it reads the CPU
    time of the whole process and the loop thread's Linux ``schedstat`` (CPU time, run-queue wait: runnable but the
    scheduler ran something else, and the times it was put on a CPU).

    ``worst_own`` is the longest lag the process could have caused: a tick's lag, but at most the CPU time all the
    process's threads used in it. A timer can only be late by work done past it, by the loop or by another thread
    holding the GIL; the rest is the machine (the run queue, or a wake-up the host delivered late). ``worst_cpu`` /
    ``worst_queued`` / ``worst_runs`` are the loop thread's CPU time, run-queue wait and times put on a CPU in the
    worst tick, ``worst_at`` its end in seconds from the start.
    """

    def __init__(self) -> None:
        super().__init__()
        self.worst_own = self.worst_cpu = self.worst_queued = self.worst_at = 0.0
        self.worst_runs = 0
        self._started = 0.0

    @staticmethod
    def _thread_times() -> tuple[float, float, int]:
        """(CPU seconds, run-queue seconds, times put on a CPU) of the calling thread."""
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as stat:
            on_cpu, queued, runs = stat.read().split()[:3]
        return int(on_cpu) / 1e9, int(queued) / 1e9, int(runs)

    async def __aenter__(self) -> AttributedLagMonitor:
        self._started = asyncio.get_running_loop().time()
        await super().__aenter__()
        return self

    def _sample(self) -> tuple[float, tuple[float, float, int]]:
        return time.process_time(), self._thread_times()

    def _record(self, lag: float, before: tuple[float, tuple[float, float, int]]) -> None:
        process_cpu, (cpu, queued, runs) = before
        process_cpu_after, (cpu_after, queued_after, runs_after) = time.process_time(), self._thread_times()
        if lag > self.worst:
            self.worst, self.worst_cpu, self.worst_queued = lag, cpu_after - cpu, queued_after - queued
            self.worst_runs = runs_after - runs
            self.worst_at = asyncio.get_running_loop().time() - self._started
        self.worst_own = max(self.worst_own, min(lag, process_cpu_after - process_cpu))


@dataclass
class WaitResult:
    label: str
    n: int
    seconds: float
    cpu_seconds: float
    token_requests: int
    status_requests: int
    rate_limited: int
    worst_lag_ms: float
    worst_lag_cpu_ms: float  # the loop thread's CPU time over the worst tick
    worst_lag_queued_ms: float  # its run-queue wait over the worst tick
    worst_lag_runs: int  # the times the loop thread was put on a CPU in the worst tick
    worst_own_lag_ms: float  # the worst lag the process could have caused (AttributedLagMonitor.worst_own)
    worst_lag_at: float  # seconds from the start
    kib_per_wait: float
    delay_p50: float
    delay_max: float
    finished: int
    transport_errors: int  # counted for the baseline only: the trigger retries its own

    @property
    def status_per_minute(self) -> float:
        return self.status_requests / self.seconds * 60


def _start_exports(emulator: EmulatorProcess, n: int) -> list[str]:
    config = ClientConfig.from_connection_parts(  # set-up, not measured: no pacing
        host=emulator.url, login=APP_ID, password=APP_SECRET, extra={"rate_limit_per_minute": 1e9}
    )
    with FeishuVCClient(config) as client:
        return [
            client.create_export("meeting_list", start_time=NOW - dt.timedelta(hours=1), end_time=NOW) for _ in range(n)
        ]


async def _ours(export_id: str, poll: float, done_at: dict[str, float]) -> str:
    async for event in FeishuVCExportTrigger(export_id, poll_interval=poll).run():
        done_at[export_id] = time.time()
        return event.payload["status"]
    return "none"


async def _baseline(url: str, export_id: str, poll: float, done_at: dict[str, float], errors: list[int]) -> str:
    """Per poll: a new client, a fresh token, one status request; any failure waits for the next poll."""
    credentials = {"app_id": APP_ID, "app_secret": APP_SECRET}
    while True:
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                token = (await client.post(TOKEN_PATH, json=credentials)).json().get("tenant_access_token")
                answer = await client.get(
                    f"/open-apis/vc/v1/exports/{export_id}", headers={"Authorization": f"Bearer {token}"}
                )
            if answer.status_code == 200 and answer.json()["data"]["status"] in (2, 3):
                done_at[export_id] = time.time()
                return "success"
        except httpx.HTTPError:
            errors[0] += 1
        await asyncio.sleep(poll)


def run_case(label: str, n: int, scale: float, poll: float, spread: tuple[float, float], batch: int = 0) -> WaitResult:
    """N waits; all started in one burst, or (``batch``) ``batch`` at a time every ``BATCH_EVERY`` seconds."""
    options = {"export_delay": spread[0], "export_delay_max": spread[1], "rate_window": 60 / scale}
    with EmulatorProcess(app_id=APP_ID, app_secret=APP_SECRET, **options) as emulator:
        os.environ["AIRFLOW_CONN_FEISHU_VC_DEFAULT"] = emulator.connection(rate_limit_per_minute=100 * scale)
        emulator.configure(rate_limit=1_000_000)  # set-up: create the N exports at once
        export_ids = _start_exports(emulator, n)
        emulator.configure(rate_limit=100)
        TOKEN_CACHE.clear()
        before = emulator.stats()
        done_at: dict[str, float] = {}
        errors = [0]

        async def main() -> tuple[list[str], AttributedLagMonitor, float, tuple[float, float, dict[str, Any]]]:
            if label == "ours":  # what a triggerer has imported already: connection machinery, TLS context
                from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook

                await FeishuVCHook.aget_connection(FeishuVCHook.default_conn_name)
            gc.collect()
            gc.freeze()  # measure the waits, not a full collection of this process's import heap

            statuses: list[str] = []
            running: set[asyncio.Future[str]] = set()
            all_finished = asyncio.Event()

            def finished(wait: asyncio.Future[str]) -> None:
                """What Airflow's triggerer does with a finished trigger: keep its event, drop its task (every turn of
                its loop), so that only the waiting triggers stay alive for the garbage collector to walk."""
                running.discard(wait)
                statuses.append("cancelled" if wait.cancelled() else "error" if wait.exception() else wait.result())
                if len(statuses) == n:
                    all_finished.set()

            async def start_waits(ids: list[str], sink: dict[str, float], kept: bool) -> list[asyncio.Future[str]]:
                """Start waits as Airflow's triggerer does (``TriggerRunner.create_triggers``): one task created
                per turn of the loop, so that the triggers already running keep their turns in between. Waits not
                ``kept`` are dropped when they finish."""
                waits: list[asyncio.Future[str]] = []
                for i in ids:
                    wait = _ours(i, poll, sink) if label == "ours" else _baseline(emulator.url, i, poll, sink, errors)
                    task = asyncio.ensure_future(wait)
                    if kept:
                        waits.append(task)
                    else:
                        running.add(task)
                        task.add_done_callback(finished)
                    await asyncio.sleep(0)
                return waits

            cpu, started = time.process_time(), time.monotonic()
            lag = AttributedLagMonitor()
            async with lag:
                for first in range(0, n, batch or n):
                    await start_waits(export_ids[first : first + (batch or n)], done_at, kept=False)
                    if batch:
                        await asyncio.sleep(BATCH_EVERY)
                await all_finished.wait()
            timed = (time.monotonic() - started, time.process_time() - cpu, emulator.stats())
            # A second, short pass counts the Python allocations of N waits in flight (tracemalloc slows
            # allocation, so it stays out of the timed pass above); then they are cancelled.
            tracemalloc.start()
            allocated_before = tracemalloc.get_traced_memory()[0]
            in_flight = await start_waits(export_ids, {}, kept=True)
            await asyncio.sleep(min(spread[0], poll) * 0.8)
            allocated_waiting = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            for wait in in_flight:
                wait.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            gc.unfreeze()
            return statuses, lag, (allocated_waiting - allocated_before) / n, timed

        started_wall = time.time()
        statuses, lag, bytes_per_wait, (seconds, cpu, after) = asyncio.run(main())
        ready = emulator.export_ready_times()
    # From the moment the export was done, or the wait began if it was done before that.
    delays = [done_at[i] - max(ready[i], started_wall) for i in export_ids if i in done_at]
    status_paths = sum(v for k, v in after["by_path"].items() if k.startswith("/open-apis/vc/v1/exports/7"))
    status_before = sum(v for k, v in before["by_path"].items() if k.startswith("/open-apis/vc/v1/exports/7"))
    return WaitResult(
        label=label,
        n=n,
        seconds=seconds,
        cpu_seconds=cpu,
        token_requests=after["token_requests"] - before["token_requests"],
        status_requests=status_paths - status_before,
        rate_limited=after["by_status"].get("429", 0) - before["by_status"].get("429", 0),
        worst_lag_ms=lag.worst * 1000,
        worst_lag_cpu_ms=lag.worst_cpu * 1000,
        worst_lag_queued_ms=lag.worst_queued * 1000,
        worst_lag_runs=lag.worst_runs,
        worst_own_lag_ms=lag.worst_own * 1000,
        worst_lag_at=lag.worst_at,
        kib_per_wait=bytes_per_wait / 1024,
        delay_p50=statistics.median(delays) if delays else float("nan"),
        delay_max=max(delays) if delays else float("nan"),
        finished=sum(1 for s in statuses if s == "success"),
        transport_errors=errors[0],
    )


def run_case_isolated(
    label: str, n: int, scale: float, poll: float, spread: tuple[float, float], batch: int = 0
) -> WaitResult:
    """Run one case in a fresh interpreter, so that memory figures are not skewed by an earlier case's heap."""
    arguments = json.dumps([label, n, scale, poll, list(spread), batch])
    output = subprocess.run(
        [sys.executable, __file__, arguments], capture_output=True, text=True, check=True
    ).stdout.strip()
    return WaitResult(**json.loads(output.splitlines()[-1]))


if __name__ == "__main__":
    import resource

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of baseline sockets at once
    case_label, case_n, case_scale, case_poll, case_spread, case_batch = json.loads(sys.argv[1])
    result = run_case(case_label, case_n, case_scale, case_poll, (case_spread[0], case_spread[1]), case_batch)
    print(json.dumps(asdict(result)))
