"""One xlsx -> Parquet conversion in a fresh process, timed after a warm-up on a small file of the same kind, with the
peak memory growth of this process and every process it starts (our sheet reader runs in a child).

python benchmarks/_table_worker.py TOOL SOURCE WARMUP OUT   ->   one JSON line: seconds, cpu_seconds, peak_growth, rows,
and (ours) the helper's phases
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


#: What our sheet reader's helper timed in the last conversion: read, total, cpu, counting_cpu (seconds).
PHASES: dict[str, float] = {}


def ours(source: str, out: str) -> int:
    """What the operators do: the export file to a typed Parquet file (the sheet's reader writes it)."""
    from airflow_provider_feishu_vc.tables import convert_export, workbook

    rows, _ = convert_export(source, "meeting_list", out, "parquet")
    PHASES.clear()
    PHASES.update(workbook.LAST_TIMINGS)
    return rows


def ours_uncounted(source: str, out: str) -> int:
    """``ours`` with the run-time row count left out in the sheet reader (``uncounted/sitecustomize.py``): what the
    count costs is the difference."""
    return ours(source, out)


def floor(source: str, out: str) -> int:
    """fastexcel's to_arrow() of the same sheet, written as it is: the least any typed reader can cost."""
    import fastexcel
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_batches([fastexcel.read_excel(source).load_sheet(0).to_arrow()])
    pq.write_table(table, out, compression="zstd")
    return table.num_rows


def polars(source: str, out: str) -> int:
    import polars as pl

    frame = pl.read_excel(source, engine="calamine")
    frame.write_parquet(out)
    return frame.height


def pandas(source: str, out: str) -> int:
    import pandas as pd

    frame = pd.read_excel(source, engine="openpyxl")
    frame.to_parquet(out)
    return len(frame)


TOOLS = {"ours": ours, "ours-uncounted": ours_uncounted, "floor": floor, "polars": polars, "pandas": pandas}


def tree_cpu_seconds() -> float:
    """The CPU time (user and system) this process and every process it started have spent so far, ended ones
    included (our sheet reader's helper process lives from the warm-up on)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:4])  # user, system, and the ended children's
    for process in me.children(recursive=True):
        try:
            total += sum(process.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


class TreeMemory:
    """Samples the resident memory of this process and all its descendants every few milliseconds."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        total = 0
        for process in [self.me, *self.me.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.003)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    tool, source, warmup, out = sys.argv[1:5]
    if tool == "ours-uncounted":  # the sheet reader's helper process starts with the count left out
        uncounted = str(Path(__file__).with_name("uncounted"))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [uncounted, os.environ.get("PYTHONPATH")]))
    convert = TOOLS[tool]
    convert(warmup, out)  # imports, first calls, our sheet reader's helper process
    baseline = TreeMemory().now()
    with TreeMemory() as memory:
        started, cpu_started = time.perf_counter(), tree_cpu_seconds()
        rows = convert(source, out)
        seconds, cpu_seconds = time.perf_counter() - started, tree_cpu_seconds() - cpu_started
    growth = max(0, memory.peak - baseline)
    measured = {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_growth": growth, "rows": rows, "phases": PHASES}
    print(json.dumps(measured))


if __name__ == "__main__":
    main()
