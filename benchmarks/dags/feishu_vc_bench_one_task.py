"""Benchmark DAGs (benchmarks/attendance_dag.py): a day's participants from ONE task, polling in its worker (the
operator's default) or deferring once to the triggerer. The range and the scaled clock come from the environment
the benchmark starts the deployment with."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_feishu_vc.operators.attendance import FeishuVCMeetingParticipantsOperator

MEETINGS = int(os.environ.get("FEISHU_VC_BENCH_MEETINGS", "10"))
DAY_START = int(os.environ.get("FEISHU_VC_BENCH_DAY_START", "1795363200"))
EVERY = int(os.environ.get("FEISHU_VC_BENCH_EVERY", "3600"))
BUILD_SECONDS = float(os.environ.get("FEISHU_VC_BENCH_BUILD_SECONDS", "2"))

for dag_id, deferrable in (("feishu_vc_bench_one_task", False), ("feishu_vc_bench_one_task_deferrable", True)):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        default_args={"retries": 3, "retry_delay": timedelta(seconds=5)},  # as the mapped DAG's
    ):
        FeishuVCMeetingParticipantsOperator(
            task_id="participants",
            start_time=DAY_START,
            end_time=DAY_START + MEETINGS * EVERY,
            poll_interval=BUILD_SECONDS,
            deferrable=deferrable,
        )
