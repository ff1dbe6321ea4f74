"""The main job, end to end on this machine: the example DAGs against the local Feishu VC emulator.

Starts the emulator on a free loopback port, makes a throwaway AIRFLOW_HOME (SQLite), points the
``feishu_vc_default`` connection at the emulator through an environment variable, runs
``airflow dags test`` for yesterday on both example DAGs (three tasks: create, sensor, download; and the one-task
``FeishuVCExportOperator``, landing a typed Parquet table), checks that each deferred and resumed, and prints where
each file landed with its size: the xlsx's sheets and row counts, and the table's first rows with their types.
Exits non-zero on any failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pendulum

from airflow_provider_feishu_vc.testing import FeishuVCEmulator

REPO = Path(__file__).resolve().parent.parent
DAG_IDS = ("example_feishu_vc_export", "example_feishu_vc_one_task")
OUTPUT = REPO / "demo-output"
DEFER_MARKER = "deferring to the triggerer"


def airflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def sheet_rows(path: Path) -> dict[str, int]:
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True)
    return {sheet.title: sum(1 for _ in sheet.iter_rows()) - 1 for sheet in workbook.worksheets}


def show_table(path: Path, rows: int = 3) -> None:
    """The table's row count, then each column's name, type and first values."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    print(f"Table: {table.num_rows} rows, {table.num_columns} columns; the first {rows}:")
    head = table.slice(0, rows)
    width = max(len(name) for name in table.schema.names)
    for field, column in zip(table.schema, head.columns, strict=True):
        header = (field.metadata or {}).get(b"header", b"").decode()
        values = ", ".join("null" if v is None else str(v) for v in column.to_pylist())
        print(f"  {field.name:<{width}}  {field.type!s:<22} {values}" + (f"   [{header}]" if header else ""))


def run_dag(dag_id: str, logical_date: pendulum.DateTime, env: dict[str, str], home: Path) -> bool:
    """``airflow dags test`` one example DAG; check it deferred and landed a readable file; print the file."""
    print(f"Running airflow dags test {dag_id} {logical_date.isoformat()} ...")
    run = airflow(["dags", "test", dag_id, logical_date.isoformat()], env)
    log = run.stdout + run.stderr
    (home / f"{dag_id}.log").write_text(log)
    if run.returncode != 0 or "state=success" not in log:
        print(log[-6000:])
        print(f"FAILED: airflow dags test {dag_id} exited {run.returncode}")
        return False
    if DEFER_MARKER not in log:
        print(log[-6000:])
        print(f"FAILED: {dag_id} did not defer to the triggerer")
        return False
    files = sorted((OUTPUT / dag_id).glob("*/*/*.*"), key=lambda p: p.stat().st_mtime)
    if not files:
        print(log[-6000:])
        print(f"FAILED: no file under {OUTPUT / dag_id}")
        return False
    landed = files[-1]
    print(f"Exported file: {landed}")
    print(f"Size: {landed.stat().st_size} bytes")
    if landed.suffix == ".parquet":
        show_table(landed)
    else:
        for sheet, count in sheet_rows(landed).items():
            print(f"Sheet {sheet!r}: {count} data rows")
    return True


def main() -> int:
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="feishu-vc-demo-airflow-"))
    with FeishuVCEmulator(app_id="cli_demo_app", app_secret="demo-app-secret", export_delay=3) as feishu:
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__FEISHU_VC__STORAGE_BASE": OUTPUT.as_uri(),
            "AIRFLOW_CONN_FEISHU_VC_DEFAULT": feishu.connection(),
        }
        print(f"Feishu VC emulator at {feishu.url}; AIRFLOW_HOME={home}")
        try:
            migrate = airflow(["db", "migrate"], env)
            if migrate.returncode != 0:
                print(migrate.stdout[-3000:], migrate.stderr[-3000:], sep="\n")
                print("FAILED: airflow db migrate")
                return 1
            # A manual run at today 00:00 (Asia/Shanghai) covers the last whole day: [yesterday 00:00, today 00:00).
            logical_date = pendulum.now("Asia/Shanghai").start_of("day")
            for dag_id in DAG_IDS:
                if not run_dag(dag_id, logical_date, env, home):
                    return 1
            print(f"Emulator saw {feishu.token_requests()} token request(s) and {len(feishu.requests)} requests in all")
            print(f"Demo passed in {time.monotonic() - started:.1f} s")
            return 0
        finally:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
