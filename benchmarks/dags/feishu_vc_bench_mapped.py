"""Benchmark DAG (benchmarks/attendance_dag.py): a day's participants the way a user builds it today without the
attendance operator: export the meeting list as a typed table, turn its rows into one participant_list request
each, and map one deferrable ``FeishuVCExportOperator`` per meeting (each lands that meeting's typed table). The
user's last step, joining the per-meeting tables into one, is left out: it would only add to this DAG's cost."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_feishu_vc.operators.feishu_vc import FeishuVCExportOperator

MEETINGS = int(os.environ.get("FEISHU_VC_BENCH_MEETINGS", "10"))
DAY_START = int(os.environ.get("FEISHU_VC_BENCH_DAY_START", "1795363200"))
EVERY = int(os.environ.get("FEISHU_VC_BENCH_EVERY", "3600"))
BUILD_SECONDS = float(os.environ.get("FEISHU_VC_BENCH_BUILD_SECONDS", "2"))

#: Retries as the sensor guide advises for deferrable tasks (Airflow 3.1-3.3's deferral race fails a resumed task
#: when a trigger fires before the scheduler has read the deferral, as 2-s builds make likely); a short delay, which
#: favours this DAG's wall time. The one-task DAGs have the same.
RETRIES = {"retries": 3, "retry_delay": timedelta(seconds=5)}

with DAG(
    dag_id="feishu_vc_bench_mapped",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=RETRIES,
):
    meeting_list = FeishuVCExportOperator(
        task_id="meeting_list",
        export_type="meeting_list",
        start_time=DAY_START,
        end_time=DAY_START + MEETINGS * EVERY,
        output_format="parquet",
        deferrable=True,
        poll_interval=BUILD_SECONDS,
    )

    @task
    def participant_requests(landed: dict[str, Any]) -> list[dict[str, Any]]:
        """One participant_list request per row of the meeting list: its number (the typed table's ``meeting_id``
        column, Feishu's 会议ID) and times."""
        import pyarrow.parquet as pq
        from airflow.sdk import ObjectStoragePath

        with ObjectStoragePath(landed["uri"]).open("rb") as handle:
            rows = pq.read_table(handle, columns=["meeting_id", "meeting_start_time", "meeting_end_time"]).to_pylist()
        return [
            {
                "meeting_no": row["meeting_id"],
                "meeting_start_time": int(row["meeting_start_time"].timestamp()),
                "meeting_end_time": int(row["meeting_end_time"].timestamp()),
            }
            for row in rows
        ]

    FeishuVCExportOperator.partial(
        task_id="participants",
        export_type="participant_list",
        output_format="parquet",
        deferrable=True,
        poll_interval=BUILD_SECONDS,
    ).expand_kwargs(participant_requests(meeting_list.output))

with DAG(
    dag_id="feishu_vc_bench_warm_up",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=RETRIES,
):
    # Run once before anything is measured: the API server's, workers' and triggerer's first-use costs (lazy
    # imports, connection pools) belong to the deployment, not to whichever DAG happens to run first.
    FeishuVCExportOperator(
        task_id="meeting_list",
        export_type="meeting_list",
        start_time=DAY_START,
        end_time=DAY_START + EVERY,
        output_format="parquet",
        deferrable=True,
        poll_interval=BUILD_SECONDS,
    )
