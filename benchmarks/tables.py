"""xlsx -> Parquet at the reader's pace: a meeting list from the emulator, converted by ours (typed), by the floor
(fastexcel's to_arrow() + pyarrow's write_table, no typing), by polars (read_excel + write_parquet, no typing) and by
pandas (openpyxl + to_parquet). Each run is a fresh process, timed after a warm-up on a small file (imports and first
calls excluded for every tool alike), with the peak memory growth of its whole process tree.

Workbooks are generated once by the emulator (XlsxWriter: a million rows take about two minutes) and cached.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("_table_worker.py")
CACHE = Path(os.environ.get("BENCH_CACHE") or Path(tempfile.gettempdir()) / "feishu-vc-bench-cache")
APP_ID, APP_SECRET = "cli_bench", "bench-secret"


@dataclass
class ToolRuns:
    tool: str
    seconds: list[float]
    peak_mib: list[float]
    #: CPU time (user and system) of the tool's whole process tree, per run.
    cpu_seconds: list[float] = field(default_factory=list)
    #: Ours: the share of the sheet reader's CPU time its run-time count took, per run (counting_cpu / cpu).
    counting_share: list[float] = field(default_factory=list)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_peak_mib(self) -> float:
        return statistics.median(self.peak_mib)


def meeting_list(rows: int) -> Path:
    """A meeting list of ``rows`` rows, as the emulator serves it (cached across runs)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"meeting_list_{rows}.xlsx"
    if path.exists():
        return path
    from airflow_provider_feishu_vc.testing.process import EmulatorProcess

    with EmulatorProcess(app_id=APP_ID, app_secret=APP_SECRET, export_delay=0, rows=rows) as emulator:
        token = httpx.post(
            emulator.url + "/open-apis/auth/v3/tenant_access_token/internal",
            json={"app_id": APP_ID, "app_secret": APP_SECRET},
        ).json()["tenant_access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        day = {"start_time": "1764000000", "end_time": "1764086400"}
        created = httpx.post(emulator.url + "/open-apis/vc/v1/exports/meeting_list", json=day, headers=auth).json()
        status = httpx.get(f"{emulator.url}/open-apis/vc/v1/exports/{created['data']['task_id']}", headers=auth)
        file_token = urllib.parse.quote(status.json()["data"]["file_token"], safe="")
        partial = path.with_suffix(".part")
        with httpx.stream(
            "GET", f"{emulator.url}/open-apis/vc/v1/exports/download?file_token={file_token}", headers=auth,
            timeout=None,
        ) as answer, partial.open("wb") as out:  # fmt: skip
            answer.raise_for_status()
            for chunk in answer.iter_bytes(2**20):
                out.write(chunk)
        partial.rename(path)
    return path


def run_tool(tool: str, source: Path, warmup: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, str(WORKER), tool, str(source), str(warmup), f"{folder}/out.parquet"],
            capture_output=True, text=True, check=False, cwd=REPO, timeout=3600,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_size(rows: int, repeats: int, tools: tuple[str, ...]) -> dict[str, ToolRuns]:
    source, warmup = meeting_list(rows), meeting_list(1000)
    runs = {tool: ToolRuns(tool, [], []) for tool in tools}
    for _ in range(repeats):  # interleaved, so that a machine whose speed drifts affects every tool alike
        for tool in tools:
            measured = run_tool(tool, source, warmup)
            if measured["rows"] != rows:
                raise RuntimeError(f"{tool} read {measured['rows']} rows of {rows}")
            runs[tool].seconds.append(measured["seconds"])
            runs[tool].cpu_seconds.append(measured["cpu_seconds"])
            phases = measured.get("phases") or {}
            if phases.get("cpu"):
                runs[tool].counting_share.append(phases.get("counting_cpu", 0.0) / phases["cpu"])
            runs[tool].peak_mib.append(measured["peak_growth"] / 2**20)
    return runs


def row_count_seconds(rows: int) -> float:
    """CPU seconds the run-time row count spends on the ``rows``-row meeting list: counting each piece's row and
    cell elements (``counting.counted``, in a thread of its own while the piece is read) plus counting the rows read
    with a value (``reader.rows_with_values``), both timed directly in this process over the same pieces ``ours``
    reads.
    Only the count is timed: cutting and reading, which the table needs anyway, are not."""
    import time

    import fastexcel
    import pyarrow as pa

    from airflow_provider_feishu_vc.tables import counting, pieces, reader

    spent = 0.0
    original = counting._elements

    def timed_count(text: bytes, start: int, end: int, previous: int = 0) -> object:
        nonlocal spent
        began = time.perf_counter()
        try:
            return original(text, start, end, previous)
        finally:
            spent += time.perf_counter() - began

    counting._elements = timed_count  # type: ignore[assignment]
    try:
        for piece in pieces.pieces(str(meeting_list(rows)), 0):
            counting.counted(piece)
            cells = pa.Table.from_batches([
                fastexcel.read_excel(piece.source).load_sheet(
                    piece.sheet, header_row=None, dtypes="string", skip_whitespace_tail_rows=True, eager=True
                )
            ])  # fmt: skip
            began = time.perf_counter()
            reader.rows_with_values(cells)
            spent += time.perf_counter() - began
    finally:
        counting._elements = original  # type: ignore[assignment]
    return spent
