"""Processes sharing one app's limit: two processes of waiting triggers (uneven, as triggers fall to triggerers)
against the emulator, each told the app's whole limit, beside the hand split the README used to ask for (each
process told its share of the limit).

Each process runs its triggers in its own event loop; the emulator's window is shrunk by ``scale`` (20: Feishu's
100 a minute becomes 100 per 3 s). The last minute (in scaled time: ``MEASURED_WINDOWS`` windows) is measured.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

APP_ID, APP_SECRET = "cli_share", "share-secret"
NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
#: The measured span, in windows of the shrunk limit (20 windows: Feishu's 20 minutes, 60 s at scale 20).
MEASURED_WINDOWS = 20
#: Windows of saturation before the measured span: the first refusals of the start are behind.
SETTLING_WINDOWS = 10
#: Triggers join their loop in batches, as a triggerer adds them.
BATCH, BATCH_EVERY = 25, 0.5


@dataclass
class ShareResult:
    label: str
    used: float  # share of the limit accepted over the measured span
    refused: float  # share of all status queries answered 429, start included
    refused_measured: float  # the same over the measured span
    requests: int


def _run_triggers(export_ids: list[str], seconds: float, poll: float) -> None:
    """One process's triggers, polling until ``seconds`` have passed (the exports never finish)."""
    from airflow_provider_feishu_vc.triggers.feishu_vc import FeishuVCExportTrigger

    async def wait(export_id: str) -> None:
        async for _ in FeishuVCExportTrigger(export_id, poll_interval=poll).run():
            return

    async def main() -> None:
        waits: list[asyncio.Future[None]] = []
        started = time.monotonic()
        for first in range(0, len(export_ids), BATCH):
            waits += [asyncio.ensure_future(wait(i)) for i in export_ids[first : first + BATCH]]
            await asyncio.sleep(BATCH_EVERY)
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
        for waiting in waits:
            waiting.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

    asyncio.run(main())


def run_case(label: str, split: list[int], scale: float, poll: float) -> ShareResult:
    """``label`` "ours": every process told the app's limit; "hand split": each told an equal share of it."""
    from airflow_provider_feishu_vc.client.config import ClientConfig
    from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient
    from airflow_provider_feishu_vc.testing.process import EmulatorProcess

    window = 60 / scale
    seconds = (SETTLING_WINDOWS + MEASURED_WINDOWS) * window
    with EmulatorProcess(app_id=APP_ID, app_secret=APP_SECRET, export_delay=3600, rate_window=window) as emulator:
        emulator.configure(rate_limit=1_000_000)  # set-up: create the exports at once
        config = ClientConfig.from_connection_parts(
            host=emulator.url, login=APP_ID, password=APP_SECRET, extra={"rate_limit_per_minute": 1e9}
        )
        with FeishuVCClient(config) as client:
            hour = {"start_time": NOW - dt.timedelta(hours=1), "end_time": NOW}
            export_ids = [client.create_export("meeting_list", **hour) for _ in range(sum(split))]
        emulator.configure(rate_limit=100)
        told = 100 * scale / (len(split) if label == "hand split" else 1)
        env = {**os.environ, "AIRFLOW_CONN_FEISHU_VC_DEFAULT": emulator.connection(rate_limit_per_minute=told)}
        started, processes, first = time.time(), [], 0
        for count in split:
            arguments = json.dumps(["triggers", export_ids[first : first + count], seconds, poll])
            processes.append(subprocess.Popen([sys.executable, __file__, arguments], env=env))
            first += count
        for process in processes:
            if process.wait() != 0:
                raise RuntimeError(f"a trigger process exited with {process.returncode}")
        queries = emulator.stats()["status_queries"]
    measured_from = started + SETTLING_WINDOWS * window
    measured = [status for at, status in queries if measured_from <= at < started + seconds]
    return ShareResult(
        label,
        used=measured.count(200) / (100 * MEASURED_WINDOWS),
        refused=sum(1 for _, status in queries if status == 429) / max(1, len(queries)),
        refused_measured=measured.count(429) / max(1, len(measured)),
        requests=len(queries),
    )


def run_case_isolated(label: str, split: list[int], scale: float, poll: float) -> ShareResult:
    arguments = json.dumps(["case", label, split, scale, poll])
    output = subprocess.run([sys.executable, __file__, arguments], capture_output=True, text=True, check=True).stdout
    return ShareResult(**json.loads(output.strip().splitlines()[-1]))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    what, *rest = json.loads(sys.argv[1])
    if what == "triggers":
        _run_triggers(*rest)
    else:
        print(json.dumps(asdict(run_case(*rest))))
