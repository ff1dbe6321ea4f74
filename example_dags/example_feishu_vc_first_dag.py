"""A first DAG: every day, export yesterday's Feishu meetings into your storage as a Parquet table, in one task.

Runs as pasted once the provider is installed with its ``tables`` extra and a ``feishu_vc`` connection exists:
``docs/first-dag.md`` shows this code inline (a test keeps the two the same) and runs it against the emulator.
"""

# [START first_dag]
from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_feishu_vc import FeishuVCExportOperator

# Data intervals for a cron schedule (also in airflow.sdk from Airflow 3.2)
from airflow_provider_feishu_vc.compat import CronDataIntervalTimetable

with DAG(
    dag_id="feishu_vc_first_dag",
    # Each run exports its data interval: here yesterday, in Shanghai.
    schedule=CronDataIntervalTimetable("@daily", timezone="Asia/Shanghai"),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
) as dag:
    FeishuVCExportOperator(
        task_id="export_meetings",
        export_type="meeting_list",
        output_format="parquet",  # a typed table; leave it out for Feishu's xlsx
        deferrable=True,  # wait in the triggerer, not in a worker slot
    )
# [END first_dag]
