"""The destination is checked before an export is spent on it (and again at landing): a path under a regular file,
a folder the worker cannot write to, a taken file without ``overwrite``, a missing bucket are each refused as a
``FeishuVCConfigError`` naming ``destination``, and Feishu never builds the export."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
from airflow_provider_feishu_vc.compat import AirflowFailException, TaskDeferred
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.operators.feishu_vc import FeishuVCDownloadExportOperator, FeishuVCExportOperator
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from tests.conftest import DAGS_FOLDER, S3_CONN_ID, load_dag_file
from tests.s3 import S3Server

CREATE_PATH = "/open-apis/vc/v1/exports/meeting_list"
DOWNLOAD_PATH = "/open-apis/vc/v1/exports/download"
ONE_DAY = {"start_time": "2026-11-23T00:00:00+08:00", "end_time": "2026-11-24T00:00:00+08:00"}


def context() -> dict[str, Any]:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"run_id": "manual__1", "outlet_events": OutletEventAccessors()}


def refused(run: Callable[[], object], message: str) -> FeishuVCConfigError:
    """Run a task's ``execute``; it must fail at once, for a ``FeishuVCConfigError`` on ``destination``."""
    with pytest.raises(AirflowFailException, match=message) as raised:
        run()
    cause = raised.value.__cause__
    assert isinstance(cause, FeishuVCConfigError) and cause.field == "destination", repr(cause)
    return cause


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: permission bits for a user, a sysfs folder for root (whom
    permission bits do not stop)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        return locked
    locked = Path("/sys/kernel")
    try:
        os.close(tempfile.mkstemp(dir=locked)[0])
    except OSError:
        return locked
    pytest.skip("no folder here refuses root's writes")


def local_cases(tmp_path: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """Each refused local destination: its operator options and what the message says."""
    (tmp_path / "report.xlsx").write_bytes(b"a regular file")
    (tmp_path / "taken.xlsx").write_bytes(b"yesterday's file")
    (tmp_path / "folder").mkdir()
    locked = unwritable_folder(tmp_path)
    return {
        "under a regular file": (
            {"destination": f"{tmp_path}/report.xlsx/day.xlsx"},
            "report.xlsx is a regular file, not a folder; choose a path whose folders are folders",
        ),
        "folder under a regular file": (
            {"destination": f"{tmp_path}/report.xlsx/sub/"},
            "report.xlsx is a regular file, not a folder",
        ),
        "taken without overwrite": (
            {"destination": f"{tmp_path}/taken.xlsx"},
            "taken.xlsx already exists; pass overwrite=True",
        ),
        "a folder named as the file": (
            {"destination": f"{tmp_path}/folder", "into_folder": False},
            "is a folder; name a file, or pass into_folder=True",
        ),
        "folder not writable": (
            {"destination": f"{locked}/"},
            "is a folder this worker cannot create files in .*choose a folder the worker may write to",
        ),
        "folder not creatable": (
            {"destination": f"{locked}/exports/day/"},
            "cannot be created: .* is a folder this worker cannot create folders in",
        ),
    }


LOCAL_CASES = [
    "under a regular file",
    "folder under a regular file",
    "taken without overwrite",
    "a folder named as the file",
    "folder not writable",
    "folder not creatable",
]


@pytest.mark.parametrize("case", LOCAL_CASES)
def test_a_refused_local_destination_creates_no_export(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path, case: str
) -> None:
    options, message = local_cases(tmp_path)[case]
    before = sorted(tmp_path.rglob("*"))
    operator = FeishuVCExportOperator(task_id="export", export_type="meeting_list", **ONE_DAY, **options)
    refused(lambda: operator.execute(context()), message)  # type: ignore[arg-type]
    assert emulator.count(CREATE_PATH) == 0 and emulator.export_ids() == []
    assert sorted(tmp_path.rglob("*")) == before  # no folder made, no probe file left
    assert (tmp_path / "taken.xlsx").read_bytes() == b"yesterday's file"


@pytest.mark.parametrize("case", LOCAL_CASES)
def test_a_refused_destination_is_not_downloaded_to(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path, case: str
) -> None:
    options, message = local_cases(tmp_path)[case]
    export_task_id = FeishuVCHook().create_export("meeting_list", **ONE_DAY)
    emulator.finish_now()
    operator = FeishuVCDownloadExportOperator(
        task_id="download", file_token=emulator.export(export_task_id).file_token, **options
    )
    refused(lambda: operator.execute(context()), message)  # type: ignore[arg-type]
    assert emulator.count(DOWNLOAD_PATH) == 0


def test_a_missing_bucket_or_a_taken_key_creates_no_export(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str
) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="exports/day.xlsx", Body=b"yesterday's file")
    taken = FeishuVCExportOperator(
        task_id="export", export_type="meeting_list", **ONE_DAY,
        destination=f"s3://{bucket}/exports/day.xlsx", storage_conn_id=S3_CONN_ID,
    )  # fmt: skip
    refused(lambda: taken.execute(context()), "day.xlsx already exists; pass overwrite=True")  # type: ignore[arg-type]
    no_bucket = FeishuVCExportOperator(
        task_id="export", export_type="meeting_list", **ONE_DAY,
        destination=f"s3://{bucket}-gone/exports/", storage_conn_id=S3_CONN_ID,
    )  # fmt: skip
    refused(lambda: no_bucket.execute(context()), f"bucket '{bucket}-gone' does not exist")  # type: ignore[arg-type]
    assert emulator.count(CREATE_PATH) == 0
    assert s3_server.keys(bucket) == ["exports/day.xlsx"] and s3_server.read(bucket, "exports/day.xlsx") == (
        b"yesterday's file"
    )


def test_a_free_key_in_an_existing_bucket_is_accepted_and_lands(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str
) -> None:
    emulator.configure(export_delay=0)
    operator = FeishuVCExportOperator(
        task_id="export", export_type="meeting_list", **ONE_DAY, poll_interval=0.05,
        destination=f"s3://{bucket}/exports/day.xlsx", storage_conn_id=S3_CONN_ID,
    )  # fmt: skip
    assert operator.execute(context()).endswith("/exports/day.xlsx")  # type: ignore[arg-type,union-attr]
    assert s3_server.keys(bucket) == ["exports/day.xlsx"] and emulator.count(CREATE_PATH) == 1


def test_the_destination_is_checked_again_at_landing(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path
) -> None:
    operator = FeishuVCExportOperator(
        task_id="export", export_type="meeting_list", **ONE_DAY, deferrable=True, destination=f"{tmp_path}/day/"
    )
    with pytest.raises(TaskDeferred):
        operator.execute(context())  # type: ignore[arg-type]
    [export_task_id] = emulator.export_ids()
    (tmp_path / "day").write_bytes(b"made a file while the export was built")
    emulator.finish_now()
    file_token = emulator.export(export_task_id).file_token
    event = {"status": "success", "export_task_id": export_task_id, "file_token": file_token}
    refused(
        lambda: operator.execute_complete(context(), event, export_task_id),  # type: ignore[arg-type]
        "day/?: .*/day is a regular file, not a folder",
    )
    assert emulator.count(DOWNLOAD_PATH) == 0


def test_a_retry_of_a_try_that_landed_the_file_is_not_refused_as_taken(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path
) -> None:
    from airflow_provider_feishu_vc.operators.tries import EXPORT_KEY
    from tests.task_state import TaskState, task_context

    emulator.configure(export_delay=0)
    operator = FeishuVCExportOperator(
        task_id="export", export_type="meeting_list", **ONE_DAY, poll_interval=0.05, destination=f"{tmp_path}/day.xlsx"
    )
    state = TaskState()
    landed = operator.execute(task_context(state))  # type: ignore[arg-type]
    assert state.values[EXPORT_KEY]["landed"] == landed  # the try then failed after landing (post_execute not run)
    assert operator.execute(task_context(state)) == landed  # type: ignore[arg-type]
    assert emulator.count(CREATE_PATH) == 1 and emulator.count(DOWNLOAD_PATH) == 1


def test_a_templated_destination_is_checked_as_rendered_in_a_real_dag_run(
    airflow_db: str,
    emulator: FeishuVCEmulator,
    connection_env: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "manual").write_bytes(b"a regular file where the run's folder would go")
    dag_file = Path(DAGS_FOLDER) / "feishu_vc_destination_check_dag.py"
    dag_file.write_text(
        textwrap.dedent(f"""
        import pendulum
        from airflow.sdk import DAG
        from airflow_provider_feishu_vc.operators import FeishuVCExportOperator

        with DAG("destination_check", schedule=None, start_date=pendulum.datetime(2026, 11, 1), catchup=False) as dag:
            FeishuVCExportOperator(
                task_id="export", export_type="meeting_list", retries=0,
                start_time="{ONE_DAY["start_time"]}", end_time="{ONE_DAY["end_time"]}",
                destination="{tmp_path.as_uri()}/{{{{ run_id.split('__')[0] }}}}/{{{{ ds }}}}/",
            )
        """)
    )
    run = load_dag_file(dag_file.name).dag.test(logical_date=dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc))
    output = "".join(capfd.readouterr())
    assert run.state == "failed", output[-5000:]
    assert "destination: " in output and "/manual is a regular file, not a folder" in output
    assert emulator.count(CREATE_PATH) == 0


def test_a_store_that_refuses_the_landing_is_named_as_the_destination(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str
) -> None:
    # The check cannot see an S3 policy that forbids writing (it would take writing an object): S3's 403 at the
    # landing is still a refused destination, not a bare PermissionError.
    emulator.configure(rows=20_000, stored_workbooks=True)  # about 20 MiB: a multipart upload
    export_task_id = FeishuVCHook().create_export("meeting_list", **ONE_DAY)
    emulator.finish_now()
    operator = FeishuVCDownloadExportOperator(
        task_id="download", file_token=emulator.export(export_task_id).file_token,
        destination=f"s3://{bucket}/exports/day.xlsx", storage_conn_id=S3_CONN_ID,
    )  # fmt: skip
    s3_server.refuse_part = 1
    try:
        message = r"exports/day.xlsx refused the file \(refused by the test\); choose a place"
        refused(lambda: operator.execute(context()), message)  # type: ignore[arg-type]
    finally:
        s3_server.refuse_part = None
    assert s3_server.keys(bucket) == [] and s3_server.pending_uploads(bucket) == []
