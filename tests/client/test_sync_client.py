"""The blocking client over real HTTP against the emulator."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import threading
import time

import openpyxl
import pytest

from airflow_provider_feishu_vc.client.api import ExportStatus
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import (
    FeishuVCAPIError,
    FeishuVCDownloadError,
    FeishuVCTransportError,
)
from airflow_provider_feishu_vc.client.sync_client import FeishuVCClient
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from tests.conftest import APP_ID, APP_SECRET, FAST_RETRIES, UNPACED

NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
DAY_RANGE = {"start_time": NOW - dt.timedelta(days=1), "end_time": NOW}
TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"


def client_for(config: ClientConfig, **options: object) -> FeishuVCClient:
    return FeishuVCClient(config, policy=FAST_RETRIES, **options)  # type: ignore[arg-type]


def wait_done(client: FeishuVCClient, export_task_id: str, seconds: float = 5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        task = client.get_export(export_task_id)
        if task.status is not ExportStatus.PROCESSING:
            return task
        time.sleep(0.05)
    raise AssertionError(f"export {export_task_id} still processing after {seconds}s")


# -- tokens ------------------------------------------------------------------------------------------------


def test_self_built_app_token_is_fetched_once_and_reused(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    client = client_for(config)
    first = client.access_token()
    assert first.startswith("t-")
    assert client.access_token() == first
    client.create_export("meeting_list", **DAY_RANGE)
    # A second client for the same app shares the process-wide cache.
    client_for(config).create_export("meeting_list", **DAY_RANGE)
    assert emulator.count(TOKEN_PATH) == 1


def test_store_app_fetches_app_token_then_tenant_token(emulator: FeishuVCEmulator) -> None:
    config = ClientConfig.from_connection_parts(
        host=emulator.url,
        login=APP_ID,
        password=APP_SECRET,
        extra={
            "app_type": "store",
            "tenant_key": "tenant-1",
            "app_ticket_secret": emulator.options.app_ticket,
            **UNPACED,
        },
    )
    client = client_for(config)
    assert client.create_export("meeting_list", **DAY_RANGE).isdigit()
    assert emulator.count("/open-apis/auth/v3/app_access_token") == 1
    assert emulator.count("/open-apis/auth/v3/tenant_access_token") == 1


def test_store_app_with_stale_ticket_asks_for_a_new_one(emulator: FeishuVCEmulator) -> None:
    config = ClientConfig.from_connection_parts(
        host=emulator.url,
        login=APP_ID,
        password=APP_SECRET,
        extra={"app_type": "store", "tenant_key": "tenant-1", "app_ticket_secret": "old-ticket"},
    )
    with pytest.raises(FeishuVCAPIError) as raised:
        client_for(config).access_token()
    assert raised.value.code == 10012
    assert "app_ticket_secret" in str(raised.value)
    assert emulator.count("/open-apis/auth/v3/app_ticket/resend") == 1


def test_user_token_is_refreshed_and_its_refresh_token_rotated(emulator: FeishuVCEmulator) -> None:
    config = ClientConfig.from_connection_parts(
        host=emulator.url,
        login=APP_ID,
        password=APP_SECRET,
        extra={"refresh_token": "emulator-refresh-token", **UNPACED},
    )
    client = client_for(config)
    first = client.access_token()
    assert first.startswith("u-")
    second = client.access_token(stale=first)  # Feishu rejected it: refresh with the rotated refresh token
    assert second != first and second.startswith("u-")
    assert emulator.count("/open-apis/authen/v2/oauth/token", status=200) == 2


def test_a_given_user_token_is_used_then_refreshed_when_rejected(emulator: FeishuVCEmulator) -> None:
    config = ClientConfig.from_connection_parts(
        host=emulator.url,
        login=APP_ID,
        password=APP_SECRET,
        extra={"user_access_token": "u-not-known-to-feishu", "refresh_token": "emulator-refresh-token", **UNPACED},
    )
    assert client_for(config).create_export("meeting_list", **DAY_RANGE).isdigit()
    assert emulator.count("/open-apis/vc/v1/exports/meeting_list", status=400) == 1  # 99991677 once
    assert emulator.count("/open-apis/authen/v2/oauth/token") == 1


def test_bad_app_secret_reports_feishus_code(emulator: FeishuVCEmulator) -> None:
    config = ClientConfig.from_connection_parts(host=emulator.url, login=APP_ID, password="wrong-secret")
    with pytest.raises(FeishuVCAPIError) as raised:
        client_for(config).access_token()
    assert raised.value.code == 10015
    assert "App Secret" in str(raised.value)
    assert emulator.count(TOKEN_PATH) == 1  # not retried


def test_fifty_threads_cause_one_token_fetch(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    emulator.inject("latency", path=TOKEN_PATH, seconds=0.3)
    barrier = threading.Barrier(50)
    tokens: list[str] = []

    def ask() -> None:
        barrier.wait()
        tokens.append(client_for(config).access_token())

    threads = [threading.Thread(target=ask) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tokens) == 50 and len(set(tokens)) == 1
    assert emulator.count(TOKEN_PATH) == 1


def test_token_is_renewed_before_it_expires() -> None:
    with FeishuVCEmulator(app_id=APP_ID, app_secret=APP_SECRET, token_ttl=2.0) as emulator:
        config = ClientConfig.from_connection_parts(host=emulator.url, login=APP_ID, password=APP_SECRET)
        client = client_for(config)
        first = client.access_token()
        time.sleep(1.6)  # within the last quarter of its life: renew before Feishu would reject it
        second = client.access_token()
        assert second != first
        assert client.create_export("meeting_list", **DAY_RANGE).isdigit()
        assert emulator.count(status=400) == 0  # never sent an expired token


def test_revoked_token_is_replaced_and_the_request_replayed_once(
    emulator: FeishuVCEmulator, config: ClientConfig
) -> None:
    client = client_for(config)
    first = client.access_token()
    emulator.revoke_tokens()
    assert client.create_export("meeting_list", **DAY_RANGE).isdigit()
    assert client.access_token() != first
    assert emulator.count("/open-apis/vc/v1/exports/meeting_list") == 2
    assert emulator.count(TOKEN_PATH) == 2


@pytest.mark.parametrize("code", [99991661, 99991663, 99991664, 99991665, 99991671])
def test_every_token_invalid_code_is_replayed_once_then_reported(
    emulator: FeishuVCEmulator, config: ClientConfig, code: int
) -> None:
    client = client_for(config)
    emulator.inject("token_invalid", code=code, times=1)
    assert client.create_export("meeting_list", **DAY_RANGE).isdigit()
    emulator.inject("token_invalid", code=code, times=2)
    with pytest.raises(FeishuVCAPIError) as raised:
        client.create_export("meeting_list", **DAY_RANGE)
    assert raised.value.code == code


# -- exports -----------------------------------------------------------------------------------------------


def test_every_kind_can_be_created(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    client = client_for(config)
    meeting = {"meeting_start_time": NOW - dt.timedelta(hours=2), "meeting_end_time": NOW, "meeting_no": "123456789"}
    ids = [
        client.create_export("meeting_list", user_id_type="open_id", **DAY_RANGE),
        client.create_export("participant_list", **meeting),
        client.create_export(
            "participant_quality_list", join_time=NOW - dt.timedelta(hours=1), user_id="ou_1", **meeting
        ),
        client.create_export("resource_reservation_list", room_level_id="omb_1", room_ids=["omm_1"], **DAY_RANGE),
    ]
    assert [emulator.export(i).kind for i in ids] == [
        "meeting_list",
        "participant_list",
        "participant_quality_list",
        "resource_reservation_list",
    ]
    assert emulator.export(ids[0]).body["start_time"] == str(int(DAY_RANGE["start_time"].timestamp()))


def test_feishu_side_validation_error_is_reported_with_its_field(
    emulator: FeishuVCEmulator, config: ClientConfig
) -> None:
    # The client checks types and combinations; the 9-digit form of a meeting number is Feishu's to refuse.
    with pytest.raises(FeishuVCAPIError) as raised:
        client_for(config).create_export("meeting_list", meeting_no="12345", **DAY_RANGE)
    assert raised.value.code == 121003 and raised.value.http_status == 400
    assert "meeting_no" in str(raised.value)
    assert emulator.count("/open-apis/vc/v1/exports/meeting_list") == 1  # 121003 is never retried


def test_status_moves_from_processing_to_done(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    client = client_for(config)
    export_task_id = client.create_export("meeting_list", **DAY_RANGE)
    assert client.get_export(export_task_id).status is ExportStatus.PROCESSING
    task = wait_done(client, export_task_id)
    assert task.status is ExportStatus.DONE and task.file_token and task.url
    assert task.export_task_id == export_task_id


def test_failed_export_carries_fail_msg(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    emulator.state.fail_next.append("too many meetings")
    client = client_for(config)
    task = wait_done(client, client.create_export("meeting_list", **DAY_RANGE))
    assert task.status is ExportStatus.FAILED and task.fail_msg == "too many meetings"


def test_unknown_export_is_feishus_121004(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    with pytest.raises(FeishuVCAPIError) as raised:
        client_for(config).get_export("123")
    assert raised.value.code == 121004 and "does not exist" in str(raised.value)


def test_unknown_status_and_missing_file_token_are_errors(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    client = client_for(config)
    export_task_id = client.create_export("meeting_list", **DAY_RANGE)
    emulator.inject("unknown_status", path=f"/open-apis/vc/v1/exports/{export_task_id}")
    with pytest.raises(FeishuVCAPIError, match="unknown status 7"):
        client.get_export(export_task_id)
    emulator.finish_now()
    emulator.inject("missing_file_token", path=f"/open-apis/vc/v1/exports/{export_task_id}")
    with pytest.raises(FeishuVCAPIError, match="no file_token"):
        client.get_export(export_task_id)


def test_download_streams_a_real_workbook(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    client = client_for(config)
    task = wait_done(client, client.create_export("meeting_list", **DAY_RANGE))
    with client.open_download(task.file_token, chunk_size=1024) as download:
        chunks = list(download.chunks)
    assert len(chunks) > 1  # really streamed in pieces
    content = b"".join(chunks)
    assert download.info.size == len(content)
    assert download.info.filename == f"视频会议_meeting_list_{task.export_task_id}.xlsx"
    sheet = openpyxl.load_workbook(io.BytesIO(content), read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    assert len(rows[0]) == 17 and rows[0][0] == "会议ID"  # the documented headers
    assert len(rows) == 1 + 24  # header + one meeting per hour of the day


def test_cut_download_is_an_error(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    client = client_for(config)
    task = wait_done(client, client.create_export("meeting_list", **DAY_RANGE))
    emulator.inject("truncate", path="/open-apis/vc/v1/exports/download", after_bytes=100)
    with pytest.raises((FeishuVCTransportError, FeishuVCDownloadError)):
        with client.open_download(task.file_token) as download:
            b"".join(download.chunks)


# -- retries and errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "params"),
    [
        ("http_error", {"status": 500, "code": 121001}),
        ("http_error", {"status": 503, "code": 121001}),
        ("gateway_html", {"status": 502}),
        ("gateway_html", {"status": 504}),
        ("rate_limit", {"reset": 0.2}),
        ("rate_limit", {"reset": None}),
    ],
)
def test_transient_errors_are_retried(
    emulator: FeishuVCEmulator, config: ClientConfig, fault: str, params: dict
) -> None:
    client = client_for(config)
    client.access_token()
    emulator.inject(fault, path="/open-apis/vc/", times=2, **params)
    assert client.create_export("meeting_list", **DAY_RANGE).isdigit()
    assert emulator.count("/open-apis/vc/v1/exports/meeting_list") == 3


def test_rate_limit_waits_the_reset_time(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    client = client_for(config)
    client.access_token()
    emulator.inject("rate_limit", path="/open-apis/vc/", reset=0.5)
    started = time.monotonic()
    client.create_export("meeting_list", **DAY_RANGE)
    assert time.monotonic() - started >= 0.5


def test_html_error_that_persists_quotes_the_http_status(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    client = client_for(config)
    client.access_token()
    emulator.inject("gateway_html", path="/open-apis/vc/", status=502, times=10)
    with pytest.raises(FeishuVCAPIError) as raised:
        client.create_export("meeting_list", **DAY_RANGE)
    assert raised.value.http_status == 502 and raised.value.code is None
    assert "not a Feishu JSON envelope" in str(raised.value) and "after 4 attempts" in str(raised.value)


def test_malformed_json_is_a_clear_error(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    client = client_for(config)
    client.access_token()
    emulator.inject("malformed_json", path="/open-apis/vc/")
    with pytest.raises(FeishuVCAPIError, match="not a Feishu JSON envelope"):
        client.create_export("meeting_list", **DAY_RANGE)


@pytest.mark.parametrize(
    ("code", "status", "hint"),
    [
        (121002, 400, "does not support"),
        (121003, 400, "rejected a parameter"),
        (121004, 404, "does not exist"),
        (121005, 403, "'Meeting management' admin role"),
        (99991672, 400, "lacks an API scope"),
        (99991679, 400, "authorize the app again"),
        (99991673, 400, "not installed"),
        (99991401, 400, "allow-list"),
        (99991403, 400, "quota"),
    ],
)
def test_permanent_codes_are_not_retried_and_say_what_to_fix(
    emulator: FeishuVCEmulator, config: ClientConfig, code: int, status: int, hint: str
) -> None:
    client = client_for(config)
    client.access_token()
    emulator.inject("error_code", path="/open-apis/vc/", code=code, status=status, times=5)
    with pytest.raises(FeishuVCAPIError) as raised:
        client.create_export("meeting_list", **DAY_RANGE)
    assert raised.value.code == code and hint in str(raised.value)
    assert raised.value.log_id  # X-Tt-Logid is carried for support tickets
    assert emulator.count("/open-apis/vc/v1/exports/meeting_list") == 1


def test_missing_scope_names_it(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    emulator.state.granted_scopes.clear()
    with pytest.raises(FeishuVCAPIError) as raised:
        client_for(config).create_export("meeting_list", **DAY_RANGE)
    assert raised.value.code == 99991672 and "Missing: vc:export" in str(raised.value)


def test_connection_refused_is_retried_then_names_host_and_attempts() -> None:
    config = ClientConfig.from_connection_parts(host="http://127.0.0.1:9", login=APP_ID, password=APP_SECRET)
    with pytest.raises(FeishuVCTransportError) as raised:
        client_for(config).access_token()
    assert "http://127.0.0.1:9" in str(raised.value) and "after 4 attempt(s)" in str(raised.value)


def test_redirects_are_not_followed(emulator: FeishuVCEmulator, config: ClientConfig) -> None:
    with FeishuVCEmulator(app_id=APP_ID, app_secret=APP_SECRET, host="127.0.0.2") as elsewhere:
        client = client_for(config)
        client.access_token()
        emulator.inject("redirect", path="/open-apis/vc/", location=f"{elsewhere.url}/open-apis/vc/v1/exports/1")
        with pytest.raises(FeishuVCAPIError, match="HTTP 302"):
            client.get_export("1")
        assert elsewhere.requests == []  # the token never crossed to another host


def test_calls_of_one_process_share_a_paced_budget(emulator: FeishuVCEmulator) -> None:
    config = ClientConfig.from_connection_parts(
        host=emulator.url, login=APP_ID, password=APP_SECRET, extra={"rate_limit_per_minute": 540}
    )  # 90% of 540/min: one request every 0.123 s
    client_for(config).access_token()

    def poll_unknown_export() -> None:
        with pytest.raises(FeishuVCAPIError, match="121004"):
            client_for(config).get_export("7")

    threads = [threading.Thread(target=poll_unknown_export) for _ in range(3)]
    threads += [threading.Thread(target=lambda: client_for(config).create_export("meeting_list", **DAY_RANGE))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert emulator.count("/open-apis/vc/v1/exports/meeting_list") == 1  # its own API, its own budget
    times = sorted(r.at for r in emulator.requests if r.path == "/open-apis/vc/v1/exports/7")
    assert len(times) == 3
    assert all(later - earlier >= 0.11 for earlier, later in itertools.pairwise(times)), times
