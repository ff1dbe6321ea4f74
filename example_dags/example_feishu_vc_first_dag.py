"""A first DAG: every day, export yesterday's Feishu meetings into your storage, in one task.

Runs as pasted once the provider is installed and a ``feishu_vc`` connection exists (see the docs' "First DAG").
"""

# [START first_dag]
from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_feishu_vc import FeishuVCExportOperator
from airflow_provider_feishu_vc.compat import CronDataIntervalTimetable  # airflow.sdk from 3.2, on 3.1 too

with DAG(
    dag_id="feishu_vc_first_dag",
    # A timetable with data intervals: each run exports its interval, here yesterday in Shanghai.
    schedule=CronDataIntervalTimetable("@daily", timezone="Asia/Shanghai"),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
):
    FeishuVCExportOperator(
        task_id="export_meetings",
        export_type="meeting_list",
        deferrable=True,  # wait in the triggerer, not in a worker slot
    )
# [END first_dag]
