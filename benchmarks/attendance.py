"""A day's attendance from one task (FeishuVCMeetingParticipantsOperator) against the emulator at Feishu's per-API
limits on a scaled clock (100 calls per ``window`` seconds per API: 6 s is ten times Feishu's minute).

Each case runs in a child process (its own peak memory; the emulator in another): the operator's ``execute`` for
N meetings, from the task's start (imports included) to the landed table. Reports wall time against the rate-limit
bound, calls per exported meeting, and the task's peak RSS growth. Two cases:

- ``given``: the meeting list comes from upstream (a typed Parquet file, as an export operator lands it, made
  before the clock starts). Bound: the slowest API's N / limit, plus one export's build time and one download.
- ``exported``: the task exports the interval's meeting list first. Its bound adds what that export costs before
  any participant export can be asked for: one more build time and one more download.

The provider paces each API at 90% of the connection's limit (``client/budget.py``), so N / limit alone is about
10% short of what any run can reach; the goal's 1.2x holds that 10% and the overheads.

python benchmarks/attendance.py --meetings 60 [--given]   # one case, printed as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DAY_START = 1_795_363_200  # 2026-11-23 00:00 in Shanghai
BUILD_SECONDS = 2.0
#: What the bound allows one download (a participant list is a few KiB).
DOWNLOAD_SECONDS = 0.5


def _given_meetings(feishu: Any, meetings: int, every: int, folder: str) -> str:
    """The range's meeting list, exported and typed before the clock starts (what an upstream export task lands);
    its URI."""
    from airflow_provider_feishu_vc.client.api import ExportStatus
    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
    from airflow_provider_feishu_vc.tables import convert_export

    hook = FeishuVCHook()
    try:
        export = hook.create_export("meeting_list", start_time=DAY_START, end_time=DAY_START + meetings * every)
        while (task := hook.check_export(export)) is None or task.status is ExportStatus.PROCESSING:
            time.sleep(0.2)
        workbook = hook.download_export(str(task.file_token), f"{folder}/", into_folder=True)
        convert_export(workbook.path, "meeting_list", f"{folder}/meetings.parquet", "parquet")
    finally:
        hook.close()
    return f"file://{folder}/meetings.parquet"


def _child(meetings: int, window: float, folder: str, given: bool = False) -> dict[str, Any]:
    """In the child: run the operator once against a fresh emulator; return what it measured."""

    from airflow.sdk.execution_time.context import OutletEventAccessors

    from airflow_provider_feishu_vc.testing.process import EmulatorProcess

    every = 3600
    with EmulatorProcess(
        export_delay=BUILD_SECONDS, rate_limit=100, rate_window=window, known_meetings_only=True, meeting_every=every
    ) as feishu:
        os.environ["AIRFLOW_CONN_FEISHU_VC_DEFAULT"] = feishu.connection(
            rate_limit_per_minute=100 * 60 / window, max_retries=8
        )
        from airflow_provider_feishu_vc.operators.attendance import FeishuVCMeetingParticipantsOperator

        upstream = _given_meetings(feishu, meetings, every, folder) if given else None
        earlier = feishu.stats()  # the upstream meeting list's requests are not the task's
        operator = FeishuVCMeetingParticipantsOperator(
            task_id="participants", destination=f"file://{folder}/participants.parquet", meetings=upstream,
            start_time=DAY_START, end_time=DAY_START + meetings * every, poll_interval=BUILD_SECONDS,
            progress_interval=float(os.environ.get("BENCH_PROGRESS", "30")),
        )  # fmt: skip
        context: Any = {"outlet_events": OutletEventAccessors()}
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        result = operator.execute(context)
        wall = time.monotonic() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        stats = feishu.stats()
    requests = stats["requests"] - earlier["requests"]
    refused = stats["by_status"].get("429", 0) - earlier["by_status"].get("429", 0)
    # the slowest API's N / limit, plus one export's build and one download; and the meeting list's, when exported
    bound = meetings / 100 * window + (BUILD_SECONDS + DOWNLOAD_SECONDS) * (1 if given else 2)
    return {
        "meetings": meetings, "window": window, "given": given, "wall_s": round(wall, 2), "rows": result["rows"],
        "landed": result["landed_meetings"], "requests": requests, "refused": refused,
        "calls_per_meeting": round(requests / meetings, 3), "reported": result["calls_per_exported_meeting"],
        "peak_rss_growth_mib": round((peak - before) / 1024, 1), "bound_s": round(bound, 2),
    }  # fmt: skip


def run_case(meetings: int, window: float = 6.0, given: bool = False) -> dict[str, Any]:
    """One case in a child process (its own memory); the parsed JSON it printed."""
    with tempfile.TemporaryDirectory(prefix="feishu-vc-attendance-bench-") as folder:
        child = subprocess.run(
            [sys.executable, __file__, "--child", "--meetings", str(meetings), "--window", str(window),
             "--folder", folder, *(["--given"] if given else [])],
            capture_output=True, text=True, timeout=3600,
            env={**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"},
        )  # fmt: skip
    if child.returncode != 0:
        raise RuntimeError(f"the attendance case failed:\n{child.stdout[-2000:]}\n{child.stderr[-3000:]}")
    return dict(json.loads(child.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meetings", type=int, default=60)
    parser.add_argument("--window", type=float, default=6.0)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--folder", default="")
    parser.add_argument("--given", action="store_true", help="the meeting list comes from upstream")
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(_child(arguments.meetings, arguments.window, arguments.folder, arguments.given)), flush=True)
        return
    print(json.dumps(run_case(arguments.meetings, arguments.window, arguments.given)))


if __name__ == "__main__":
    main()
