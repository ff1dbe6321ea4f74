"""make fuzz: the property tests of every boundary with the deep profile (at least 10,000 examples each), then the
tally: boundary, examples tried, distinct errors seen, failures.

python scripts/fuzz.py                 # deep, random examples
python scripts/fuzz.py -k workbooks    # one group (pytest's -k)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "fuzz.json"
        env = {**os.environ, "FEISHU_VC_FUZZ_PROFILE": "deep", "FEISHU_VC_FUZZ_REPORT": str(report)}
        # One boundary's 10,000 examples can take 10-15 minutes on this 2-core machine: pytest-timeout's 300 s (a
        # bound for the quick profile) would cut a deep run mid-read; an hour still ends a hang.
        command = [sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-p", "no:cacheprovider", "--timeout=3600"]
        command += argv
        result = subprocess.run(command, cwd=REPO, env=env, check=False)
        tally = json.loads(report.read_text()) if report.exists() else {}
    rows = [("boundary", "examples tried", "distinct errors seen", "failures")]
    rows += [(name, str(e["examples"]), str(e["distinct_errors"]), str(e["failures"])) for name, e in tally.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print()
    for index, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    total = sum(int(e["examples"]) for e in tally.values())
    failures = sum(int(e["failures"]) for e in tally.values())
    print(
        f"\n{total} examples over {len(tally)} boundaries, {failures} failures, in {time.monotonic() - started:.0f} s"
    )
    return result.returncode or (1 if failures else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
