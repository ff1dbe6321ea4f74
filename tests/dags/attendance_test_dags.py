"""DAGs of tests/test_attendance.py: one task landing every meeting's participants of a day as one table."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_feishu_vc.operators.attendance import FeishuVCMeetingParticipantsOperator

START = pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai")
ONE_DAY = {"start_time": "2026-11-23T00:00:00+08:00", "end_time": "2026-11-24T00:00:00+08:00"}
FAST = {"poll_interval": 0.5, "max_poll_interval": 2.0, "progress_interval": 1.0, "timeout": 300}


def attendance_dag(dag_id: str, **options: object) -> DAG:
    with DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False) as dag:
        FeishuVCMeetingParticipantsOperator(
            task_id="participants", retries=1, retry_delay=timedelta(0), **{**ONE_DAY, **FAST, **options}
        )
    return dag


parquet_dag = attendance_dag("feishu_vc_test_attendance")
csv_dag = attendance_dag("feishu_vc_test_attendance_csv", output_format="csv")
partial_dag = attendance_dag("feishu_vc_test_attendance_partial", allow_partial=True)
# The meeting list comes from upstream: a file's URI (here from the run's conf).
upstream_dag = attendance_dag("feishu_vc_test_attendance_upstream", meetings="{{ dag_run.conf['meetings'] }}")
# One deferral for all the exports: the worker creates them, one trigger waits, the resumed task downloads.
deferrable_dag = attendance_dag("feishu_vc_test_attendance_deferrable", deferrable=True)


class LosesTheWorkerOnceTheTableLanded(FeishuVCMeetingParticipantsOperator):
    """The first try's worker is lost right after the table became visible, before the task could succeed."""

    def finish(self, context, hook, target, parts, outcome):  # type: ignore[no-untyped-def]
        result = super().finish(context, hook, target, parts, outcome)
        if context["ti"].try_number == 1:
            raise RuntimeError("worker lost right after the table landed")
        return result


with DAG(dag_id="feishu_vc_test_attendance_landed_retry", schedule=None, start_date=START, catchup=False) as (
    landed_retry_dag
):
    LosesTheWorkerOnceTheTableLanded(task_id="participants", retries=1, retry_delay=timedelta(0), **{**ONE_DAY, **FAST})
