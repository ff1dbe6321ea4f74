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
import time
import tracemalloc
from dataclasses import asdict, dataclass

import httpx

from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient
from airflow_provider_feishu_vc.client.tokens import TOKEN_CACHE
from airflow_provider_feishu_vc.testing.loop_lag import LoopLagMonitor
from airflow_provider_feishu_vc.testing.process import EmulatorProcess
from airflow_provider_feishu_vc.triggers.feishu_vc import FeishuVCExportTrigger

APP_ID, APP_SECRET = "cli_bench", "bench-secret"
TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
#: Batched starts: Airflow's triggerer adds at most 50 new triggers per turn of its ~1 s loop; the benchmark
#: adds them 5x as densely.
BATCH_EVERY = 0.2


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

        async def main() -> tuple[list[str], float, float, tuple[float, float, dict]]:
            if label == "ours":  # what a triggerer has imported already: connection machinery, TLS context
                from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook

                await FeishuVCHook.aget_connection(FeishuVCHook.default_conn_name)
            gc.collect()
            gc.freeze()  # measure the waits, not a full collection of this process's import heap

            async def start_waits(sink: dict[str, float], ids: list[str]) -> list[asyncio.Future[str]]:
                """Start waits as Airflow's triggerer does (``TriggerRunner.create_triggers``): one task created
                per turn of the loop, so that the triggers already running keep their turns in between."""
                waits = []
                for i in ids:
                    wait = _ours(i, poll, sink) if label == "ours" else _baseline(emulator.url, i, poll, sink, errors)
                    waits.append(asyncio.ensure_future(wait))
                    await asyncio.sleep(0)
                return waits

            async def start_in_batches(sink: dict[str, float]) -> list[str]:
                waits: list[asyncio.Future[str]] = []
                for first in range(0, n, batch):
                    waits += await start_waits(sink, export_ids[first : first + batch])
                    await asyncio.sleep(BATCH_EVERY)
                return list(await asyncio.gather(*waits))

            cpu, started = time.process_time(), time.monotonic()
            async with LoopLagMonitor() as lag:
                if batch:
                    statuses = await start_in_batches(done_at)
                else:
                    statuses = await asyncio.gather(*await start_waits(done_at, export_ids))
            timed = (time.monotonic() - started, time.process_time() - cpu, emulator.stats())
            # A second, short pass counts the Python allocations of N waits in flight (tracemalloc slows
            # allocation, so it stays out of the timed pass above); then they are cancelled.
            tracemalloc.start()
            allocated_before = tracemalloc.get_traced_memory()[0]
            in_flight = await start_waits({}, export_ids)
            await asyncio.sleep(min(spread[0], poll) * 0.8)
            allocated_waiting = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            for wait in in_flight:
                wait.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            gc.unfreeze()
            return statuses, lag.worst, (allocated_waiting - allocated_before) / n, timed

        started_wall = time.time()
        statuses, worst_lag, bytes_per_wait, (seconds, cpu, after) = asyncio.run(main())
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
        worst_lag_ms=worst_lag * 1000,
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
