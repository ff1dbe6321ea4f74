"""Yesterday's attendance: every day, one table of who attended which Feishu meeting the day before, from one task.

``FeishuVCMeetingParticipantsOperator`` exports the run's data interval's meeting list, then the participant list
of every meeting in it (Feishu exports participants one meeting at a time), and lands ONE typed Parquet table in
``[feishu_vc] storage_base`` at ``<dag_id>/<run_id>/<task_id>/participants.parquet``: each participant's row with
its meeting's ``meeting_id``, ``meeting_no``, ``meeting_topic``, ``meeting_start_time`` and ``meeting_end_time`` in
front. Creates, status queries and downloads run at once, each at Feishu's limit of its own API (100 a minute); a
retry reuses every export and per-meeting part an earlier try left (a manifest beside the table). A meeting Feishu
refuses to export (121004, 121005) fails the task after all the others landed, unless ``allow_partial=True``: then
the table lands without it and ``participants.parquet.unexported.json`` lists it. Needs the ``tables`` extra.

Guide: docs/attendance.md.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_feishu_vc.compat import CronDataIntervalTimetable
from airflow_provider_feishu_vc.operators.attendance import FeishuVCMeetingParticipantsOperator

with DAG(
    dag_id="example_feishu_vc_attendance",
    schedule=CronDataIntervalTimetable("@daily", timezone="Asia/Shanghai"),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    tags=["feishu", "example"],
) as dag:
    # [START howto_operator_feishu_vc_attendance]
    FeishuVCMeetingParticipantsOperator(
        task_id="yesterdays_attendance",  # the range defaults to the run's data interval: yesterday
        output_format="parquet",
        allow_partial=False,
        timeout=6 * 60 * 60,
        retries=3,
        retry_delay=timedelta(minutes=2),
    )
    # [END howto_operator_feishu_vc_attendance]
