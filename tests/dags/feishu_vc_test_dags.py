"""DAGs the tests run with dag.test(): the sensor in each mode, and a bad-input DAG."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_feishu_vc.compat import CronDataIntervalTimetable
from airflow_provider_feishu_vc.operators.feishu_vc import (
    FeishuVCCreateExportOperator,
    FeishuVCDownloadExportOperator,
    FeishuVCExportOperator,
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


# -- the one-task operator, and retries that resume ------------------------------------------------------------

ONE_DAY = {"start_time": "2026-11-23T00:00:00+08:00", "end_time": "2026-11-24T00:00:00+08:00"}
RETRY_AT_ONCE = {"retries": 1, "retry_delay": timedelta(0)}


def one_task_dag(dag_id: str, **options: object) -> DAG:
    with DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False) as dag:
        FeishuVCExportOperator(
            task_id="export", export_type="meeting_list", poll_interval=0.2, timeout=60,
            **{**ONE_DAY, **RETRY_AT_ONCE, **options},
        )  # fmt: skip
    return dag


one_task_polling_dag = one_task_dag("feishu_vc_test_one_task_polling", deferrable=False)
one_task_deferrable_dag = one_task_dag("feishu_vc_test_one_task_deferrable", deferrable=True)

# Typed tables: the one-task operator landing Parquet, and the three-task shape landing CSV.
with DAG(dag_id="feishu_vc_test_one_task_parquet", schedule=None, start_date=START, catchup=False) as parquet_dag:
    FeishuVCExportOperator(
        task_id="export", export_type="meeting_list", poll_interval=0.2, timeout=60, deferrable=True,
        output_format="parquet", **ONE_DAY,
    )  # fmt: skip

with DAG(dag_id="feishu_vc_test_csv", schedule=None, start_date=START, catchup=False) as csv_dag:
    csv_create = FeishuVCCreateExportOperator(
        task_id="create_export", export_type="participant_list", meeting_no="123456789",
        meeting_start_time=ONE_DAY["start_time"], meeting_end_time=ONE_DAY["end_time"],
    )  # fmt: skip
    csv_wait = FeishuVCExportSensor(
        task_id="wait_for_export", export_task_id=csv_create.output, poke_interval=0.2, timeout=60, deferrable=False
    )
    FeishuVCDownloadExportOperator(
        task_id="download_export", file_token=csv_wait.output, export_type="participant_list", output_format="csv"
    )

with DAG(
    dag_id="feishu_vc_test_one_task_mapped", schedule=None, start_date=START, catchup=False
) as one_task_mapped_dag:
    # Three exports in one run, each into the default folder, whatever their files are called.
    FeishuVCExportOperator.partial(
        task_id="export", export_type="meeting_list", poll_interval=0.2, timeout=60, deferrable=False, **ONE_DAY
    ).expand(meeting_no=["100000001", "100000002", "100000003"])


class CreateThenLoseTheWorker(FeishuVCCreateExportOperator):
    """Starts its export, then its first try dies, as when a worker is lost right after the create."""

    def execute(self, context: Any) -> str:
        export_task_id = super().execute(context)
        if context["ti"].try_number == 1:
            raise RuntimeError(f"worker lost after starting export {export_task_id}")
        return export_task_id


with DAG(dag_id="feishu_vc_test_create_retry", schedule=None, start_date=START, catchup=False) as create_retry_dag:
    CreateThenLoseTheWorker(task_id="create_export", export_type="meeting_list", **ONE_DAY, **RETRY_AT_ONCE)


# -- acting as a user: every task a new process, the user tokens shared through the metadata DB --------------

with DAG(dag_id="feishu_vc_test_user_token", schedule=None, start_date=START, catchup=False) as user_token_dag:
    as_user = {"feishu_vc_conn_id": "feishu_vc_user"}
    user_create = FeishuVCCreateExportOperator(
        task_id="create_export", export_type="meeting_list", **ONE_DAY, **as_user
    )
    # Polling in the worker: dag.test() runs a deferred trigger in line, where only environment connections are
    # visible; the trigger's side of the shared tokens is tested on its own (tests/test_user_tokens.py).
    user_wait = FeishuVCExportSensor(
        task_id="wait_for_export", export_task_id=user_create.output, poke_interval=0.5, timeout=60, deferrable=False,
        **as_user,
    )  # fmt: skip
    FeishuVCDownloadExportOperator(
        task_id="download_export", file_token=user_wait.output, destination="memory://feishu-vc-user/{{ run_id }}/",
        **as_user,
    )  # fmt: skip
