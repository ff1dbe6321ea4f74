"""Many exports waited on at once through one connection: one create task, then a mapped deferrable sensor."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.sensors.feishu_vc import FeishuVCExportSensor

WAITS = int(os.environ.get("E2E_WAITS", "200"))

with DAG(
    dag_id="feishu_vc_e2e_many_waits",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_tasks=WAITS,
) as dag:

    @task
    def create_exports() -> list[str]:
        """One process creates them all: its calls share the app's rate budget, so none is refused."""
        end = pendulum.now("UTC").start_of("hour")
        hook = FeishuVCHook()
        return [
            hook.create_export("meeting_list", start_time=end.subtract(hours=1), end_time=end) for _ in range(WAITS)
        ]

    FeishuVCExportSensor.partial(task_id="wait_for_export", deferrable=True, poke_interval=5, timeout=1800).expand(
        export_task_id=create_exports()
    )
