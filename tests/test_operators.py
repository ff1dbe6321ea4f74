"""The create and download operators, the example DAG, and their bad-input handling."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from pathlib import Path

import openpyxl
import pendulum
import pytest
from airflow.sdk import Asset, ObjectStoragePath

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError, FeishuVCError
from airflow_provider_feishu_vc.compat import AirflowFailException
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.operators.feishu_vc import (
    FeishuVCCreateExportOperator,
    FeishuVCDownloadExportOperator,
)
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from tests.conftest import APP_SECRET, load_dag_file

REPO = Path(__file__).resolve().parent.parent
SHANGHAI_DAY_START = pendulum.datetime(2026, 11, 23, tz="Asia/Shanghai")
SHANGHAI_DAY_END = SHANGHAI_DAY_START.add(days=1)
INTERVAL = {"data_interval_start": SHANGHAI_DAY_START, "data_interval_end": SHANGHAI_DAY_END}
NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)


def create(**options: object) -> FeishuVCCreateExportOperator:
    return FeishuVCCreateExportOperator(task_id="create_export", **{"export_type": "meeting_list", **options})


def download_context(run_id: str = "manual__1") -> dict:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"run_id": run_id, "outlet_events": OutletEventAccessors()}


def done_export(emulator: FeishuVCEmulator) -> tuple[str, str]:
    export_task_id = FeishuVCHook().create_export("meeting_list", start_time=NOW - dt.timedelta(hours=3), end_time=NOW)
    emulator.finish_now()
    return export_task_id, emulator.export(export_task_id).file_token


# -- create -----------------------------------------------------------------------------------------------


def test_range_defaults_to_the_data_interval_in_its_time_zone(emulator: FeishuVCEmulator, connection_env: str) -> None:
    export_task_id = create().execute(INTERVAL)  # type: ignore[arg-type]
    body = emulator.export(export_task_id).body
    # 2026-11-23 00:00 in Shanghai is 2026-11-22 16:00 UTC.
    assert body["start_time"] == str(int(dt.datetime(2026, 11, 22, 16, tzinfo=dt.timezone.utc).timestamp()))
    assert int(body["end_time"]) - int(body["start_time"]) == 86_400


def test_explicit_times_win_over_the_interval(emulator: FeishuVCEmulator, connection_env: str) -> None:
    export_task_id = create(start_time="2026-11-23T10:00:00+08:00", end_time=1_795_406_400).execute(INTERVAL)  # type: ignore[arg-type]
    body = emulator.export(export_task_id).body
    assert body == {"start_time": "1795399200", "end_time": "1795406400"}


def test_kinds_without_a_range_default_take_no_interval(emulator: FeishuVCEmulator, connection_env: str) -> None:
    operator = create(
        export_type="participant_list",
        meeting_no="123456789",
        meeting_start_time=NOW - dt.timedelta(hours=2),
        meeting_end_time=NOW,
    )
    fields = operator.export_fields(INTERVAL)  # type: ignore[arg-type]
    assert "start_time" not in fields and fields["meeting_no"] == "123456789"
    assert emulator.export(operator.execute(INTERVAL)).kind == "participant_list"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "context", "message"),
    [
        ({"export_type": "meetings"}, INTERVAL, "export_type: is 'meetings'; allowed: meeting_list"),
        ({"export_type": "participant_list"}, INTERVAL, "meeting_start_time: is required for participant_list"),
        ({"start_time": SHANGHAI_DAY_END, "end_time": SHANGHAI_DAY_START}, {}, "end_time: .* must be after start_time"),
        ({"meeting_no": "123456789", "room_id": "omm_1"}, INTERVAL, "room_id: cannot be combined with meeting_no"),
        ({"meeting_status": 9}, INTERVAL, "meeting_status: is 9; allowed: 1, 2, 3"),
        ({}, {"data_interval_start": SHANGHAI_DAY_START, "data_interval_end": SHANGHAI_DAY_START},
         "start_time: is not given and the DAG run's data interval is empty"),
        ({"user_id_type": "email"}, INTERVAL, "user_id_type: is 'email'"),
    ],
)  # fmt: skip
def test_bad_input_fails_the_task_naming_the_field(
    emulator: FeishuVCEmulator, connection_env: str, options: dict, context: dict, message: str
) -> None:
    if options:  # a literal mistake: the operator is refused as it is built, when its DAG file is parsed
        with pytest.raises(FeishuVCConfigError, match=message):
            create(**options)
    else:
        with pytest.raises(AirflowFailException, match=message):
            create(**options).execute(context)  # type: ignore[arg-type]
    assert emulator.count("/open-apis/vc/v1/exports/meeting_list") == 0  # nothing was sent


# -- download ---------------------------------------------------------------------------------------------


def test_default_destination_is_the_dags_storage(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__FEISHU_VC__STORAGE_BASE", tmp_path.as_uri())
    export_task_id, file_token = done_export(emulator)
    operator = FeishuVCDownloadExportOperator(task_id="download", file_token={"export_task_id": export_task_id,
                                                                              "file_token": file_token})  # fmt: skip
    context = download_context("scheduled__2026-11-23")
    uri = operator.execute(context)  # type: ignore[arg-type]
    folder = tmp_path / "adhoc_airflow" / "scheduled__2026-11-23" / "download"  # one folder per task instance
    expected = folder / f"视频会议_meeting_list_{export_task_id}.xlsx"
    assert uri.startswith("file://") and Path(ObjectStoragePath(uri).path) == expected
    assert expected.read_bytes()[:2] == b"PK"
    [asset] = operator.outlets
    assert isinstance(asset, Asset) and asset.uri.startswith("feishu-vc://exports/")
    assert context["outlet_events"][asset].extra == {"uri": uri, "export_task_id": export_task_id}


def test_default_storage_base_is_under_airflow_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow_provider_feishu_vc.operators.destinations import default_storage_base

    monkeypatch.delenv("AIRFLOW__FEISHU_VC__STORAGE_BASE", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert default_storage_base() == f"file://{tmp_path}/feishu_vc_exports"


def test_memory_destination_and_overwrite(emulator: FeishuVCEmulator, connection_env: str) -> None:
    _, file_token = done_export(emulator)
    target = f"memory://operator-test-{time.time_ns()}/exports/day.xlsx"
    operator = FeishuVCDownloadExportOperator(task_id="download", file_token=file_token, destination=target)
    assert ObjectStoragePath(operator.execute(download_context())) == ObjectStoragePath(target)  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match="already exists; pass overwrite=True"):
        operator.execute(download_context())  # type: ignore[arg-type]
    replacing = FeishuVCDownloadExportOperator(
        task_id="download", file_token=file_token, destination=target, overwrite=True
    )
    assert ObjectStoragePath(replacing.execute(download_context())) == ObjectStoragePath(target)  # type: ignore[arg-type]


def test_local_destination_path(emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path) -> None:
    _, file_token = done_export(emulator)
    operator = FeishuVCDownloadExportOperator(task_id="d", file_token=file_token, destination=str(tmp_path / "x.xlsx"))
    operator.execute(download_context())  # type: ignore[arg-type]
    assert (tmp_path / "x.xlsx").stat().st_size > 0


@pytest.mark.parametrize("fault", ["drop_connection", "truncate"])
def test_download_cut_off_part_way_leaves_no_file(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path, fault: str
) -> None:
    _, file_token = done_export(emulator)
    emulator.inject(fault, path="/open-apis/vc/v1/exports/download", after_bytes=700)
    operator = FeishuVCDownloadExportOperator(task_id="d", file_token=file_token, destination=f"{tmp_path}/out/")
    with pytest.raises(FeishuVCError):
        operator.execute(download_context())  # type: ignore[arg-type]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("hostile", "expected"),
    [
        ("../../../../tmp/evil.xlsx", "evil.xlsx"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\windows\\evil.xlsx", "evil.xlsx"),
        ("a\x00b\x1fc\nd.xlsx", "abcd.xlsx"),
        ("..", "7.xlsx"),
        ("x" * 1000 + ".xlsx", "x" * 195 + ".xlsx"),
    ],
)
def test_hostile_file_names_cannot_escape_the_folder(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path, hostile: str, expected: str
) -> None:
    _, file_token = done_export(emulator)
    emulator.state.download_filename = hostile
    folder = tmp_path / "exports"
    operator = FeishuVCDownloadExportOperator(
        task_id="d", file_token=file_token, destination=f"{folder}/", export_task_id="7"
    )
    landed = Path(ObjectStoragePath(operator.execute(download_context())).path)  # type: ignore[arg-type]
    assert landed.parent == folder and landed.name == expected
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [landed]


# -- the example DAG --------------------------------------------------------------------------------------


def test_example_dag_imports_without_errors() -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(REPO / "example_dags"))
    assert bag.import_errors == {}
    dag = bag.dags["example_feishu_vc_export"]
    assert [t.task_id for t in dag.topological_sort()] == ["create_export", "wait_for_export", "download_export"]


def test_example_dag_runs_end_to_end(
    airflow_db: str,
    emulator: FeishuVCEmulator,
    connection_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AIRFLOW__FEISHU_VC__STORAGE_BASE", tmp_path.as_uri())
    emulator.configure(export_delay=3600, processing_polls=1)  # processing at the first check, done at the next
    dag = load_dag_file("example_feishu_vc_export.py").dag

    today = pendulum.now("Asia/Shanghai").start_of("day")
    run = dag.test(logical_date=today)
    output = "".join(capfd.readouterr())
    assert run.state == "success", output[-5000:]
    assert "deferring to the triggerer" in output
    [export_task_id] = emulator.export_ids()
    body = emulator.export(export_task_id).body
    assert body["start_time"] == str(int(today.subtract(days=1).timestamp()))  # yesterday, Shanghai time
    assert body["end_time"] == str(int(today.timestamp()))
    [landed] = list((tmp_path / "example_feishu_vc_export").glob("*/download_export/*.xlsx"))
    assert landed.name == f"视频会议_meeting_list_{export_task_id}.xlsx"
    rows = list(
        openpyxl.load_workbook(io.BytesIO(landed.read_bytes()), read_only=True).active.iter_rows(values_only=True)
    )
    assert len(rows) == 1 + 24 and len(rows[0]) == 17
    assert APP_SECRET not in output
    assert all(token not in output for token in emulator.issued_tokens())
    assert json.dumps(body).find(APP_SECRET) == -1
