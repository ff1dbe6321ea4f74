"""DAGs the tests run with dag.test(): the sensor in each mode, and a bad-input DAG."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_feishu_vc.compat import CronDataIntervalTimetable
from airflow_provider_feishu_vc.operators.feishu_vc import (
    FeishuVCCreateExportOperator,
    FeishuVCDownloadExportOperator,
)
from airflow_provider_feishu_vc.sensors.feishu_vc import FeishuVCExportSensor

START = pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai")


def export_dag(dag_id: str, **sensor_options: object) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=CronDataIntervalTimetable("@daily", timezone="Asia/Shanghai"),
        start_date=START,
        catchup=False,
    ) as dag:
        create = FeishuVCCreateExportOperator(task_id="create_export", export_type="meeting_list")
        wait = FeishuVCExportSensor(
            task_id="wait_for_export", export_task_id=create.output, poke_interval=0.2, timeout=60, **sensor_options
        )
        FeishuVCDownloadExportOperator(
            task_id="download_export", file_token=wait.output, destination="memory://feishu-vc-tests/{{ run_id }}/"
        )
    return dag


poke_dag = export_dag("feishu_vc_test_poke", deferrable=False, mode="poke")
reschedule_dag = export_dag("feishu_vc_test_reschedule", deferrable=False, mode="reschedule")
deferrable_dag = export_dag("feishu_vc_test_deferrable", deferrable=True)


with DAG(dag_id="feishu_vc_test_soft_fail", schedule=None, start_date=START, catchup=False) as soft_fail_dag:
    FeishuVCExportSensor(
        task_id="wait_for_export", export_task_id="7111325589855797267", poke_interval=0.2, timeout=1,
        deferrable=True, soft_fail=True,
    )  # fmt: skip
