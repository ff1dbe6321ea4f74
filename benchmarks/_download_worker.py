"""One download in a fresh process: prints seconds, bytes and the peak growth of resident memory over the
process's state just before the download.

python _download_worker.py FILE_TOKEN DESTINATION    # FeishuVCDownloadExportOperator's code path (the Hook)
python _download_worker.py --boto3 URL TOKEN S3_ENDPOINT BUCKET KEY
    # the baseline for S3: the same HTTP body streamed into boto3's upload_fileobj (managed multipart upload)
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable

import psutil


def measured(action: Callable[[], int]) -> dict[str, float]:
    """Run ``action`` (which returns a byte count); return its seconds, bytes, peak resident-memory growth, the CPU
    seconds of this process meanwhile (all threads) and of the benchmark's process, where moto's S3 server runs."""
    process = psutil.Process()
    start_rss = peak = process.memory_info().rss
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    server = psutil.Process(os.getppid())
    cpu_before, server_before = cpu_seconds(process), cpu_seconds(server)
    started = time.perf_counter()
    size = action()
    seconds = time.perf_counter() - started
    cpu, server_cpu = cpu_seconds(process) - cpu_before, cpu_seconds(server) - server_before
    stop.set()
    sampler.join()
    return {"seconds": seconds, "bytes": size, "peak_growth": peak - start_rss, "cpu_seconds": cpu,
            "server_cpu_seconds": server_cpu}  # fmt: skip


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def ours(file_token: str, destination: str) -> None:
    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook, as_storage_path
    from airflow_provider_feishu_vc.hooks.landing import is_object_store

    hook = FeishuVCHook()
    hook.get_conn().access_token()  # connection and token ready, as on a worker that has just polled
    target = as_storage_path(destination)
    if not is_object_store(target):
        target.parent.mkdir(parents=True, exist_ok=True)
    # The first download of a process also pays one-time set-up (Airflow's lineage and filesystem registries):
    # time it apart, then measure streaming on the second.
    started = time.perf_counter()
    hook.download_export(file_token, target, overwrite=True)
    first_seconds = time.perf_counter() - started
    target.unlink()
    figures = measured(lambda: hook.download_export(file_token, target, overwrite=True).stat().st_size)
    print(json.dumps({**figures, "first_seconds": first_seconds}))


def boto3_baseline(url: str, token: str, endpoint: str, bucket: str, key: str) -> None:
    import urllib.request

    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    )
    s3.head_bucket(Bucket=bucket)  # client and connection set up, as ours is before it is measured

    def upload() -> int:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request) as answer:
            s3.upload_fileobj(answer, bucket, key)
        return s3.head_object(Bucket=bucket, Key=key)["ContentLength"]

    figures = measured(upload)
    print(json.dumps({**figures, "first_seconds": figures["seconds"]}))


if __name__ == "__main__":
    if sys.argv[1] == "--boto3":
        boto3_baseline(*sys.argv[2:7])
    else:
        ours(sys.argv[1], sys.argv[2])
