"""The emulator behaves like Feishu: the official SDK drives it, and its rate limit and token rules hold."""

from __future__ import annotations

import datetime as dt
import io
import time

import httpx
import openpyxl

from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from airflow_provider_feishu_vc.testing.data import COLUMNS
from tests.conftest import APP_ID, APP_SECRET

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)


def test_the_official_sdk_drives_the_emulator(emulator: FeishuVCEmulator) -> None:
    import lark_oapi as lark
    from lark_oapi.api.vc.v1 import (
        DownloadExportRequest,
        GetExportRequest,
        MeetingListExportRequest,
        MeetingListExportRequestBody,
    )

    client = lark.Client.builder().app_id(APP_ID).app_secret(APP_SECRET).domain(emulator.url).build()
    start = int((NOW - dt.timedelta(hours=6)).timestamp())
    body = MeetingListExportRequestBody.builder().start_time(start).end_time(int(NOW.timestamp())).build()
    created = client.vc.v1.export.meeting_list(MeetingListExportRequest.builder().request_body(body).build())
    assert created.success(), (created.code, created.msg)
    emulator.finish_now()
    status = client.vc.v1.export.get(GetExportRequest.builder().task_id(created.data.task_id).build())
    assert status.success() and status.data.status == 3 and status.data.file_token
    download = client.vc.v1.export.download(DownloadExportRequest.builder().file_token(status.data.file_token).build())
    assert download.success(), (download.code, download.msg)
    rows = list(openpyxl.load_workbook(io.BytesIO(download.file.read()), read_only=True).active.iter_rows())
    assert len(rows) == 1 + 6
    # The SDK looks the header up case-sensitively (a known weakness), so read it ourselves.
    headers = {name.lower(): value for name, value in download.raw.headers.items()}
    assert headers["content-disposition"].endswith(".xlsx")


def test_every_kind_has_its_documented_column_count() -> None:
    assert {kind: len(columns) for kind, columns in COLUMNS.items()} == {
        "meeting_list": 17,
        "participant_list": 23,
        "participant_quality_list": 35,
        "resource_reservation_list": 15,
    }


def test_rate_limit_answers_like_feishu() -> None:
    with FeishuVCEmulator(app_id=APP_ID, app_secret=APP_SECRET, rate_limit=3, rate_window=1.0) as emulator:
        token = httpx.post(emulator.url + TOKEN_PATH, json={"app_id": APP_ID, "app_secret": APP_SECRET}).json()
        headers = {"Authorization": f"Bearer {token['tenant_access_token']}"}
        answers = [httpx.get(emulator.url + "/open-apis/vc/v1/exports/1", headers=headers) for _ in range(4)]
        assert [a.status_code for a in answers] == [404, 404, 404, 429]
        limited = answers[-1]
        assert limited.json() == {"code": 99991400, "msg": "request trigger frequency limit"}
        assert limited.headers["x-ogw-ratelimit-limit"] == "3"
        assert 0 < float(limited.headers["x-ogw-ratelimit-reset"]) <= 1.0
        assert all(a.headers.get("X-Tt-Logid") for a in answers)
        time.sleep(float(limited.headers["x-ogw-ratelimit-reset"]))
        assert httpx.get(emulator.url + "/open-apis/vc/v1/exports/1", headers=headers).status_code == 404


def test_tokens_are_reused_then_renewed_and_expire(emulator: FeishuVCEmulator) -> None:
    credentials = {"app_id": APP_ID, "app_secret": APP_SECRET}
    with FeishuVCEmulator(app_id=APP_ID, app_secret=APP_SECRET, token_ttl=2.0) as short:
        first = httpx.post(short.url + TOKEN_PATH, json=credentials).json()
        again = httpx.post(short.url + TOKEN_PATH, json=credentials).json()
        assert again["tenant_access_token"] == first["tenant_access_token"] and again["expire"] <= first["expire"]
        time.sleep(1.6)  # under a quarter of its life left: a new token, the old one still valid
        renewed = httpx.post(short.url + TOKEN_PATH, json=credentials).json()
        assert renewed["tenant_access_token"] != first["tenant_access_token"]
        old = {"Authorization": f"Bearer {first['tenant_access_token']}"}
        assert httpx.get(short.url + "/open-apis/vc/v1/exports/1", headers=old).json()["code"] == 121004
        time.sleep(0.5)  # now the first one has expired
        assert httpx.get(short.url + "/open-apis/vc/v1/exports/1", headers=old).json()["code"] == 99991663


def test_token_endpoints_refuse_get_and_bad_credentials(emulator: FeishuVCEmulator) -> None:
    assert httpx.get(emulator.url + TOKEN_PATH).status_code == 404
    wrong = httpx.post(emulator.url + TOKEN_PATH, json={"app_id": "cli_other", "app_secret": "x"})
    assert wrong.status_code == 200 and wrong.json()["code"] == 10003
