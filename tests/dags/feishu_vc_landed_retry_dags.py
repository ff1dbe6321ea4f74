"""DAGs whose landing task loses its worker on its first try right after the file landed (issue 36, finding 3):
every operator shape, built for a destination the test picks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_feishu_vc.operators.destinations import landed_uri
from airflow_provider_feishu_vc.operators.feishu_vc import (
    FeishuVCCreateExportOperator,
    FeishuVCDownloadExportOperator,
    FeishuVCExportOperator,
)
from airflow_provider_feishu_vc.sensors.feishu_vc import FeishuVCExportSensor

START = pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai")
ONE_DAY = {"start_time": "2026-11-23T00:00:00+08:00", "end_time": "2026-11-24T00:00:00+08:00"}
RETRY_AT_ONCE = {"retries": 1, "retry_delay": timedelta(0)}
SHAPES = ("one task, polling", "one task, deferrable", "three tasks, poke", "three tasks, deferrable")


class LoseTheWorkerOnceLanded:
    """The first try dies right after its file became visible, before anything after it ran: no state written,
    no result returned (as a worker lost at that moment)."""

    def announce(self, context: Any, result: Any, export_task_id: str | None) -> Any:
        if context["ti"].try_number == 1:
            raise RuntimeError(f"worker lost right after the file landed at {landed_uri(result)}")
        return super().announce(context, result, export_task_id)  # type: ignore[misc]


class DownloadLosingTheWorker(LoseTheWorkerOnceLanded, FeishuVCDownloadExportOperator):
    pass


class ExportLosingTheWorker(LoseTheWorkerOnceLanded, FeishuVCExportOperator):
    pass


def dag_id(shape: str) -> str:
    return "feishu_vc_test_landed_" + "".join(c if c.isalnum() else "_" for c in shape).replace("__", "_")


def landed_retry_dag(shape: str) -> DAG:
    """``shape`` is one of :data:`SHAPES`; the file lands at the run's ``conf["destination"]`` (a fixed name, a URI
    that may name its connection: ``s3://conn@bucket/key``), without overwrite."""
    where = {"destination": "{{ dag_run.conf['destination'] }}", "into_folder": False}
    deferrable = shape.endswith("deferrable")
    with DAG(dag_id=dag_id(shape), schedule=None, start_date=START, catchup=False) as dag:
        if shape.startswith("one task"):
            ExportLosingTheWorker(
                task_id="export", export_type="meeting_list", poll_interval=0.2, timeout=60, deferrable=deferrable,
                **ONE_DAY, **RETRY_AT_ONCE, **where,
            )  # fmt: skip
        else:
            create = FeishuVCCreateExportOperator(task_id="create_export", export_type="meeting_list", **ONE_DAY)
            wait = FeishuVCExportSensor(
                task_id="wait_for_export", export_task_id=create.output, poke_interval=0.2, timeout=60,
                deferrable=deferrable,
            )  # fmt: skip
            DownloadLosingTheWorker(
                task_id="download_export", file_token=wait.output, export_type="meeting_list", **RETRY_AT_ONCE,
                **where,
            )  # fmt: skip
    return dag


DAGS = {shape: landed_retry_dag(shape) for shape in SHAPES}
one_task_polling_dag, one_task_deferrable_dag, three_tasks_poke_dag, three_tasks_deferrable_dag = DAGS.values()
