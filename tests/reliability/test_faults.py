"""Every fault Feishu or the network can throw, driven through the Hook (worker side) and the Trigger
(triggerer side): retried where worth it, a precise error otherwise, never a hang or a traceback soup."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from airflow_provider_feishu_vc.client.api import ExportStatus
from airflow_provider_feishu_vc.client.errors import (
    FeishuVCAPIError,
    FeishuVCConfigError,
    FeishuVCTransportError,
)
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from airflow_provider_feishu_vc.triggers.feishu_vc import FeishuVCExportTrigger
from tests.conftest import APP_ID, APP_SECRET, UNPACED
from tests.reliability.conftest import never_answer, reset_at_once, reset_mid_response

NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
EXPORTS = "/open-apis/vc/v1/exports/"


def use(monkeypatch: pytest.MonkeyPatch, host: str, **extra: object) -> FeishuVCHook:
    extra = {**UNPACED, **extra}
    connection = {"conn_type": "feishu_vc", "host": host, "login": APP_ID, "password": APP_SECRET, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_DEFAULT", json.dumps(connection))
    return FeishuVCHook()


def new_export(hook: FeishuVCHook) -> str:
    return hook.create_export("meeting_list", start_time=NOW - dt.timedelta(hours=1), end_time=NOW)


async def trigger_event(export_task_id: str, deadline: float | None = None) -> dict:
    events = [
        e.payload async for e in FeishuVCExportTrigger(export_task_id, poll_interval=0.05, deadline=deadline).run()
    ]
    assert len(events) == 1
    return events[0]


# -- network --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("misbehaviour", [reset_at_once, reset_mid_response], ids=["reset", "reset-mid-response"])
def test_reset_connections_are_retried_then_name_host_and_attempts(
    monkeypatch: pytest.MonkeyPatch, raw_server, misbehaviour
) -> None:
    server = raw_server(misbehaviour)
    hook = use(monkeypatch, server.url, max_retries=2)
    with pytest.raises(FeishuVCTransportError) as raised:
        hook.get_conn().access_token()
    assert server.connections == 3
    assert server.url in str(raised.value) and "after 3 attempt(s)" in str(raised.value)


def test_read_timeout_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch, raw_server) -> None:
    server = raw_server(never_answer)
    hook = use(monkeypatch, server.url, max_retries=1, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(FeishuVCTransportError, match="ReadTimeout"):
        hook.get_conn().access_token()
    assert server.connections == 2 and time.monotonic() - started < 5


def test_connection_refused_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = use(monkeypatch, "http://127.0.0.1:9", max_retries=2)
    with pytest.raises(FeishuVCTransportError, match=r"Could not reach http://127.0.0.1:9 after 3 attempt"):
        hook.get_conn().access_token()


def test_dns_failure_is_reported_with_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = use(monkeypatch, "https://feishu.does-not-exist.invalid", max_retries=1, timeout=5)
    with pytest.raises(FeishuVCTransportError, match=r"feishu\.does-not-exist\.invalid after 2 attempt"):
        hook.get_conn().access_token()


async def test_trigger_keeps_waiting_through_an_outage_until_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, "http://127.0.0.1:9", max_retries=0)
    started = time.time()
    event = await trigger_event("42", deadline=started + 1.0)
    assert event["status"] == "timeout" and 0.9 <= time.time() - started < 3


# -- Feishu answers -------------------------------------------------------------------------------------------

TRANSIENT = [
    ("http_error", {"status": 500, "code": 121001}),
    ("http_error", {"status": 503, "code": 0}),
    ("gateway_html", {"status": 502}),
    ("gateway_html", {"status": 504}),
    ("rate_limit", {"reset": 0.2}),
    ("rate_limit", {"reset": None}),
]


@pytest.mark.parametrize(("fault", "params"), TRANSIENT, ids=[f"{f}-{p}" for f, p in TRANSIENT])
def test_hook_recovers_from_transient_bursts(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, fault: str, params: dict
) -> None:
    hook = use(monkeypatch, emulator.url)
    export_task_id = new_export(hook)
    emulator.inject(fault, path=EXPORTS + export_task_id, times=3, **params)
    assert hook.get_export(export_task_id).status in (ExportStatus.PROCESSING, ExportStatus.DONE)
    assert emulator.count(EXPORTS + export_task_id) == 4


@pytest.mark.parametrize(("fault", "params"), TRANSIENT, ids=[f"{f}-{p}" for f, p in TRANSIENT])
async def test_trigger_recovers_from_transient_bursts(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, fault: str, params: dict
) -> None:
    hook = use(monkeypatch, emulator.url, max_retries=0, rate_limit_per_minute=60_000)
    export_task_id = new_export(hook)
    emulator.inject(fault, path=EXPORTS + export_task_id, times=3, **params)
    event = await trigger_event(export_task_id)
    assert event["status"] == "success"


PERMANENT = [121002, 121003, 121004, 121005, 99991672, 99991679, 99991673, 99991401, 99991403]


@pytest.mark.parametrize("code", PERMANENT)
async def test_trigger_ends_at_once_on_permanent_codes(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    hook = use(monkeypatch, emulator.url, rate_limit_per_minute=60_000)
    export_task_id = new_export(hook)
    emulator.inject("error_code", path=EXPORTS + export_task_id, code=code, status=400, times=5)
    event = await trigger_event(export_task_id)
    assert event["status"] == "error" and event["code"] == code
    assert export_task_id in event["message"]
    assert emulator.count(EXPORTS + export_task_id) == 1


@pytest.mark.parametrize("code", [99991661, 99991663, 99991664, 99991665, 99991671])
async def test_trigger_replaces_a_rejected_token_once(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    hook = use(monkeypatch, emulator.url, rate_limit_per_minute=60_000)
    export_task_id = new_export(hook)
    emulator.inject("token_invalid", code=code)
    assert (await trigger_event(export_task_id))["status"] == "success"
    emulator.inject("token_invalid", code=code, times=2)
    event = await trigger_event(export_task_id)
    assert event["status"] == "error" and event["code"] == code


async def test_trigger_reports_malformed_json_and_missing_file_token(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = use(monkeypatch, emulator.url, rate_limit_per_minute=60_000)
    export_task_id = new_export(hook)
    emulator.finish_now()
    emulator.inject("missing_file_token", path=EXPORTS + export_task_id)
    event = await trigger_event(export_task_id)
    assert event["status"] == "error" and "no file_token" in event["message"]
    emulator.inject("malformed_json", path=EXPORTS + export_task_id)
    event = await trigger_event(export_task_id)
    assert event["status"] == "error" and "not a Feishu JSON envelope" in event["message"]


def test_persistent_html_gateway_error_quotes_the_status(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = use(monkeypatch, emulator.url, max_retries=1)
    export_task_id = new_export(hook)
    emulator.inject("gateway_html", path=EXPORTS + export_task_id, status=504, times=5)
    with pytest.raises(FeishuVCAPIError, match=r"HTTP 504\): the answer is not a Feishu JSON envelope: <html>"):
        hook.get_export(export_task_id)


# -- downloads ------------------------------------------------------------------------------------------------


def done_file_token(emulator: FeishuVCEmulator, hook: FeishuVCHook) -> str:
    export_task_id = new_export(hook)
    emulator.finish_now()
    return emulator.export(export_task_id).file_token


@pytest.mark.parametrize(
    ("fault", "params", "message"),
    [
        ("drop_connection", {"after_bytes": 800}, "Could not reach"),
        ("truncate", {"after_bytes": 800}, "Could not reach"),
        ("empty_file", {}, "empty file"),
    ],
)
def test_bad_downloads_leave_the_destination_empty(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path, fault: str, params: dict, message: str
) -> None:
    hook = use(monkeypatch, emulator.url)
    file_token = done_file_token(emulator, hook)
    emulator.inject(fault, path=EXPORTS + "download", **params)
    with pytest.raises(Exception, match=message):
        hook.download_export(file_token, tmp_path / "day.xlsx")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination_is_a_clear_error(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    hook = use(monkeypatch, emulator.url)
    file_token = done_file_token(emulator, hook)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(OSError):
        hook.download_export(file_token, tmp_path / "a-file" / "day.xlsx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_existing_destination_is_kept(emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    hook = use(monkeypatch, emulator.url)
    file_token = done_file_token(emulator, hook)
    (tmp_path / "day.xlsx").write_bytes(b"yesterday's file")
    with pytest.raises(FeishuVCConfigError, match="already exists"):
        hook.download_export(file_token, tmp_path / "day.xlsx")
    assert (tmp_path / "day.xlsx").read_bytes() == b"yesterday's file"


def test_worker_killed_mid_download_leaves_no_file_at_the_destination(
    emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    import subprocess
    import sys

    hook = use(monkeypatch, emulator.url)
    file_token = done_file_token(emulator, hook)
    emulator.inject("slow_body", path=EXPORTS + "download", chunk=256, seconds=0.2)
    target = tmp_path / "day.xlsx"
    script = (
        "from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook\n"
        f"FeishuVCHook().download_export({file_token!r}, {str(target)!r})\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".day.xlsx.*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(".day.xlsx.*.part")), "the download never started"
    worker.kill()  # kill -9 mid-download
    worker.wait()
    assert not target.exists()
