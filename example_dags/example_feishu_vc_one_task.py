"""Every day, export the previous day's Feishu meetings into storage in one task, as a typed Parquet table.

``FeishuVCExportOperator`` creates the export, waits for it (deferred to the triggerer: no worker slot is held
while Feishu builds the file) and, when it resumes, downloads the file and lands it as Parquet in
``[feishu_vc] storage_base`` at ``<dag_id>/<run_id>/<task_id>/<file name>.parquet``: Feishu's Chinese headers
become its JSON field names, times ``timestamp[us, UTC]``, durations seconds, 是 / 否 booleans (the ``tables``
extra: ``pip install "airflow-provider-feishu-vc[tables]"``). It returns the table's URI, row count and schema
fingerprint, and updates the task's asset with them. Leave ``output_format`` out to land Feishu's xlsx as it is.

With ``retries``, a retry picks up the export an earlier try started (Airflow 3.3 keeps it in the task's
state): a download cut by a lost worker is fetched again from the same export, a failed export is created anew.
On Airflow 3.1 and 3.2 a retry starts a new export.

The same export in three visible steps (create, sensor, download) is ``example_feishu_vc_export``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_feishu_vc.compat import CronDataIntervalTimetable
from airflow_provider_feishu_vc.operators.feishu_vc import FeishuVCExportOperator

with DAG(
    dag_id="example_feishu_vc_one_task",
    schedule=CronDataIntervalTimetable("@daily", timezone="Asia/Shanghai"),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    tags=["feishu", "example"],
) as dag:
    # [START howto_operator_feishu_vc_export]
    FeishuVCExportOperator(
        task_id="export_meetings",
        export_type="meeting_list",  # the range defaults to the run's data interval: yesterday
        output_format="parquet",
        deferrable=True,
        poll_interval=5,
        timeout=60 * 60,
        retries=2,
        retry_delay=timedelta(minutes=1),
    )
    # [END howto_operator_feishu_vc_export]
