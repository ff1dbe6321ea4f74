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
    rates: list[float]  # MB/s, one per repeat
    peak_growth_mib: float | None
    first_extra_seconds: float | None = None
    ratios: list[float] | None = None  # against curl's run of the same repeat

    @property
    def mb_per_s(self) -> float:
        return statistics.median(self.rates)


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
        labels = {"ours -> local file": "ours.xlsx", "ours -> memory://": "memory://bench/ours.xlsx"}
        curl_rates: list[float] = []
        runs: dict[str, list[dict]] = {label: [] for label in labels}
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
            local = Path(folder) / "curl.xlsx"
            # Interleaved (curl, ours, ours, curl, ...) so that a machine whose speed drifts affects both alike.
            for _ in range(REPEATS):
                started = time.perf_counter()
                subprocess.run([*curl, str(local), url], check=True)
                size = local.stat().st_size
                curl_rates.append(size / (time.perf_counter() - started) / 1e6)
                local.unlink()
                for label, name in labels.items():
                    destination = name if "://" in name else f"{folder}/{name}"
                    runs[label].append(_ours(env, file_token, destination))
                    Path(f"{folder}/ours.xlsx").unlink(missing_ok=True)
        results = [DownloadResult(target_mib, size, "curl -o (baseline)", curl_rates, None)]
        for label, measured in runs.items():
            rates = [r["bytes"] / r["seconds"] / 1e6 for r in measured]
            results.append(
                DownloadResult(
                    target_mib,
                    measured[0]["bytes"],
                    label,
                    rates,
                    max(r["peak_growth"] for r in measured) / 2**20,
                    statistics.median(r["first_seconds"] - r["seconds"] for r in measured),
                    [ours / base for ours, base in zip(rates, curl_rates, strict=True)],
                )
            )
        return results
