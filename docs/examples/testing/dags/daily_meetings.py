"""The DAG under test: yesterday's meetings, as a typed Parquet table."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_feishu_vc import FeishuVCExportOperator
from airflow_provider_feishu_vc.compat import CronDataIntervalTimetable

with DAG(
    dag_id="daily_meetings",
    schedule=CronDataIntervalTimetable("@daily", timezone="Asia/Shanghai"),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
):  # no `as dag` needed: the test finds the DAG by its id
    FeishuVCExportOperator(
        task_id="export_meetings", export_type="meeting_list", deferrable=True, poll_interval=1, timeout=300
    )
