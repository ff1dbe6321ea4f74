"""Streaming download: large exports from the emulator to a local file and to memory:// (beside curl -o), and to
S3 on moto's server (beside boto3's upload_fileobj of the same HTTP body)."""

from __future__ import annotations

import json
import logging
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
    ratios: list[float] | None = None  # against the baseline's run of the same repeat (curl, or boto3 for S3)
    cpu_per_gb: list[float] | None = None  # CPU seconds of the downloading process (all its threads) per GB
    server_busy: list[float] | None = None  # CPU seconds of the benchmark's process (moto's S3) per second

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


def _boto3(env: dict[str, str], url: str, token: str, endpoint: str, bucket: str) -> dict:
    command = [sys.executable, str(WORKER), "--boto3", url, token, endpoint, bucket, "boto3.xlsx"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _s3_server() -> tuple[object, str, str]:
    """moto's S3 on loopback, with one bucket; returns (server, endpoint, bucket)."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per 8-MiB part otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    ).create_bucket(Bucket="feishu-vc-bench")
    return server, endpoint, "feishu-vc-bench"


def _result(
    target_mib: int, label: str, measured: list[dict], baseline_rates: list[float] | None = None
) -> DownloadResult:
    rates = [r["bytes"] / r["seconds"] / 1e6 for r in measured]
    return DownloadResult(
        target_mib,
        measured[0]["bytes"],
        label,
        rates,
        max(r["peak_growth"] for r in measured) / 2**20,
        statistics.median(r["first_seconds"] - r["seconds"] for r in measured) if baseline_rates else None,
        [ours / base for ours, base in zip(rates, baseline_rates, strict=True)] if baseline_rates else None,
        [r["cpu_seconds"] / (r["bytes"] / 1e9) for r in measured],
        [r["server_cpu_seconds"] / r["seconds"] for r in measured],
    )


def run_size(target_mib: int) -> list[DownloadResult]:
    rows = target_mib * 1024 * 1024 // BYTES_PER_ROW
    with EmulatorProcess(
        app_id=APP_ID, app_secret=APP_SECRET, export_delay=0.1, rows=rows, stored_workbooks=True
    ) as emulator:
        config = ClientConfig.from_connection_parts(host=emulator.url, login=APP_ID, password=APP_SECRET)
        with FeishuVCClient(config) as client:
            file_token = _done_file_token(client)
            token = client.access_token()
        url = f"{emulator.url}/open-apis/vc/v1/exports/download?file_token={urllib.parse.quote(file_token, safe='')}"
        curl = ["curl", "-sS", "--fail", "-H", f"Authorization: Bearer {token}", "-o"]
        subprocess.run([*curl, "/dev/null", url], check=True)  # the emulator builds the workbook once
        # back-to-back downloads: pacing is not measured here
        server, endpoint, bucket = _s3_server()
        aws = {"conn_type": "aws", "login": "bench", "password": "bench",
               "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}  # fmt: skip
        env = {
            **os.environ,
            "AIRFLOW_CONN_FEISHU_VC_DEFAULT": emulator.connection(rate_limit_per_minute=1e9),
            "AIRFLOW_CONN_AWS_BENCH": json.dumps(aws),
        }
        labels = {
            "ours -> local file": "ours.xlsx",
            "ours -> memory://": "memory://bench/ours.xlsx",
            "ours -> s3://": f"s3://aws_bench@{bucket}/ours.xlsx",
        }
        curl_rates: list[float] = []
        runs: dict[str, list[dict]] = {label: [] for label in labels}
        boto3_runs: list[dict] = []
        try:
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
                local = Path(folder) / "curl.xlsx"
                # Interleaved (curl, ours, ours, boto3, ours, ...) so that a machine whose speed drifts affects
                # each alike.
                for _ in range(REPEATS):
                    started = time.perf_counter()
                    subprocess.run([*curl, str(local), url], check=True)
                    size = local.stat().st_size
                    curl_rates.append(size / (time.perf_counter() - started) / 1e6)
                    local.unlink()
                    boto3_runs.append(_boto3(env, url, token, endpoint, bucket))
                    for label, name in labels.items():
                        destination = name if "://" in name else f"{folder}/{name}"
                        runs[label].append(_ours(env, file_token, destination))
                        Path(f"{folder}/ours.xlsx").unlink(missing_ok=True)
        finally:
            server.stop()  # type: ignore[attr-defined]
        boto3 = _result(target_mib, "boto3 upload_fileobj -> s3:// (baseline)", boto3_runs)
        return [
            DownloadResult(target_mib, size, "curl -o (baseline)", curl_rates, None),
            *(_result(target_mib, label, runs[label], curl_rates) for label in labels if "s3" not in label),
            boto3,
            _result(target_mib, "ours -> s3://", runs["ours -> s3://"], boto3.rates),
        ]
