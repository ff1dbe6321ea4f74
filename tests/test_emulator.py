"""The emulator behaves like Feishu: the official SDK drives it, and its rate limit and token rules hold."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import time

import httpx
import pytest

from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from airflow_provider_feishu_vc.testing.emulator import EmulatorOptions, Fault, data
from airflow_provider_feishu_vc.testing.process import EmulatorProcess
from tests.conftest import APP_ID, APP_SECRET

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
NOW = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)


def test_every_kind_has_its_documented_column_count_in_every_header_style() -> None:
    documented = {"meeting_list": 17, "participant_list": 23, "participant_quality_list": 35,
                  "resource_reservation_list": 15}  # fmt: skip
    for style in data.HEADER_STYLES:
        counts = {kind: len(data.headers(kind, style)) for kind in documented}
        assert counts == {**documented, "meeting_list": 20} if style == "newer" else counts == documented, style
    assert data.headers("meeting_list", "newer")[:2] == ["会议 ID", "外部会议"]
    assert data.headers("participant_list", "newer")[0] == "参会者"


@pytest.mark.parametrize("style", data.HEADER_STYLES)
def test_export_files_hold_feishus_headers_and_value_formats(emulator: FeishuVCEmulator, style: str) -> None:
    """Read with openpyxl, a reader of its own: one sheet, headers in row 1, every value text in Feishu's format."""
    import io
    import re

    import openpyxl

    emulator.configure(export_delay=0, header_style=style)
    token = httpx.post(emulator.url + TOKEN_PATH, json={"app_id": APP_ID, "app_secret": APP_SECRET}).json()
    auth = {"Authorization": f"Bearer {token['tenant_access_token']}"}
    day = {"start_time": str(int(NOW.timestamp()) - 86400), "end_time": str(int(NOW.timestamp()))}
    created = httpx.post(emulator.url + "/open-apis/vc/v1/exports/meeting_list", json=day, headers=auth).json()
    status = httpx.get(f"{emulator.url}/open-apis/vc/v1/exports/{created['data']['task_id']}", headers=auth).json()
    content = httpx.get(
        emulator.url + "/open-apis/vc/v1/exports/download", params={"file_token": status["data"]["file_token"]},
        headers=auth,
    ).content  # fmt: skip
    book = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    assert len(book.sheetnames) == 1
    rows = list(book.active.iter_rows(values_only=True))
    assert list(rows[0]) == data.headers("meeting_list", style) and len(rows) == 1 + 24
    by_field = dict(zip((f for _, f in data.layout("meeting_list", style)), rows[1], strict=True))
    assert all(isinstance(value, str) for value in rows[1])  # Feishu writes text, counts included
    assert re.fullmatch(r"\d{4}\.\d{2}\.\d{2} \d{2}:\d{2}:\d{2} \(GMT\+08:00\)", by_field["meeting_start_time"])
    assert re.fullmatch(r"\d{2}:\d{2}:\d{2}", by_field["meeting_duration"])
    assert by_field["audio"] in (("yes", "no") if style == "english" else ("是", "否"))
    assert by_field["number_of_participants"].isdigit()


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
    ttl = 6.0
    with FeishuVCEmulator(app_id=APP_ID, app_secret=APP_SECRET, token_ttl=ttl) as short:
        issued_after = time.monotonic()
        first = httpx.post(short.url + TOKEN_PATH, json=credentials).json()
        issued_before = time.monotonic()
        again = httpx.post(short.url + TOKEN_PATH, json=credentials).json()
        assert again["tenant_access_token"] == first["tenant_access_token"] and again["expire"] <= first["expire"]
        time.sleep(ttl * 0.8)  # under a quarter of its life left: a new token, the old one still valid
        renewed = httpx.post(short.url + TOKEN_PATH, json=credentials).json()
        assert renewed["tenant_access_token"] != first["tenant_access_token"]
        old = {"Authorization": f"Bearer {first['tenant_access_token']}"}
        code = httpx.get(short.url + "/open-apis/vc/v1/exports/1", headers=old).json()["code"]
        # The first token was issued after `issued_after`: an answer back before issued_after + ttl was given while
        # it lived (a stalled machine can only make this check inconclusive, never wrong).
        if time.monotonic() < issued_after + ttl:
            assert code == 121004
        time.sleep(max(0.0, issued_before + ttl + 0.2 - time.monotonic()))  # now the first one has expired
        assert httpx.get(short.url + "/open-apis/vc/v1/exports/1", headers=old).json()["code"] == 99991663


def test_token_endpoints_refuse_get_and_bad_credentials(emulator: FeishuVCEmulator) -> None:
    assert httpx.get(emulator.url + TOKEN_PATH).status_code == 404
    wrong = httpx.post(emulator.url + TOKEN_PATH, json={"app_id": "cli_other", "app_secret": "x"})
    assert wrong.status_code == 200 and wrong.json()["code"] == 10003


def test_connection_points_airflow_at_the_emulator(emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook

    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_DEFAULT", emulator.connection(timeout=7))
    hook = FeishuVCHook()
    assert hook.config.base_url == emulator.url and hook.config.timeout == 7.0
    assert hook.test_connection()[0] is True
    assert json.loads(emulator.connection()) == {
        "conn_type": "feishu_vc", "host": emulator.url, "login": APP_ID, "password": APP_SECRET,
    }  # fmt: skip


def test_reset_gives_a_fresh_tenant_with_the_original_options(emulator: FeishuVCEmulator) -> None:
    token = httpx.post(emulator.url + TOKEN_PATH, json={"app_id": APP_ID, "app_secret": APP_SECRET}).json()
    emulator.configure(export_delay=60, rate_limit=1)
    emulator.inject(Fault.GATEWAY_HTML, times=5)
    emulator.state.fail_next.append("boom")
    emulator.reset()
    assert emulator.requests == [] and emulator.issued_tokens() == [] and emulator.state.fail_next == []
    assert emulator.options.export_delay == 0.3 and emulator.options.rate_limit == 100
    headers = {"Authorization": f"Bearer {token['tenant_access_token']}"}
    answer = httpx.get(emulator.url + "/open-apis/vc/v1/exports/1", headers=headers)
    assert answer.status_code == 400 and answer.json()["code"] == 99991663  # the old token is gone, no fault served


def test_options_are_declared_once_for_constructor_command_line_and_process() -> None:
    parser = argparse.ArgumentParser()
    EmulatorOptions.add_arguments(parser)
    flags = {action.dest for action in parser._actions if action.dest != "help"}
    assert flags == {option.name for option in dataclasses.fields(EmulatorOptions)}
    parsed = EmulatorOptions.from_arguments(parser.parse_args(["--export-delay-max", "4.5", "--rows", "10"]))
    assert parsed.export_delay_max == 4.5 and parsed.rows == 10 and parsed.rate_window == 60.0
    with pytest.raises(TypeError, match="unknown emulator option"):
        FeishuVCEmulator(export_delya=1)
    with pytest.raises(TypeError, match="unknown emulator option"):
        EmulatorProcess(rate=1)
    with pytest.raises(ValueError):
        FeishuVCEmulator().inject("no_such_fault")


def test_a_process_emulator_takes_the_same_options_and_resets() -> None:
    with EmulatorProcess(app_id=APP_ID, app_secret=APP_SECRET, rate_limit=2, export_delay=0.1) as process:
        token = httpx.post(process.url + TOKEN_PATH, json={"app_id": APP_ID, "app_secret": APP_SECRET}).json()
        headers = {"Authorization": f"Bearer {token['tenant_access_token']}"}
        codes = [httpx.get(process.url + "/open-apis/vc/v1/exports/1", headers=headers).status_code for _ in range(3)]
        assert codes == [404, 404, 429]
        process.reset()
        assert process.stats()["requests"] == 0 and process.stats()["issued_tokens"] == []


def test_a_process_emulator_takes_faults_over_its_admin_path() -> None:
    with EmulatorProcess(app_id=APP_ID, app_secret=APP_SECRET) as process:
        process.inject(Fault.GATEWAY_HTML, path=TOKEN_PATH, times=2, status=502)
        answers = [httpx.post(process.url + TOKEN_PATH, json={"app_id": APP_ID, "app_secret": APP_SECRET})
                   for _ in range(3)]  # fmt: skip
        assert [a.status_code for a in answers] == [502, 502, 200] and "<html" in answers[0].text.lower()


def test_a_process_emulator_finishes_one_export_or_all() -> None:
    with EmulatorProcess(app_id=APP_ID, app_secret=APP_SECRET, export_delay=3600) as process:
        token = httpx.post(process.url + TOKEN_PATH, json={"app_id": APP_ID, "app_secret": APP_SECRET}).json()
        headers = {"Authorization": f"Bearer {token['tenant_access_token']}"}
        body = {"start_time": "1700000000", "end_time": "1700003600"}
        ids = [httpx.post(process.url + "/open-apis/vc/v1/exports/meeting_list", json=body, headers=headers)
               .json()["data"]["task_id"] for _ in range(2)]  # fmt: skip

        def status(export_task_id: str) -> int:
            answer = httpx.get(f"{process.url}/open-apis/vc/v1/exports/{export_task_id}", headers=headers).json()
            return int(answer["data"]["status"])

        process.finish_now(ids[1])
        assert [status(i) for i in ids] == [1, 3]
        assert process.export_requests()[ids[0]] == {"kind": "meeting_list", "body": body}
        process.finish_now()
        assert [status(i) for i in ids] == [3, 3]
