"""Issue 36, findings 3-7: a retry after the file landed succeeds, and an S3 upload lands whole or not at all, as
the store's client is configured. Against the emulator and moto's S3 server on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import airflow
import pytest
from airflow.sdk import ObjectStoragePath
from packaging.version import Version

from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.hooks.s3_upload import UPLOAD_PART_BYTES, ParallelS3Upload
from airflow_provider_feishu_vc.operators.tries import abort_left_upload, upload_journal
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from tests.conftest import S3_CONN_ID
from tests.s3 import S3Server
from tests.task_state import TaskState, child_environment

NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
log = logging.getLogger(__name__)


def s3_path(bucket: str, key: str, conn_id: str = S3_CONN_ID) -> ObjectStoragePath:
    return ObjectStoragePath(f"s3://{bucket}/{key}", conn_id=conn_id)


def done_export(emulator: FeishuVCEmulator) -> tuple[str, str]:
    export_task_id = FeishuVCHook().create_export("meeting_list", start_time=NOW - dt.timedelta(hours=3), end_time=NOW)
    emulator.finish_now()
    return export_task_id, emulator.export(export_task_id).file_token


def landed_retry_dags() -> Any:
    """tests/dags/feishu_vc_landed_retry_dags.py, loaded from the tests' dags folder (copied there first)."""
    import shutil

    from tests.conftest import DAGS_FOLDER, load_dag_file

    name = "feishu_vc_landed_retry_dags.py"
    shutil.copyfile(Path(__file__).parents[1] / "dags" / name, Path(DAGS_FOLDER) / name)
    return load_dag_file(name)


def try_context(state: TaskState, try_number: int) -> dict[str, Any]:
    return {"task_state_store": state, "ti": SimpleNamespace(try_number=try_number, map_index=-1)}


# -- 4. a small upload whose answer was lost ---------------------------------------------------------------------


@pytest.mark.skipif(
    not hasattr(importlib.import_module("moto.moto_server.werkzeug_app"), "MotoRequestHandler"),
    reason="moto before 5.2.5 serves through werkzeug's own handler, which (Airflow 3.2's leg) at times never reads "
    "the resent PUT's body after the test dropped a connection: the server hangs, not the client",
)
def test_a_small_upload_whose_answer_was_lost_lands_once_and_succeeds(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """One PutObject with If-None-Match: * is carried out and its answer lost; botocore sends it again and S3
    answers 412 (the key is taken, by this very upload): the object there holds our bytes, so the download
    succeeds."""
    _, file_token = done_export(emulator)
    body = Path(FeishuVCHook().download_export(file_token, tmp_path / "copy.xlsx").path).read_bytes()
    assert len(body) < UPLOAD_PART_BYTES
    since = len(s3_server.requests)
    s3_server.lose_put_answer = True
    landed = FeishuVCHook().download_export(file_token, s3_path(bucket, "exports/day.xlsx"))
    assert not s3_server.lose_put_answer, "no PutObject's answer was lost: nothing was tested"
    puts = [r for r in s3_server.requests[since:] if r.method == "PUT" and r.path.endswith("/exports/day.xlsx")]
    assert len(puts) >= 2  # carried out, answer lost, sent again (older botocore/s3fs send it once more)
    assert landed.key == "exports/day.xlsx" and s3_server.read(bucket, "exports/day.xlsx") == body
    assert "S3 had carried out an earlier send of it" in caplog.text


def test_a_small_upload_refused_because_another_object_is_there_still_fails(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str
) -> None:
    """What is at the key is compared byte for byte: an object of the same size that is not ours is refused."""
    target = s3_path(bucket, "exports/same-size.bin")
    ours, theirs = b"a" * 1000, b"b" * 1000
    s3_server.client().put_object(Bucket=bucket, Key="exports/same-size.bin", Body=theirs)
    upload = ParallelS3Upload(target.fs, target.path, overwrite=False)
    upload.write(ours)
    upload.close()
    with pytest.raises(FileExistsError):
        upload.commit()
    assert s3_server.read(bucket, "exports/same-size.bin") == theirs


# -- 5. a part cancelled without a recorded failure --------------------------------------------------------------


def test_an_upload_with_a_part_cancelled_is_never_completed_with_a_hole(
    connection_env: str, s3_server: S3Server, bucket: str
) -> None:
    target = s3_path(bucket, "exports/holey.bin")
    upload = ParallelS3Upload(target.fs, target.path, overwrite=False)
    sent = upload._upload_part

    async def cancelled_second_part(number: int, part: bytes, checksum: str | None) -> None:
        if number == 2:  # the HTTP stack's CancelledError (a loop shutting down): no exception is recorded
            raise asyncio.CancelledError
        await sent(number, part, checksum)

    upload._upload_part = cancelled_second_part  # type: ignore[method-assign]
    upload.write(os.urandom(3 * UPLOAD_PART_BYTES))
    upload.close()
    with pytest.raises(OSError, match=r"parts \[2\] .* never arrived"):
        upload.commit()
    upload.discard()
    assert s3_server.keys(bucket) == [] and s3_server.pending_uploads(bucket) == []


# -- 6. the upload journal of one try is not another's ------------------------------------------------------------


def test_a_zombie_trys_discard_keeps_the_retrys_open_upload_for_the_next_try_to_abort(
    connection_env: str, s3_server: S3Server, bucket: str
) -> None:
    from airflow_provider_feishu_vc.hooks.s3_upload import call_s3

    state = TaskState()
    target = s3_path(bucket, "exports/day.xlsx")

    def begin() -> str:
        return str(call_s3(target.fs, "create_multipart_upload", Bucket=bucket, Key="exports/day.xlsx")["UploadId"])

    zombie, retry = upload_journal(try_context(state, 1)), upload_journal(try_context(state, 2))  # type: ignore[arg-type]
    assert zombie is not None and retry is not None
    zombie(target, begin())  # try 1 begins its upload, and is taken for lost (a zombie: it still runs)
    abort_left_upload(try_context(state, 2), S3_CONN_ID, log)  # type: ignore[arg-type]  # try 2 aborts it
    assert s3_server.pending_uploads(bucket) == []
    retry(target, begin())  # try 2 begins its own upload
    zombie(target, None)  # the zombie's upload failed under it: its discard ends, telling its journal
    # Try 2 is killed now (kill -9): try 3 must still find try 2's upload and abort it.
    assert s3_server.pending_uploads(bucket) == ["exports/day.xlsx"]
    abort_left_upload(try_context(state, 3), S3_CONN_ID, log)  # type: ignore[arg-type]
    assert s3_server.pending_uploads(bucket) == [], "the retry's upload was forgotten: its parts stay stored"
    assert state.values == {}


# -- 7. checksums as the client is configured ---------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["when_required", "when_supported"])
def test_an_upload_declares_a_checksum_only_where_the_client_computes_them(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, setting: str,
) -> None:  # fmt: skip
    import json

    conn_id = f"aws_moto_{setting}"
    connection = json.loads(s3_server.connection())
    connection["extra"]["config_kwargs"] = {"request_checksum_calculation": setting}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
    target = s3_path(bucket, f"exports/{setting}.bin", conn_id)
    body = os.urandom(2 * UPLOAD_PART_BYTES + 1000)
    upload = ParallelS3Upload(target.fs, target.path, overwrite=False)
    upload.write(body)
    upload_id = upload.upload_id
    upload.close()
    upload.commit()  # tests/s3.py refuses parts and completions whose checksums do not follow the upload's
    assert s3_server.read(bucket, f"exports/{setting}.bin") == body
    assert s3_server.upload_checksums[str(upload_id)] == (None if setting == "when_required" else "crc32")


# -- 3. a retry after the file landed -----------------------------------------------------------------------------

#: The task's state store (``task_state_store``, kept across tries) is Airflow 3.3's: a DAG run keeps a landing
#: across tries only there.
HAS_TASK_STATE = Version(airflow.__version__) >= Version("3.3.0")

DOWNLOAD_PATH = "/open-apis/vc/v1/exports/download"


@pytest.mark.skipif(not HAS_TASK_STATE, reason="the task's state store (kept across tries) came in Airflow 3.3")
@pytest.mark.parametrize("store", ["local", "s3"])
@pytest.mark.parametrize("shape", ["one task, polling", "one task, deferrable", "three tasks, poke",
                                   "three tasks, deferrable"])  # fmt: skip
def test_a_try_lost_right_after_its_file_landed_is_retried_into_success(
    airflow_db: str, emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str,
    tmp_path: Path, capfd: pytest.CaptureFixture[str], shape: str, store: str,
) -> None:  # fmt: skip
    emulator.configure(export_delay=3600, processing_polls=1)  # processing at the first check, done at the next
    dags = landed_retry_dags()
    if store == "local":
        destination = (tmp_path / "exports" / "day.xlsx").as_uri()
    else:
        destination = f"s3://{S3_CONN_ID}@{bucket}/exports/day.xlsx"
    run = dags.DAGS[shape].test(run_conf={"destination": destination})
    output = "".join(capfd.readouterr())
    assert run.state == "success", output[-5000:]
    assert "worker lost right after the file landed" in output  # the first try did die once its file landed
    [export_task_id] = emulator.export_ids()
    assert f"The file of export {export_task_id} was landed by an earlier try" in output
    assert emulator.count(DOWNLOAD_PATH) == 1  # the retry took the landed file, it did not fetch it again
    if store == "local":
        assert [p.name for p in (tmp_path / "exports").iterdir()] == ["day.xlsx"]
        assert (tmp_path / "exports" / "day.xlsx").read_bytes()[:2] == b"PK"
    else:
        assert s3_server.keys(bucket) == ["exports/day.xlsx"] and s3_server.pending_uploads(bucket) == []
        assert s3_server.read(bucket, "exports/day.xlsx")[:2] == b"PK"


def download_operator(file_token: str, export_task_id: str, destination: str, **more: Any) -> Any:
    return landed_retry_dags().DownloadLosingTheWorker(
        task_id="download_export", file_token={"export_task_id": export_task_id, "file_token": file_token},
        destination=destination, **more,
    )  # fmt: skip


def operator_context(state: TaskState, try_number: int) -> dict[str, Any]:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {**try_context(state, try_number), "run_id": "manual__1", "outlet_events": OutletEventAccessors()}


def day_file(store: str, tmp_path: Path, bucket: str) -> tuple[str, str | None]:
    """Where a test's file lands, and its storage connection: a local file or an S3 object."""
    if store == "local":
        return (tmp_path / "day.xlsx").as_uri(), None
    return f"s3://{bucket}/exports/day.xlsx", S3_CONN_ID


def retry_refuses_a_replaced_file(operator: Any, state: Any, landed: Any) -> None:
    """Someone replaces the file the first try landed (same size, other bytes): the retry refuses it, and leaves
    it as it is."""
    size = len(landed.read_bytes())
    landed.write_bytes(b"x" * size)
    with pytest.raises(Exception, match="already exists") as refused:
        operator.execute(operator_context(state, 2))
    assert type(refused.value).__name__ == "AirflowFailException"
    assert landed.read_bytes() == b"x" * size


@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_file_that_changed_since_the_earlier_try_landed_it_is_refused(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str, tmp_path: Path, store: str
) -> None:
    export_task_id, file_token = done_export(emulator)
    state = TaskState()
    destination, conn_id = day_file(store, tmp_path, bucket)
    operator = download_operator(file_token, export_task_id, destination, storage_conn_id=conn_id)
    with pytest.raises(RuntimeError, match="worker lost right after the file landed"):
        operator.execute(operator_context(state, 1))
    retry_refuses_a_replaced_file(operator, state, ObjectStoragePath(destination, conn_id=conn_id))


def export_losing_the_worker_once_kept(destination: str, **more: Any) -> Any:
    """The one-task operator whose first try dies after its file landed and the export kept where (the failure
    comes after ``_land_and_keep``: the task's result, its XCom, a lost worker)."""
    from airflow_provider_feishu_vc.operators.feishu_vc import FeishuVCExportOperator

    class ExportLostOnceKept(FeishuVCExportOperator):
        def _land_and_keep(self, context: Any, *args: Any) -> Any:
            landed = super()._land_and_keep(context, *args)
            if context["ti"].try_number == 1:
                raise RuntimeError("worker lost after the landed file was kept with its export")
            return landed

    return ExportLostOnceKept(
        task_id="export", export_type="meeting_list", poll_interval=0.1, deferrable=False, into_folder=False,
        start_time=NOW - dt.timedelta(hours=3), end_time=NOW, destination=destination, **more,
    )  # fmt: skip


@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_file_replaced_after_the_one_task_operator_kept_it_is_refused(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str, tmp_path: Path, store: str
) -> None:
    """Before, the one-task operator's retry took any file at the URI its export kept as landed (it checked only
    that one was there): a file replaced since, of the same size, became the task's result and asset event."""
    emulator.configure(export_delay=3600, processing_polls=1)
    state = TaskState()
    destination, conn_id = day_file(store, tmp_path, bucket)
    operator = export_losing_the_worker_once_kept(destination, storage_conn_id=conn_id)
    with pytest.raises(RuntimeError, match="worker lost after the landed file was kept"):
        operator.execute(operator_context(state, 1))
    retry_refuses_a_replaced_file(operator, state, ObjectStoragePath(destination, conn_id=conn_id))
    assert len(emulator.export_ids()) == 1  # the retry resumed the export; it only refused the file


def test_the_very_file_the_one_task_operator_kept_is_taken_by_its_retry(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path
) -> None:
    emulator.configure(export_delay=3600, processing_polls=1)
    state, destination = TaskState(), (tmp_path / "day.xlsx").as_uri()
    operator = export_losing_the_worker_once_kept(destination)
    with pytest.raises(RuntimeError, match="worker lost after the landed file was kept"):
        operator.execute(operator_context(state, 1))
    downloads = emulator.count(DOWNLOAD_PATH)
    assert operator.execute(operator_context(state, 2)) == destination
    assert emulator.count(DOWNLOAD_PATH) == downloads and len(emulator.export_ids()) == 1


def test_another_exports_file_at_the_destination_is_refused(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path
) -> None:
    first_id, first_token = done_export(emulator)
    second_id, second_token = done_export(emulator)
    state, destination = TaskState(), (tmp_path / "day.xlsx").as_uri()
    with pytest.raises(RuntimeError, match="worker lost right after the file landed"):
        download_operator(first_token, first_id, destination).execute(operator_context(state, 1))
    landed = (tmp_path / "day.xlsx").read_bytes()
    with pytest.raises(Exception, match="already exists"):  # the same task, now for another export (cleared, changed)
        download_operator(second_token, second_id, destination).execute(operator_context(state, 2))
    assert (tmp_path / "day.xlsx").read_bytes() == landed
    # and the same export again is taken as landed
    assert download_operator(first_token, first_id, destination).execute(operator_context(state, 3)) == destination


KILLED_AFTER_LANDING = """
import os, signal, sys
from types import SimpleNamespace

from airflow.sdk.execution_time.context import OutletEventAccessors

from airflow_provider_feishu_vc.operators.destinations import LandsExportFiles
from airflow_provider_feishu_vc.operators.feishu_vc import FeishuVCDownloadExportOperator
from tests.task_state import FileTaskState

state_file, destination, file_token, export_task_id, try_number = sys.argv[1:]
if try_number == "1":
    def worker_lost(self, context, result, export_task_id):  # the file is visible: the worker dies (kill -9) now
        os.kill(os.getpid(), signal.SIGKILL)

    LandsExportFiles.announce = worker_lost
operator = FeishuVCDownloadExportOperator(
    task_id="download_export", file_token=file_token, export_task_id=export_task_id, destination=destination
)
context = {"task_state_store": FileTaskState(state_file), "run_id": "manual__1",
           "outlet_events": OutletEventAccessors(), "ti": SimpleNamespace(try_number=int(try_number), map_index=-1)}
print("RESULT", operator.execute(context))
"""


@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_download_whose_worker_is_killed_right_after_the_file_landed_is_retried_into_success(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str, tmp_path: Path, store: str
) -> None:
    """A real ``kill -9`` the moment the file became visible: nothing after it ran, no state written since."""
    import signal
    import subprocess
    import sys

    export_task_id, file_token = done_export(emulator)
    if store == "local":
        destination = (tmp_path / "exports" / "day.xlsx").as_uri()
    else:
        destination = f"s3://{S3_CONN_ID}@{bucket}/exports/day.xlsx"
    script, state_file = tmp_path / "try.py", tmp_path / "task_state.json"
    script.write_text(KILLED_AFTER_LANDING)

    def one_try(number: int) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), str(state_file), destination, file_token, export_task_id, str(number)]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=False, env=child_environment()
        )

    killed = one_try(1)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert ObjectStoragePath(destination).exists(), "the killed try landed nothing: nothing was tested"
    retry = one_try(2)
    output = retry.stdout + retry.stderr
    assert retry.returncode == 0, output[-5000:]
    assert f"The file of export {export_task_id} was landed by an earlier try" in output
    assert f"RESULT {destination}" in retry.stdout or "RESULT s3://" in retry.stdout
    assert emulator.count(DOWNLOAD_PATH) == 1  # not fetched again
    assert ObjectStoragePath(destination).read_bytes()[:2] == b"PK"
