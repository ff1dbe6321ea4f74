"""The operators landing typed tables in real DAG runs (dag.test): Parquet and CSV, into a local folder and into S3
through moto, with the row count and schema fingerprint in XCom, the asset event and OpenLineage's schema facet."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import ModuleType

import pyarrow.parquet as pq
import pytest

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
from airflow_provider_feishu_vc.operators.feishu_vc import FeishuVCDownloadExportOperator, FeishuVCExportOperator
from airflow_provider_feishu_vc.tables import CONTRACTS, schema_fingerprint
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from tests.conftest import S3_CONN_ID, load_dag_file
from tests.s3 import S3Server


@pytest.fixture
def dags(airflow_db: str, emulator: FeishuVCEmulator, connection_env: str) -> ModuleType:
    emulator.configure(export_delay=3600, processing_polls=1)
    return load_dag_file("feishu_vc_test_dags.py")


def xcoms(dag_id: str, run_id: str) -> dict[str, object]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == run_id).all()
        return {row.task_id: json.loads(row.value) if isinstance(row.value, str) else row.value for row in rows}


def asset_extras(dag_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        return [event.extra for event in session.query(AssetEvent).all() if event.source_dag_id == dag_id]


def test_the_one_task_operator_lands_a_typed_parquet_table(
    dags: ModuleType, emulator: FeishuVCEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("AIRFLOW__FEISHU_VC__STORAGE_BASE", tmp_path.as_uri())
    run = dags.parquet_dag.test()
    assert run.state == "success", "".join(capfd.readouterr())[-5000:]
    [export_task_id] = emulator.export_ids()
    [landed] = [p for p in tmp_path.rglob("*") if p.is_file()]  # the table alone: no xlsx, no .part file
    assert landed.name == f"视频会议_meeting_list_{export_task_id}.parquet"
    table = pq.read_table(landed)
    assert table.num_rows == 24 and table.schema.names == [c.name for c in CONTRACTS["meeting_list"]]
    assert str(table.schema.field("meeting_start_time").type) == "timestamp[us, tz=UTC]"
    expected = {
        "uri": f"file://{landed}",
        "format": "parquet",
        "rows": 24,
        "schema_fingerprint": schema_fingerprint(table.schema),
    }
    assert xcoms(dags.parquet_dag.dag_id, run.run_id)["export"] == expected
    [extra] = asset_extras(dags.parquet_dag.dag_id)
    assert extra == {**expected, "export_task_id": export_task_id}


def test_the_download_operator_lands_rfc_4180_csv_with_canonical_names_and_utc_times(
    dags: ModuleType, emulator: FeishuVCEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("AIRFLOW__FEISHU_VC__STORAGE_BASE", tmp_path.as_uri())
    run = dags.csv_dag.test()
    assert run.state == "success", "".join(capfd.readouterr())[-5000:]
    [landed] = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert landed.suffix == ".csv"
    raw = landed.read_bytes()
    assert raw.count(b"\r\n") == 6 and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF, 1 header + 5 rows
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert list(rows[0]) == [c.name for c in CONTRACTS["participant_list"]]
    assert rows[0]["join_time"].endswith("Z") and "T" in rows[0]["join_time"]
    assert rows[0]["audio"] in ("true", "false") and rows[0]["time_in_meeting_seconds"].isdigit()
    result = xcoms(dags.csv_dag.dag_id, run.run_id)["download_export"]
    assert result["format"] == "csv" and result["rows"] == 5


def test_a_table_into_s3_lands_once_with_no_pending_upload(
    dags: ModuleType, emulator: FeishuVCEmulator, s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    server = s3_server
    monkeypatch.setenv("AIRFLOW__FEISHU_VC__STORAGE_BASE", f"s3://{S3_CONN_ID}@{bucket}/tables")
    run = dags.parquet_dag.test()
    assert run.state == "success", "".join(capfd.readouterr())[-5000:]
    [key] = server.keys(bucket)
    assert key.startswith(f"tables/{dags.parquet_dag.dag_id}/{run.run_id}/export/") and key.endswith(".parquet")
    assert pq.read_table(io.BytesIO(server.read(bucket, key))).num_rows == 24
    assert server.pending_uploads(bucket) == []


def test_table_options_are_checked_by_name() -> None:
    with pytest.raises(FeishuVCConfigError, match="output_format: is 'xls'; allowed: xlsx, parquet, csv"):
        FeishuVCExportOperator(task_id="e", export_type="meeting_list", output_format="xls")
    with pytest.raises(FeishuVCConfigError, match="table_schema: is 'strict'; allowed: evolve, freeze"):
        FeishuVCDownloadExportOperator(task_id="d", file_token="t", output_format="csv", table_schema="strict")


def test_a_table_without_its_export_type_fails_the_task_saying_so(
    emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path
) -> None:
    from airflow_provider_feishu_vc.compat import AirflowFailException
    from tests.test_operators import done_export, download_context

    _, file_token = done_export(emulator)
    missing = "export_type: is needed to read the file as a typed table"
    with pytest.raises(FeishuVCConfigError, match=missing):  # left out: refused when the DAG file is parsed
        FeishuVCDownloadExportOperator(task_id="d", file_token=file_token, destination=f"{tmp_path}/",
                                       output_format="parquet")  # fmt: skip
    for rendered, message in (("", missing), ("meetings", "export_type: is 'meetings'; allowed: meeting_list")):
        operator = FeishuVCDownloadExportOperator(
            task_id="d", file_token=file_token, destination=f"{tmp_path}/", output_format="parquet",
            export_type=f"{{{{ '{rendered}' }}}}",
        )  # fmt: skip
        operator.render_template_fields({})  # type: ignore[arg-type]
        with pytest.raises(AirflowFailException, match=message):
            operator.execute(download_context())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == [] and emulator.count("/open-apis/vc/v1/exports/download") == 0


def test_without_the_extra_tables_raise_airflows_optional_feature_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from airflow_provider_feishu_vc import tables
    from airflow_provider_feishu_vc.compat import AirflowOptionalProviderFeatureException

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastexcel" else real(name, *a))
    with pytest.raises(
        AirflowOptionalProviderFeatureException, match=r'fastexcel.*"airflow-provider-feishu-vc\[tables\]"'
    ):
        tables.read_export(b"", "meeting_list")


def test_openlineage_reports_the_tables_schema(
    airflow_db: str, emulator: FeishuVCEmulator, connection_env: str, tmp_path: Path
) -> None:
    from tests.conftest import airflow_cli

    emulator.configure(export_delay=3600, processing_polls=1)
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "feishu-vc-tests",
        "AIRFLOW__FEISHU_VC__STORAGE_BASE": (tmp_path / "exports").as_uri(),
    }
    airflow_cli("dags", "test", "feishu_vc_test_one_task_parquet", env=env)
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    [complete] = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".export")]
    [output] = complete["outputs"]
    assert output["name"].endswith(".parquet")
    fields = output["facets"]["schema"]["fields"]
    assert [f["name"] for f in fields] == [c.name for c in CONTRACTS["meeting_list"]]
    assert {f["name"]: f["type"] for f in fields}["meeting_start_time"] == "timestamp[us, tz=UTC]"
