"""Streaming download: large exports from the emulator to a local file and to memory://, beside curl -o."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_feishu_vc.client.api import ExportStatus
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient
from airflow_provider_feishu_vc.testing.process import EmulatorProcess

APP_ID, APP_SECRET = "cli_bench", "bench-secret"
WORKER = Path(__file__).with_name("_download_worker.py")
REPEATS = 3  # each download is timed three times; the median is reported (peak memory: the worst)
BYTES_PER_ROW = 1093  # what one meeting row of 17 cells takes in the stored (uncompressed) sheet


@dataclass
class DownloadResult:
    target_mib: int
    size: int
    label: str
    mb_per_s: float
    peak_growth_mib: float | None
    first_extra_seconds: float | None = None


def _done_file_token(client: FeishuVCClient) -> str:
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    export_task_id = client.create_export("meeting_list", start_time=now - dt.timedelta(hours=1), end_time=now)
    while (task := client.get_export(export_task_id)).status is ExportStatus.PROCESSING:
        time.sleep(0.2)
    assert task.file_token
    return task.file_token


def _ours(env: dict[str, str], file_token: str, destination: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(WORKER), file_token, destination], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_size(target_mib: int) -> list[DownloadResult]:
    rows = target_mib * 1024 * 1024 // BYTES_PER_ROW
    with EmulatorProcess(app_id=APP_ID, app_secret=APP_SECRET, export_delay=0.1, rows=rows) as emulator:
        config = ClientConfig.from_connection_parts(host=emulator.url, login=APP_ID, password=APP_SECRET)
        with FeishuVCClient(config) as client:
            file_token = _done_file_token(client)
            token = client.access_token()
        url = f"{emulator.url}/open-apis/vc/v1/exports/download?file_token={urllib.parse.quote(file_token, safe='')}"
        curl = ["curl", "-sS", "--fail", "-H", f"Authorization: Bearer {token}", "-o"]
        subprocess.run([*curl, "/dev/null", url], check=True)  # the emulator builds the workbook once
        # back-to-back downloads: pacing is not measured here
        env = {**os.environ, "AIRFLOW_CONN_FEISHU_VC_DEFAULT": emulator.connection(rate_limit_per_minute=1e9)}
        results = []
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
            local = Path(folder) / "curl.xlsx"
            curl_seconds = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                subprocess.run([*curl, str(local), url], check=True)
                curl_seconds.append(time.perf_counter() - started)
                size = local.stat().st_size
                local.unlink()
            curl_rate = size / statistics.median(curl_seconds) / 1e6
            results.append(DownloadResult(target_mib, size, "curl -o (baseline)", curl_rate, None))
            for label, destination in (
                ("ours -> local file", f"{folder}/ours.xlsx"),
                ("ours -> memory://", "memory://bench/ours.xlsx"),
            ):
                runs = []
                for _ in range(REPEATS):
                    runs.append(_ours(env, file_token, destination))
                    Path(f"{folder}/ours.xlsx").unlink(missing_ok=True)
                rate = statistics.median(r["bytes"] / r["seconds"] for r in runs) / 1e6
                growth = max(r["peak_growth"] for r in runs) / 2**20
                first_extra = statistics.median(r["first_seconds"] - r["seconds"] for r in runs)
                results.append(DownloadResult(target_mib, runs[0]["bytes"], label, rate, growth, first_extra))
        return results
