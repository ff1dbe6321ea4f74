"""The DAGs the Celery fleet runs (make e2e-celery): mapped one-task exports into S3, the same as a user, one
export whose download a test kills, and a day's attendance (every meeting's participants as one table) whose
worker a test kills. Files land in ``[feishu_vc] storage_base`` (an S3 URL with its connection)."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG

from airflow_provider_feishu_vc import FeishuVCExportOperator, FeishuVCMeetingParticipantsOperator

MAPPED = int(os.environ.get("FLEET_EXPORTS", "20"))
AS_USER = int(os.environ.get("FLEET_USER_EXPORTS", "6"))
DAYS = [
    {"start_time": f"2026-10-{day:02d}T00:00:00+08:00", "end_time": f"2026-10-{day + 1:02d}T00:00:00+08:00"}
    for day in range(1, MAPPED + 1)
]
# A lost worker's try fails by heartbeat timeout; the retry resumes the export on another worker.
RETRIES = {"retries": 2, "retry_delay": dt.timedelta(seconds=2)}

with DAG("feishu_vc_fleet_mapped", schedule=None, catchup=False, default_args=RETRIES):
    FeishuVCExportOperator.partial(
        task_id="export", export_type="meeting_list", deferrable=True, poll_interval=3
    ).expand_kwargs(DAYS)

with DAG("feishu_vc_fleet_user", schedule=None, catchup=False, default_args=RETRIES):
    FeishuVCExportOperator.partial(
        task_id="export", export_type="meeting_list", deferrable=True, poll_interval=3,
        feishu_vc_conn_id="feishu_vc_user",
    ).expand_kwargs(DAYS[:AS_USER])  # fmt: skip

with DAG("feishu_vc_fleet_kill", schedule=None, catchup=False, default_args=RETRIES):
    FeishuVCExportOperator(task_id="export", export_type="meeting_list", deferrable=True, poll_interval=2, **DAYS[0])

# One day's attendance from its own emulator (connection feishu_vc_attendance): the meeting list of the day, then
# one participant export per meeting, landed as one table; the worker is killed mid-run and a retry resumes.
with DAG("feishu_vc_fleet_attendance", schedule=None, catchup=False, default_args=RETRIES):
    FeishuVCMeetingParticipantsOperator(
        task_id="attendance", feishu_vc_conn_id="feishu_vc_attendance", start_time="2026-11-23T00:00:00+08:00",
        end_time="2026-11-24T00:00:00+08:00", poll_interval=2, max_poll_interval=2, progress_interval=5, timeout=600,
        deferrable=False,  # the worker runs the whole day: the test kills it mid-run
    )  # fmt: skip
