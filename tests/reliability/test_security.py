"""Secrets stay secret, tokens go only to the API origin, TLS is verified, and bad input never reaches Feishu."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pendulum
import pytest
from airflow.exceptions import AirflowNotFoundException

from airflow_provider_feishu_vc.client import file_transport
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError, FeishuVCError, FeishuVCTransportError
from airflow_provider_feishu_vc.client.protocol import HttpRequest
from airflow_provider_feishu_vc.compat import AIRFLOW_VERSION
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.sensors.feishu_vc import FeishuVCExportSensor
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from airflow_provider_feishu_vc.triggers.feishu_vc import FeishuVCExportTrigger
from tests.conftest import APP_ID, APP_SECRET, UNPACED, load_dag_file

NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
HOSTILE_EXPORT_IDS = ["", "abc", "../../auth/v3/tenant_access_token/internal", "%2e%2e", "1?x=1", "1/download", " 1"]


def use(monkeypatch: pytest.MonkeyPatch, host: str | None, **fields: object) -> FeishuVCHook:
    connection = {"conn_type": "feishu_vc", "host": host, "login": APP_ID, "password": APP_SECRET, **fields}
    connection["extra"] = {**UNPACED, **connection.get("extra", {})}
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_DEFAULT", json.dumps(connection))
    return FeishuVCHook()


def test_secrets_stay_out_of_logs_xcoms_rendered_fields_and_trigger_rows(
    airflow_db: str, emulator: FeishuVCEmulator, connection_env: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.models import RenderedTaskInstanceFields, Trigger
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    emulator.configure(export_delay=1.0)
    dag = load_dag_file("feishu_vc_test_dags.py").deferrable_dag
    run = dag.test(logical_date=pendulum.now("Asia/Shanghai").start_of("day"))
    output = "".join(capfd.readouterr())
    assert run.state == "success"
    secrets = [APP_SECRET, *emulator.issued_tokens()]
    with create_session() as session:
        stored = [
            json.dumps(x.value, default=str)
            for x in session.query(XComModel).filter(XComModel.dag_id == dag.dag_id, XComModel.run_id == run.run_id)
        ]
        stored += [
            json.dumps(r.rendered_fields, default=str)
            for r in session.query(RenderedTaskInstanceFields).filter(RenderedTaskInstanceFields.dag_id == dag.dag_id)
        ]
        stored += [json.dumps(t.kwargs, default=str) for t in session.query(Trigger).all()]
    assert len(stored) >= 3  # the three XComs at least were read
    for secret in secrets:
        assert secret not in output
        assert all(secret not in text for text in stored)


def test_errors_never_quote_the_secret(emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {"conn_type": "feishu_vc", "host": emulator.url, "login": APP_ID, "password": "wrong-but-secret"}
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_DEFAULT", json.dumps(connection))
    with pytest.raises(FeishuVCError) as raised:
        FeishuVCHook().get_conn().access_token()
    assert "wrong-but-secret" not in str(raised.value) and "wrong-but-secret" not in repr(raised.value.__dict__)


def test_the_status_url_is_never_fetched_with_our_token(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    hook = use(monkeypatch, emulator.url)
    export_task_id = hook.create_export("meeting_list", start_time=NOW - dt.timedelta(hours=1), end_time=NOW)
    emulator.finish_now()
    task = hook.get_export(export_task_id)
    assert task.url and task.url.startswith(emulator.url + "/cdn/")
    hook.download_export(task.file_token, tmp_path / "f.xlsx")
    assert not [r for r in emulator.requests if not r.path.startswith("/open-apis/")]


def test_tls_is_verified_by_default(tls_emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = use(monkeypatch, tls_emulator.url, extra={"max_retries": 0})
    with pytest.raises(FeishuVCTransportError, match="CERTIFICATE_VERIFY_FAILED"):
        hook.get_conn().access_token()
    assert tls_emulator.requests == []


def test_a_download_verifies_tls_as_the_api_calls_do(tls_emulator: FeishuVCEmulator) -> None:
    config = ClientConfig.from_connection_parts(host=tls_emulator.url, login=APP_ID, password=APP_SECRET)
    request = HttpRequest("GET", "/open-apis/vc/v1/exports/download", params=(("file_token", "x"),), stream=True)
    with pytest.raises(FeishuVCTransportError, match="CERTIFICATE_VERIFY_FAILED"):
        file_transport.open_file(file_transport.file_pool(config), config, request, "sync")
    assert tls_emulator.requests == []


def test_a_download_over_tls_with_verification_off(
    tls_emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hook = use(monkeypatch, tls_emulator.url, extra={"verify_ssl": False})
    export_task_id = hook.create_export("meeting_list", start_time=NOW - dt.timedelta(hours=1), end_time=NOW)
    tls_emulator.finish_now()
    landed = hook.download_export(hook.get_export(export_task_id).file_token, tmp_path / "f.xlsx")
    assert landed.read_bytes().startswith(b"PK")  # an xlsx is a zip archive


def test_turning_tls_verification_off_is_explicit_and_logged(
    tls_emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hook = use(monkeypatch, tls_emulator.url, extra={"verify_ssl": False})
    assert hook.get_conn().access_token().startswith("t-")
    assert "TLS certificate verification is OFF" in capsys.readouterr().out


# -- bad input is refused before any request ---------------------------------------------------------------------


@pytest.mark.parametrize("export_task_id", HOSTILE_EXPORT_IDS)
def test_hostile_export_ids_are_refused_everywhere_before_sending(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, export_task_id: str
) -> None:
    hook = use(monkeypatch, emulator.url)
    with pytest.raises(FeishuVCConfigError, match="export_task_id"):
        hook.get_export(export_task_id)
    with pytest.raises(FeishuVCConfigError, match="export_task_id"):
        FeishuVCExportTrigger(export_task_id)
    with pytest.raises(FeishuVCConfigError, match="export_task_id"):
        FeishuVCExportSensor(task_id="s", export_task_id=export_task_id, deferrable=False).poke({})  # type: ignore[arg-type]
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"login": ""}, r"login \(App ID\): is empty"),
        ({"password": None}, r"password \(App Secret\): is empty"),
        ({"host": "http://feishu.example.com"}, "host: .* plain http"),
        ({"extra": {"app_type": "isv"}}, "extra.app_type: is 'isv'; allowed: self_built, store"),
        ({"extra": {"app_type": "store", "app_ticket_secret": "t"}}, "extra.tenant_key: is required"),
        ({"extra": "{not json"}, "extra: is not valid JSON"),
        ({"extra": {"timeout": "fast"}}, "extra.timeout: must be int or float"),
        ({"extra": {"proxy": "x"}}, "extra.proxy: is not a known option"),
    ],
)
def test_bad_connections_are_refused_by_field(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, fields: dict, message: str
) -> None:
    connection = {"conn_type": "feishu_vc", "host": emulator.url, "login": APP_ID, "password": APP_SECRET, **fields}
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_DEFAULT", json.dumps(connection))
    if fields == {"extra": "{not json"} and AIRFLOW_VERSION < (3, 2):
        # Airflow 3.1 refuses such a connection itself, before the provider sees it.
        with pytest.raises(AirflowNotFoundException, match="feishu_vc_default"):
            FeishuVCHook().get_conn()
    else:
        with pytest.raises(FeishuVCConfigError, match=f"connection 'feishu_vc_default' {message}"):
            FeishuVCHook().get_conn()
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start_time": "last week", "end_time": NOW}, "start_time: is 'last week'"),
        ({"start_time": 1_700_000_000_000, "end_time": NOW}, r"start_time: .* \(unix seconds, not ms\)"),
        ({"start_time": NOW, "end_time": NOW - dt.timedelta(hours=1)}, "end_time: .* must be after start_time"),
        ({"start_time": NOW - dt.timedelta(hours=1), "end_time": NOW, "meeting_type": "2"}, None),
        ({"start_time": NOW - dt.timedelta(hours=1), "end_time": NOW, "user_id": "ou_1", "room_id": "omm_1"},
         "room_id: cannot be combined with user_id"),
        ({"start_time": NOW - dt.timedelta(hours=1), "end_time": NOW, "meeting_status": True}, "meeting_status"),
    ],
)  # fmt: skip
def test_bad_export_fields_never_reach_feishu(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, fields: dict, message: str | None
) -> None:
    hook = use(monkeypatch, emulator.url)
    if message is None:  # a numeric string for an integer field is accepted and sent as an integer
        export_task_id = hook.create_export("meeting_list", **fields)
        assert emulator.export(export_task_id).body["meeting_type"] == 2
        return
    with pytest.raises(FeishuVCConfigError, match=message):
        hook.create_export("meeting_list", **fields)
    assert emulator.count("/open-apis/vc/v1/exports/meeting_list") == 0
