"""Downloads into S3 as DAG authors configure it (amazon provider, an ``aws`` connection with ``endpoint_url``),
against moto's S3 server on loopback: the object appears whole or not at all, never under another key."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import threading
import time
import zlib
from pathlib import Path

import pendulum
import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError, FeishuVCError
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.hooks.landing import STALE_PART_SECONDS
from airflow_provider_feishu_vc.hooks.s3_upload import UPLOAD_PART_BYTES, UPLOAD_PARTS_IN_FLIGHT
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from airflow_provider_feishu_vc.testing.emulator.faults import Fault
from tests.conftest import S3_CONN_ID, load_dag_file
from tests.s3 import S3Server
from tests.task_state import child_environment

CONN_ID = S3_CONN_ID
DOWNLOAD_PATH = "/open-apis/vc/v1/exports/download"
NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
#: About 20 MiB: an upload of three 8-MiB parts, so a cut leaves parts that must be aborted.
MULTIPART_ROWS = 20_000


def done_export(emulator: FeishuVCEmulator, rows: int | None = None) -> tuple[str, str]:
    if rows is not None:
        emulator.configure(rows=rows, stored_workbooks=True)  # large, uncompressed files: size follows rows
    export_task_id = FeishuVCHook().create_export("meeting_list", start_time=NOW - dt.timedelta(hours=3), end_time=NOW)
    emulator.finish_now()
    return export_task_id, emulator.export(export_task_id).file_token


def s3_path(bucket: str, key: str) -> ObjectStoragePath:
    return ObjectStoragePath(f"s3://{bucket}/{key}", conn_id=CONN_ID)


def test_a_download_lands_one_object_with_the_exact_bytes_and_touches_no_other_key(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    export_task_id, file_token = done_export(emulator, rows=MULTIPART_ROWS)
    since = len(s3_server.requests)
    # An ObjectStoragePath cannot keep a trailing "/", and an empty prefix is no folder: into_folder says so.
    landed = FeishuVCHook().download_export(file_token, s3_path(bucket, "exports/daily"), into_folder=True)
    key = f"exports/daily/视频会议_meeting_list_{export_task_id}.xlsx"
    assert landed.path == f"{bucket}/{key}" and landed.protocol == "s3"
    assert s3_server.keys(bucket) == [key] and s3_server.pending_uploads(bucket) == []
    assert s3_server.touched_keys(bucket, since) == {key}  # no temporary key, no copy
    uploads = [r for r in s3_server.requests[since:] if "partNumber=" in r.query]
    assert len(uploads) == 3  # written straight to the key, part by part
    local = FeishuVCHook().download_export(file_token, tmp_path / "copy.xlsx")
    body = Path(local.path).read_bytes()
    assert s3_server.read(bucket, key) == body
    # Every part carried the CRC-32 its upload declared (S3 refuses a part otherwise; tests/s3.py does too), so S3
    # keeps the object's composite checksum: the CRC-32 of the parts' CRC-32s.
    parts = [body[start : start + UPLOAD_PART_BYTES] for start in range(0, len(body), UPLOAD_PART_BYTES)]
    of_parts = b"".join(zlib.crc32(part).to_bytes(4, "big") for part in parts)
    composite = base64.b64encode(zlib.crc32(of_parts).to_bytes(4, "big")).decode()
    stored = s3_server.client().head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert stored["ChecksumCRC32"] in (composite, f"{composite}-3")  # S3 adds the part count; moto 5.2 does not


def test_a_download_cut_mid_body_leaves_no_object_and_no_pending_upload(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str
) -> None:
    _, file_token = done_export(emulator, rows=MULTIPART_ROWS)
    emulator.inject(Fault.DROP_CONNECTION, path=DOWNLOAD_PATH, times=10, after_bytes=12 * 2**20)
    since = len(s3_server.requests)
    with pytest.raises(FeishuVCError):
        FeishuVCHook().download_export(file_token, s3_path(bucket, "exports/day.xlsx"))
    assert s3_server.keys(bucket) == [] and s3_server.pending_uploads(bucket) == []
    served = s3_server.requests[since:]
    assert any(r.method == "POST" and "uploads" in r.query for r in served), "no upload was started"
    assert any(r.method == "DELETE" and "uploadId=" in r.query for r in served)  # the upload was aborted


def test_each_part_carries_the_crc32_botocore_would_have_computed() -> None:
    from botocore.httpchecksum import Crc32Checksum

    from airflow_provider_feishu_vc.hooks.s3_upload import part_checksum

    for part in (b"", b"feishu", os.urandom(3 * 2**20 + 7)):
        expected = Crc32Checksum()
        expected.update(part)
        assert part_checksum(part) == base64.b64encode(expected.digest()).decode()


def test_a_completion_whose_answer_is_lost_lands_the_download_once(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """S3 carries out CompleteMultipartUpload and the connection drops before its answer. The client's retry is
    done again (S3, moto) or finds no such upload (MinIO): either way the object there is this upload's, so the
    download succeeds, with or without overwrite."""
    _, file_token = done_export(emulator, rows=MULTIPART_ROWS)
    body = Path(FeishuVCHook().download_export(file_token, tmp_path / "copy.xlsx").path).read_bytes()
    for retry in ("retry completes", "retry finds no upload"):
        for overwrite in (False, True):
            key = f"exports/{retry}-{overwrite}.xlsx".replace(" ", "-")
            since = len(s3_server.requests)
            caplog.clear()
            s3_server.lose_completion_answer = retry
            landed = FeishuVCHook().download_export(file_token, s3_path(bucket, key), overwrite=overwrite)
            assert s3_server.lose_completion_answer is None, "no completion's answer was lost: nothing was tested"
            completions = [r for r in s3_server.requests[since:] if r.method == "POST" and "uploadId=" in r.query]
            assert len(completions) == 2  # carried out, answer lost, asked again
            assert landed.key == key and s3_server.read(bucket, key) == body
            assert s3_server.pending_uploads(bucket) == []
            assert ("S3 had carried it out" in caplog.text) == (retry == "retry finds no upload"), caplog.text


def test_parts_go_up_several_at_once_and_never_more_than_the_bound(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    _, file_token = done_export(emulator, rows=4 * MULTIPART_ROWS)  # about 80 MiB: ten parts
    s3_server.most_parts_at_once = 0
    landed = FeishuVCHook().download_export(file_token, s3_path(bucket, "exports/big.xlsx"))
    assert 1 < s3_server.most_parts_at_once <= UPLOAD_PARTS_IN_FLIGHT
    local = FeishuVCHook().download_export(file_token, tmp_path / "copy.xlsx")
    assert s3_server.read(bucket, landed.key) == Path(local.path).read_bytes()  # parts in the right order


def test_a_part_that_fails_aborts_the_others_and_leaves_nothing(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str
) -> None:
    _, file_token = done_export(emulator, rows=4 * MULTIPART_ROWS)
    since = len(s3_server.requests)
    s3_server.refuse_part = 3
    try:
        with pytest.raises(PermissionError):
            FeishuVCHook().download_export(file_token, s3_path(bucket, "exports/refused.xlsx"))
    finally:
        s3_server.refuse_part = None
    assert s3_server.keys(bucket) == [] and s3_server.pending_uploads(bucket) == []
    served = s3_server.requests[since:]
    assert any(r.method == "DELETE" and "uploadId=" in r.query for r in served)  # the upload was aborted
    assert not any("uploadId=" in r.query and r.method == "POST" and "uploads" not in r.query for r in served)


def test_an_existing_object_is_untouched_without_overwrite(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str
) -> None:
    _, file_token = done_export(emulator)
    s3_server.client().put_object(Bucket=bucket, Key="exports/day.xlsx", Body=b"yesterday's file")
    with pytest.raises(FeishuVCConfigError, match=r"destination: .*already exists; pass overwrite=True"):
        FeishuVCHook().download_export(file_token, s3_path(bucket, "exports/day.xlsx"))
    assert s3_server.read(bucket, "exports/day.xlsx") == b"yesterday's file"
    FeishuVCHook().download_export(file_token, s3_path(bucket, "exports/day.xlsx"), overwrite=True)
    assert s3_server.read(bucket, "exports/day.xlsx")[:2] == b"PK"


@pytest.mark.parametrize(
    ("rows", "chunk"), [(600, 16384), (MULTIPART_ROWS, 2**20)], ids=["one PutObject", "a multipart upload"]
)
def test_a_key_taken_while_the_download_runs_keeps_the_other_writers_object(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str, rows: int, chunk: int
) -> None:
    _, file_token = done_export(emulator, rows=rows)  # about 640 KB, or 20 MiB
    # 40 (or 22) chunks 0.1 s apart: the body takes seconds, and the other writer puts its object as it starts.
    # The multipart upload's completion is refused (the key is taken) and the object there is not this upload's.
    emulator.inject(Fault.SLOW_BODY, path=DOWNLOAD_PATH, chunk=chunk, seconds=0.1)
    downloads_before = emulator.count(DOWNLOAD_PATH)

    def other_writer() -> None:
        while emulator.count(DOWNLOAD_PATH) == downloads_before:
            time.sleep(0.01)
        s3_server.client().put_object(Bucket=bucket, Key="exports/day.xlsx", Body=b"the other writer")

    writer = threading.Thread(target=other_writer)
    writer.start()
    try:
        with pytest.raises(FeishuVCConfigError, match="already exists"):
            FeishuVCHook().download_export(file_token, s3_path(bucket, "exports/day.xlsx"))
    finally:
        writer.join()
    assert s3_server.read(bucket, "exports/day.xlsx") == b"the other writer"  # S3 refused the conditional create
    assert s3_server.pending_uploads(bucket) == []


def test_the_example_dag_stores_into_s3_in_a_real_dag_run(
    airflow_db: str,
    emulator: FeishuVCEmulator,
    connection_env: str,
    s3_server: S3Server,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # The storage base names its connection as ObjectStoragePath URIs do: s3://<conn_id>@<bucket>/<prefix>.
    monkeypatch.setenv("AIRFLOW__FEISHU_VC__STORAGE_BASE", f"s3://{CONN_ID}@{bucket}/feishu")
    emulator.configure(export_delay=3600, processing_polls=1)
    dag = load_dag_file("example_feishu_vc_export.py").dag
    run = dag.test(logical_date=pendulum.now("Asia/Shanghai").start_of("day"))
    output = "".join(capfd.readouterr())
    assert run.state == "success", output[-5000:]
    [export_task_id] = emulator.export_ids()
    [key] = s3_server.keys(bucket)
    assert (
        key
        == f"feishu/example_feishu_vc_export/{run.run_id}/download_export/视频会议_meeting_list_{export_task_id}.xlsx"
    )
    assert s3_server.read(bucket, key)[:2] == b"PK" and s3_server.pending_uploads(bucket) == []


def test_stale_part_files_of_killed_downloads_are_removed_fresh_ones_kept(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path
) -> None:
    _, file_token = done_export(emulator)
    stale = tmp_path / ".day.xlsx.0123456789ab.part"
    running = tmp_path / ".other.xlsx.ba9876543210.part"  # another download, still writing
    unrelated = tmp_path / ".notes.part"  # not ours: the name does not match
    for leftover in (stale, running, unrelated):
        leftover.write_bytes(b"partial")
    old = time.time() - STALE_PART_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(unrelated, (old, old))
    FeishuVCHook().download_export(file_token, tmp_path / "today.xlsx")
    assert not stale.exists() and running.exists() and unrelated.exists()
    assert (tmp_path / "today.xlsx").exists()


@pytest.mark.parametrize(
    ("dag_id", "task_id"), [("feishu_vc_test_poke", "download_export"), ("feishu_vc_test_one_task_polling", "export")]
)
def test_openlineage_names_the_landed_file_and_the_export_never_a_temporary_name(
    airflow_db: str, emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path, dag_id: str, task_id: str
) -> None:
    from tests.conftest import airflow_cli

    events_file = tmp_path / "openlineage.jsonl"
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    env = {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "feishu-vc-tests",
        "AIRFLOW__FEISHU_VC__STORAGE_BASE": (tmp_path / "exports").as_uri(),
    }
    airflow_cli("dags", "test", dag_id, env=env)
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    [complete] = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == f"{dag_id}.{task_id}"]
    [export_task_id] = emulator.export_ids()
    [output] = complete["outputs"]
    assert output["name"].endswith(f"视频会议_meeting_list_{export_task_id}.xlsx"), output
    assert output["namespace"] in ("file", "memory://feishu-vc-tests")
    assert complete["inputs"] == [
        {**complete["inputs"][0], "namespace": emulator.url, "name": f"open-apis/vc/v1/exports/{export_task_id}"}
    ]
    assert ".part" not in events_file.read_text()


KILLED_TRY = """
import sys

from airflow.sdk.execution_time.context import OutletEventAccessors

from airflow_provider_feishu_vc.operators.feishu_vc import FeishuVCExportOperator
from tests.task_state import FileTaskState

state_file, destination, conn_id = sys.argv[1:]
operator = FeishuVCExportOperator(
    task_id="export", export_type="meeting_list", deferrable=False, poll_interval=0.1, destination=destination,
    storage_conn_id=conn_id, start_time="2026-11-23T00:00:00+08:00", end_time="2026-11-24T00:00:00+08:00",
)
context = {"task_state_store": FileTaskState(state_file), "run_id": "manual__1", "map_index": -1,
           "outlet_events": OutletEventAccessors()}
print(operator.execute(context))
"""


def test_the_retry_of_a_try_killed_mid_upload_aborts_the_upload_it_left_and_lands_once(
    emulator: FeishuVCEmulator, connection_env: str, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    emulator.configure(rows=MULTIPART_ROWS, stored_workbooks=True, export_delay=0)
    emulator.inject(Fault.SLOW_BODY, path=DOWNLOAD_PATH, chunk=2**20, seconds=0.3)  # the first try's download only
    script, state_file = tmp_path / "try.py", tmp_path / "task_state.json"
    script.write_text(KILLED_TRY)
    command = [sys.executable, str(script), str(state_file), f"s3://{bucket}/exports/", CONN_ID]
    since = len(s3_server.requests)
    killed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_environment())
    try:
        deadline = time.monotonic() + 60
        while not any("partNumber=1&" in r.query + "&" for r in s3_server.requests[since:]):
            assert killed.poll() is None and time.monotonic() < deadline, killed.stdout.read() if killed.stdout else ""
            time.sleep(0.05)
    finally:
        killed.send_signal(signal.SIGKILL)  # as a lost worker: no abort, no clean-up
        killed.wait()
    assert len(s3_server.pending_uploads(bucket)) == 1, "the killed try left no upload open: nothing was tested"
    left = json.loads(state_file.read_text())["feishu_vc_open_upload"]
    assert left["uri"].endswith(".xlsx") and left["upload_id"]

    retry = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=child_environment())
    assert retry.returncode == 0, retry.stdout[-3000:] + retry.stderr[-3000:]
    assert "Aborted the upload to" in retry.stdout + retry.stderr
    [export_task_id] = emulator.export_ids()  # the retry resumed the same export
    assert s3_server.keys(bucket) == [f"exports/视频会议_meeting_list_{export_task_id}.xlsx"]
    assert s3_server.pending_uploads(bucket) == [], "the killed try's parts are still stored"
    assert "feishu_vc_open_upload" not in json.loads(state_file.read_text())
