"""Every day, export the previous day's Feishu meetings and store the xlsx file.

Three steps, one per task:

1. ``create_export`` asks Feishu to export the meeting list. With no times given, the range is the DAG run's
   data interval: a ``@daily`` run exports exactly its day, in the DAG's time zone. (Airflow 3's plain
   ``"@daily"`` string gives runs an empty data interval unless ``[scheduler] create_cron_data_intervals`` is
   on, so the schedule is spelled out as a ``CronDataIntervalTimetable``.)
2. ``wait_for_export`` waits until Feishu has built the file. ``deferrable=True`` hands the waiting to the
   triggerer, so no worker slot is held while Feishu works.
3. ``download_export`` streams the file into the DAG's storage: ``[feishu_vc] storage_base`` (default: a folder
   under AIRFLOW_HOME), at ``<dag_id>/<run_id>/<task_id>/<file name>``.

Point the ``feishu_vc_default`` connection at your app: login = App ID, password = App Secret, host =
``https://open.feishu.cn`` (or ``lark``). The app needs the ``vc:export`` scope; see the docs' connection guide.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_feishu_vc.compat import CronDataIntervalTimetable
from airflow_provider_feishu_vc.operators.feishu_vc import (
    FeishuVCCreateExportOperator,
    FeishuVCDownloadExportOperator,
)
from airflow_provider_feishu_vc.sensors.feishu_vc import FeishuVCExportSensor

with DAG(
    dag_id="example_feishu_vc_export",
    schedule=CronDataIntervalTimetable("@daily", timezone="Asia/Shanghai"),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    tags=["feishu", "example"],
) as dag:
    # [START howto_operator_feishu_vc_create_export]
    create_export = FeishuVCCreateExportOperator(task_id="create_export", export_type="meeting_list")
    # [END howto_operator_feishu_vc_create_export]

    # [START howto_sensor_feishu_vc_export]
    wait_for_export = FeishuVCExportSensor(
        task_id="wait_for_export",
        export_task_id=create_export.output,  # the export_task_id returned by create_export
        deferrable=True,
        poke_interval=5,
        timeout=60 * 60,
    )
    # [END howto_sensor_feishu_vc_export]

    # [START howto_operator_feishu_vc_download_export]
    download_export = FeishuVCDownloadExportOperator(
        task_id="download_export",
        file_token=wait_for_export.output,  # {"export_task_id": ..., "file_token": ...}
    )
    # [END howto_operator_feishu_vc_download_export]
