"""The emulator behaves like Feishu, no stricter and no looser: each documented fact beside the test that holds it.

Facts come from ``shared/feishu-vc-api.md`` (Feishu's pages for the export API, tokens, rate limits and generic
errors, and the official SDK lark-oapi 1.7.5). ``CONFORMANCE`` is the table; the last test keeps it honest
(every test it names exists).
"""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import io
import time
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest

from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from tests.conftest import APP_ID, APP_SECRET

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
EXPORTS = "/open-apis/vc/v1/exports/"
HOUR = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
START, END = int((HOUR - dt.timedelta(hours=3)).timestamp()), int(HOUR.timestamp())

#: fact (with its source) -> the test(s) that hold it, as "module::test".
CONFORMANCE: dict[str, list[str]] = {
    "Token endpoints are POST only; token fields at the top level (auth v3)": [
        "test_emulator.py::test_token_endpoints_refuse_get_and_bad_credentials",
        "test_conformance.py::test_the_official_sync_sdk_drives_every_endpoint",
    ],
    "Re-asking returns the same token while >= 30 min (a quarter, when shorter) remain; then a new one": [
        "test_emulator.py::test_tokens_are_reused_then_renewed_and_expire",
    ],
    "Wrong App ID -> 10003; wrong App Secret -> 10015 (generic error list)": [
        "test_conformance.py::test_wrong_credentials_get_the_generic_codes",
    ],
    "Rate limit: 100 per minute per API, HTTP 429 + 99991400 + x-ogw-ratelimit-limit/-reset": [
        "test_emulator.py::test_rate_limit_answers_like_feishu",
        "test_conformance.py::test_each_api_has_its_own_rate_window",
    ],
    "Header names as Feishu writes them (Content-Disposition, X-Tt-Logid): the SDK reads them case-sensitively": [
        "test_conformance.py::test_the_official_sync_sdk_drives_every_endpoint",
        "test_conformance.py::test_header_names_are_spelled_as_feishu_spells_them",
    ],
    "Four create endpoints, each documented field and rule (at most one filter; exactly one for quality)": [
        "test_conformance.py::test_the_official_sync_sdk_drives_every_endpoint",
        "test_conformance.py::test_documented_field_rules_are_enforced",
    ],
    "No longest range and no refusal of future times for exports (the sync queries' rules, not theirs)": [
        "test_conformance.py::test_undocumented_rules_are_not_enforced",
    ],
    "user_id_type on the first three kinds only; reservations take no query parameters": [
        "test_conformance.py::test_undocumented_rules_are_not_enforced",
    ],
    "Status answer: status 1/2/3 with url, file_token, fail_msg present in every state": [
        "test_conformance.py::test_status_answers_have_feishus_shape_in_every_state",
    ],
    "The status url serves the file": ["test_conformance.py::test_the_status_url_serves_the_file"],
    "Download: raw xlsx bytes, errors as JSON; an ordinary workbook (sheet dimension set)": [
        "test_conformance.py::test_the_official_sync_sdk_drives_every_endpoint",
        "test_conformance.py::test_the_official_async_sdk_drives_every_endpoint",
    ],
    "User tokens (v2 OAuth): each refresh spends its refresh token; errors in OAuth's shape, no msg; "
    "20026 invalid, 20037 expired, 20064 used; the authorization-code grant gives the first tokens": [
        "test_conformance.py::test_the_oauth_endpoint_rotates_single_use_refresh_tokens_and_answers_in_oauth_shape",
        "client/test_flows.py::test_an_oauth_shaped_error_carries_its_description_and_a_hint",
    ],
    "Export errors: 121004 unknown export; 121005 no permission; 99991672 missing scope": [
        "client/test_sync_client.py::test_unknown_export_is_feishus_121004",
        "client/test_sync_client.py::test_missing_scope_names_it",
    ],
}


def sdk_client(emulator: FeishuVCEmulator) -> Any:
    """The official SDK pointed at the emulator, with a token cache of its own (the SDK's default cache is
    process-wide and keyed by App ID alone, so it would hand this test a token of an earlier emulator state)."""
    import lark_oapi as lark
    from lark_oapi.core.cache.local_cache import LocalCache

    return lark.Client.builder().app_id(APP_ID).app_secret(APP_SECRET).domain(emulator.url).cache(LocalCache()).build()


def create_requests() -> dict[str, Any]:
    """One SDK request per create endpoint, with the SDK's own types (it sends times as integers)."""
    from lark_oapi.api.vc.v1 import (
        MeetingListExportRequest,
        MeetingListExportRequestBody,
        ParticipantListExportRequest,
        ParticipantListExportRequestBody,
        ParticipantQualityListExportRequest,
        ParticipantQualityListExportRequestBody,
        ResourceReservationListExportRequest,
        ResourceReservationListExportRequestBody,
    )

    meeting = {"meeting_start_time": START, "meeting_end_time": END, "meeting_no": "123456789"}
    return {
        "meeting_list": MeetingListExportRequest.builder()
        .request_body(MeetingListExportRequestBody({"start_time": START, "end_time": END}))
        .build(),
        "participant_list": ParticipantListExportRequest.builder()
        .user_id_type("open_id")
        .request_body(ParticipantListExportRequestBody(meeting))
        .build(),
        "participant_quality_list": ParticipantQualityListExportRequest.builder()
        .request_body(ParticipantQualityListExportRequestBody({**meeting, "join_time": START, "user_id": "ou_1"}))
        .build(),
        "resource_reservation_list": ResourceReservationListExportRequest.builder()
        .request_body(
            ResourceReservationListExportRequestBody({"room_level_id": "omb_1", "start_time": START, "end_time": END})
        )
        .build(),
    }


def rows_of(content: bytes) -> tuple[int | None, int]:
    """openpyxl's read-only ``max_row`` (from the sheet's dimension) and the rows actually there."""
    sheet = openpyxl.load_workbook(io.BytesIO(content), read_only=True).active
    return sheet.max_row, sum(1 for _ in sheet.iter_rows())


def test_the_official_sync_sdk_drives_every_endpoint(emulator: FeishuVCEmulator) -> None:
    from lark_oapi.api.vc.v1 import DownloadExportRequest, GetExportRequest

    client, export = sdk_client(emulator), sdk_client(emulator).vc.v1.export
    for kind, request in create_requests().items():
        created = getattr(export, kind)(request)
        assert created.success(), (kind, created.code, created.msg)
        assert created.get_log_id()  # the SDK's own header lookup works against the emulator
        emulator.finish_now()
        status = client.vc.v1.export.get(GetExportRequest.builder().task_id(created.data.task_id).build())
        assert status.success() and status.data.status == 3 and status.get_log_id()
        download = export.download(DownloadExportRequest.builder().file_token(status.data.file_token).build())
        assert download.success(), (kind, download.code, download.msg)
        assert download.file_name == f"视频会议_{kind}_{created.data.task_id}.xlsx"
        declared, present = rows_of(download.file.read())
        assert declared == present > 1, kind
    assert emulator.token_requests() >= 1


def test_the_official_async_sdk_drives_every_endpoint(emulator: FeishuVCEmulator) -> None:
    """The async client works end to end; its header lookups (file_name, log id) fail against any server since
    it lower-cases names itself (an SDK bug), so only content is checked here."""
    from lark_oapi.api.vc.v1 import DownloadExportRequest, GetExportRequest

    export = sdk_client(emulator).vc.v1.export

    async def drive() -> list[tuple[int | None, int]]:
        counts = []
        for kind, request in create_requests().items():
            created = await getattr(export, f"a{kind}")(request)
            assert created.success(), (kind, created.code, created.msg)
            emulator.finish_now()
            status = await export.aget(GetExportRequest.builder().task_id(created.data.task_id).build())
            assert status.success() and status.data.status == 3
            download = await export.adownload(
                DownloadExportRequest.builder().file_token(status.data.file_token).build()
            )
            assert download.success(), (kind, download.code, download.msg)
            counts.append(rows_of(download.file.read()))
        return counts

    counts = asyncio.run(drive())
    assert len(counts) == 4 and all(declared == present > 1 for declared, present in counts)


def token(emulator: FeishuVCEmulator) -> dict[str, str]:
    answer = httpx.post(emulator.url + TOKEN_PATH, json={"app_id": APP_ID, "app_secret": APP_SECRET}).json()
    return {"Authorization": f"Bearer {answer['tenant_access_token']}"}


def create(emulator: FeishuVCEmulator, kind: str, body: dict[str, Any], **params: str) -> httpx.Response:
    return httpx.post(emulator.url + EXPORTS + kind, json=body, params=params, headers=token(emulator))


def test_wrong_credentials_get_the_generic_codes(emulator: FeishuVCEmulator) -> None:
    wrong_id = httpx.post(emulator.url + TOKEN_PATH, json={"app_id": "cli_other", "app_secret": APP_SECRET})
    wrong_secret = httpx.post(emulator.url + TOKEN_PATH, json={"app_id": APP_ID, "app_secret": "nope"})
    assert (wrong_id.status_code, wrong_id.json()["code"]) == (200, 10003)
    assert (wrong_secret.status_code, wrong_secret.json()["code"]) == (200, 10015)


def test_header_names_are_spelled_as_feishu_spells_them(emulator: FeishuVCEmulator) -> None:
    created = create(emulator, "meeting_list", {"start_time": str(START), "end_time": str(END)})
    emulator.finish_now()
    status = httpx.get(emulator.url + EXPORTS + created.json()["data"]["task_id"], headers=token(emulator))
    file_token = status.json()["data"]["file_token"]
    with httpx.stream(
        "GET", emulator.url + EXPORTS + "download", params={"file_token": file_token}, headers=token(emulator)
    ) as download:
        names = [name for name, _ in download.headers.raw]
    assert b"Content-Disposition" in names and b"X-Tt-Logid" in names and b"Content-Type" in names
    assert b"content-disposition" not in names


def test_each_api_has_its_own_rate_window(emulator: FeishuVCEmulator) -> None:
    emulator.configure(rate_limit=2, rate_window=30)
    auth = token(emulator)
    statuses = [httpx.get(emulator.url + EXPORTS + "1", headers=auth).status_code for _ in range(3)]
    assert statuses == [404, 404, 429]
    body = {"start_time": str(START), "end_time": str(END)}
    # The status query's window is full; the create endpoints' are not.
    assert httpx.post(emulator.url + EXPORTS + "meeting_list", json=body, headers=auth).status_code == 200
    reservations = {"room_level_id": "omb_1", "start_time": str(START), "end_time": str(END)}
    assert httpx.post(emulator.url + EXPORTS + "resource_reservation_list", json=reservations, headers=auth).is_success


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("meeting_list", {"start_time": str(START)}, "end_time"),
        ("meeting_list", {"start_time": "yesterday", "end_time": str(END)}, "start_time"),
        ("meeting_list", {"start_time": str(START), "end_time": str(END), "meeting_no": "1", }, "meeting_no"),
        ("meeting_list", {"start_time": str(START), "end_time": str(END), "user_id": "ou_1", "room_id": "omm_1"},
         "room_id"),
        ("participant_list", {"meeting_start_time": str(START), "meeting_end_time": str(END)}, "meeting_no"),
        ("participant_quality_list", {"meeting_start_time": str(START), "meeting_end_time": str(END),
                                      "meeting_no": "123456789", "join_time": str(START)}, "user_id"),
        ("resource_reservation_list", {"start_time": str(START), "end_time": str(END)}, "room_level_id"),
        ("resource_reservation_list", {"room_level_id": "x", "start_time": str(START), "end_time": str(END),
                                       "need_topic": "yes"}, "need_topic"),
    ],
)  # fmt: skip
def test_documented_field_rules_are_enforced(
    emulator: FeishuVCEmulator, kind: str, body: dict[str, Any], field: str
) -> None:
    answer = create(emulator, kind, body)
    assert answer.status_code == 400 and answer.json()["code"] == 121003
    assert answer.json()["error"]["field_violations"][0]["field"] == field


def test_undocumented_rules_are_not_enforced(emulator: FeishuVCEmulator) -> None:
    year_and_more = {"start_time": str(START - 400 * 86_400), "end_time": str(END)}
    assert create(emulator, "meeting_list", year_and_more).json()["code"] == 0
    upcoming = {"start_time": str(END + 86_400), "end_time": str(END + 2 * 86_400), "meeting_status": 3}
    assert create(emulator, "meeting_list", upcoming).json()["code"] == 0
    week = {"room_level_id": "omb_1", "start_time": str(START), "end_time": str(START + 7 * 86_400)}
    assert create(emulator, "resource_reservation_list", week, user_id_type="open_id").json()["code"] == 0
    assert create(emulator, "meeting_list", year_and_more, user_id_type="email").json()["code"] == 121003


def test_status_answers_have_feishus_shape_in_every_state(emulator: FeishuVCEmulator) -> None:
    emulator.configure(export_delay=3600)
    emulator.state.fail_next.append("no permission")
    body = {"start_time": str(START), "end_time": str(END)}
    failed, processing = (create(emulator, "meeting_list", body).json()["data"]["task_id"] for _ in range(2))
    auth = token(emulator)
    shapes = {}
    for name, task_id in (("processing", processing), ("failed", failed)):
        shapes[name] = httpx.get(emulator.url + EXPORTS + task_id, headers=auth).json()["data"]
    emulator.finish_now()
    shapes["failed"] = httpx.get(emulator.url + EXPORTS + failed, headers=auth).json()["data"]
    shapes["done"] = httpx.get(emulator.url + EXPORTS + processing, headers=auth).json()["data"]
    assert all(set(data) == {"status", "url", "file_token", "fail_msg"} for data in shapes.values()), shapes
    assert shapes["processing"]["status"] == 1 and shapes["failed"]["fail_msg"] == "no permission"
    assert shapes["done"]["status"] == 3 and shapes["done"]["file_token"] and shapes["done"]["url"]


def test_the_status_url_serves_the_file(emulator: FeishuVCEmulator) -> None:
    created = create(emulator, "meeting_list", {"start_time": str(START), "end_time": str(END)})
    emulator.finish_now()
    data = httpx.get(emulator.url + EXPORTS + created.json()["data"]["task_id"], headers=token(emulator)).json()
    served = httpx.get(data["data"]["url"])  # a CDN address: no Authorization (never sent to another host)
    assert served.status_code == 200 and rows_of(served.content)[1] == 1 + 3


def test_the_conformance_table_names_only_tests_that_exist() -> None:
    here = Path(__file__).parent
    for fact, tests in CONFORMANCE.items():
        for reference in tests:
            module, _, name = reference.partition("::")
            tree = ast.parse((here / module).read_text())
            defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
            assert name in defined, f"{fact!r} names {reference}, which does not exist"


def test_the_oauth_endpoint_rotates_single_use_refresh_tokens_and_answers_in_oauth_shape() -> None:
    oauth = "/open-apis/authen/v2/oauth/token"
    client = {"client_id": APP_ID, "client_secret": APP_SECRET}
    with FeishuVCEmulator(app_id=APP_ID, app_secret=APP_SECRET, refresh_token="r-first", refresh_token_ttl=1.0) as fs:
        first = httpx.post(fs.url + oauth, json={**client, "grant_type": "refresh_token", "refresh_token": "r-first"})
        tokens = first.json()
        assert first.status_code == 200 and tokens["code"] == 0 and "msg" not in tokens
        assert {
            "access_token",
            "expires_in",
            "refresh_token",
            "refresh_token_expires_in",
            "token_type",
            "scope",
        } <= set(tokens)
        assert tokens["refresh_token"] != "r-first" and fs.state.refresh_token_spent("r-first")

        def refused(refresh_token: str) -> dict[str, Any]:
            body = {**client, "grant_type": "refresh_token", "refresh_token": refresh_token}
            answer = httpx.post(fs.url + oauth, json=body)
            assert answer.status_code == 400
            return answer.json()

        again = refused("r-first")  # single use: the old one died with the first refresh
        assert again == {"code": 20064, "error": "invalid_grant", "error_description": again["error_description"]}
        assert refused("r-never-issued")["code"] == 20026
        time.sleep(1.1)
        assert refused(tokens["refresh_token"])["code"] == 20037  # its successor has expired meanwhile

        login = {**client, "grant_type": "authorization_code", "code": "emulator-auth-code", "redirect_uri": "x"}
        exchanged = httpx.post(fs.url + oauth, json=login).json()
        assert exchanged["code"] == 0 and exchanged["access_token"].startswith("u-") and exchanged["refresh_token"]
        assert httpx.post(fs.url + oauth, json=login).json()["error"] == "invalid_grant"  # a code works once
