"""A day's attendance from one task (FeishuVCMeetingParticipantsOperator) against the emulator at Feishu's per-API
limits on a scaled clock (100 calls per ``window`` seconds per API: 6 s is ten times Feishu's minute).

Each case runs in a child process (its own peak memory; the emulator in another): the operator's ``execute`` for
N meetings, from the task's start (imports included) to the landed table. Reports wall time against the rate-limit
bound (the slowest API's N / limit, plus one export's build time and one download), calls per exported meeting,
and the task's peak RSS growth.

python benchmarks/attendance.py --meetings 60          # one case, printed as JSON
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


def _child(meetings: int, window: float, folder: str) -> dict[str, Any]:
    """In the child: run the operator once against a fresh emulator; return what it measured."""
    from collections import defaultdict
    from types import SimpleNamespace

    from airflow_provider_feishu_vc.testing.process import EmulatorProcess

    every = 3600
    with EmulatorProcess(
        export_delay=BUILD_SECONDS, rate_limit=100, rate_window=window, known_meetings_only=True, meeting_every=every
    ) as feishu:
        os.environ["AIRFLOW_CONN_FEISHU_VC_DEFAULT"] = feishu.connection(
            rate_limit_per_minute=100 * 60 / window, max_retries=8
        )
        from airflow_provider_feishu_vc.operators.attendance import FeishuVCMeetingParticipantsOperator

        operator = FeishuVCMeetingParticipantsOperator(
            task_id="participants", destination=f"file://{folder}/participants.parquet",
            start_time=DAY_START, end_time=DAY_START + meetings * every, poll_interval=BUILD_SECONDS,
            progress_interval=float(os.environ.get("BENCH_PROGRESS", "30")),
        )  # fmt: skip
        context: Any = {"outlet_events": defaultdict(lambda: SimpleNamespace(extra=None))}
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        result = operator.execute(context)
        wall = time.monotonic() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        stats = feishu.stats()
    return {
        "meetings": meetings, "window": window, "wall_s": round(wall, 2), "rows": result["rows"],
        "landed": result["landed_meetings"], "requests": stats["requests"], "refused": stats["by_status"].get("429", 0),
        "calls_per_meeting": round(stats["requests"] / meetings, 3), "reported": result["calls_per_exported_meeting"],
        "peak_rss_growth_mib": round((peak - before) / 1024, 1),
        # one API's N / limit, plus the meeting list's and the last export's build, plus a download
        "bound_s": round(meetings / 100 * window + BUILD_SECONDS + 0.5, 2),
    }  # fmt: skip


def run_case(meetings: int, window: float = 6.0) -> dict[str, Any]:
    """One case in a child process (its own memory); the parsed JSON it printed."""
    with tempfile.TemporaryDirectory(prefix="feishu-vc-attendance-bench-") as folder:
        child = subprocess.run(
            [sys.executable, __file__, "--child", "--meetings", str(meetings), "--window", str(window),
             "--folder", folder],
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
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(_child(arguments.meetings, arguments.window, arguments.folder)), flush=True)
        return
    print(json.dumps(run_case(arguments.meetings, arguments.window)))


if __name__ == "__main__":
    main()
