"""One download through FeishuVCDownloadExportOperator's code path (the Hook), in a fresh process: prints
seconds, bytes and the peak growth of resident memory over the process's state just before the download."""

from __future__ import annotations

import json
import sys
import threading
import time

import psutil


def main(file_token: str, destination: str) -> None:
    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook, as_storage_path

    hook = FeishuVCHook()
    hook.get_conn().access_token()  # connection and token ready, as on a worker that has just polled
    target = as_storage_path(destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The first download of a process also pays one-time set-up (Airflow's lineage and filesystem registries):
    # time it apart, then measure streaming on the second.
    started = time.perf_counter()
    hook.download_export(file_token, target, overwrite=True)
    first_seconds = time.perf_counter() - started
    target.unlink()
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
    started = time.perf_counter()
    landed = hook.download_export(file_token, target, overwrite=True)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    size = landed.stat().st_size
    print(
        json.dumps({"seconds": seconds, "first_seconds": first_seconds, "bytes": size, "peak_growth": peak - start_rss})
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
