"""Import cost: what importing the operator, sensor and hook modules adds on top of ``import airflow.sdk``."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "airflow_provider_feishu_vc"
PROBE = r"""
import json, sys, time, psutil
process = psutil.Process()
import airflow.sdk
before_modules, rss, started = set(sys.modules), process.memory_info().rss, time.perf_counter()
import airflow_provider_feishu_vc.operators.feishu_vc
import airflow_provider_feishu_vc.sensors.feishu_vc
import airflow_provider_feishu_vc.hooks.feishu_vc
seconds = time.perf_counter() - started
added = sorted(set(sys.modules) - before_modules)
print(json.dumps({"seconds": seconds, "rss": process.memory_info().rss - rss, "added": added}))
"""
WATCHED = (
    "httpx", "urllib3", "anyio", "requests.adapters", "openpyxl", "airflow.triggers.base", "uvicorn", "starlette"
)  # fmt: skip


def run(repeats: int = 7) -> dict:
    # As installed from a wheel: pip and uv write the bytecode then. This checkout is an editable install and the
    # machine sets PYTHONDONTWRITEBYTECODE, so without this each probe would compile the provider's sources.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(PACKAGE)], check=True)
    samples = [
        json.loads(
            subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(repeats)
    ]
    added = samples[0]["added"]
    return {
        "samples": [s["seconds"] * 1000 for s in samples],
        "ms": statistics.median(s["seconds"] for s in samples) * 1000,
        "kib": statistics.median(s["rss"] for s in samples) / 1024,
        "modules": len(added),
        "heavy": [m for m in added if m.split(".")[0] in {w.split(".")[0] for w in WATCHED} and m.startswith(WATCHED)],
    }
