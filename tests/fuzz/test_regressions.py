"""The defects the property tests found, each kept as the plain example Hypothesis shrank it to (or the smallest
one that shows it), so that they stay fixed whatever the fuzzers try next."""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
from pathlib import Path

import pytest

from airflow_provider_feishu_vc.client import api
from airflow_provider_feishu_vc.client.budget import AppBudgets
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError, FeishuVCConfigError, FeishuVCTableError
from airflow_provider_feishu_vc.client.files import FileInfo, filename_from_content_disposition, safe_filename
from airflow_provider_feishu_vc.client.protocol import HttpResponse, RetryPolicy, parse_envelope
from tests.client.scripted import FakeClock, Script

POLICY = RetryPolicy(max_retries=0)


def test_a_host_with_a_lone_bracket_is_refused_by_name_not_with_a_url_parser_error() -> None:
    with pytest.raises(FeishuVCConfigError, match=r"^host: '\['"):
        ClientConfig.from_connection_parts(host="[", login="cli_x", password="s")
    with pytest.raises(FeishuVCConfigError, match=r"^host: .*[Pp]ort"):
        ClientConfig.from_connection_parts(host="https://open.feishu.cn:99999", login="cli_x", password="s")


def test_a_host_carrying_a_password_is_refused_without_quoting_it() -> None:
    with pytest.raises(FeishuVCConfigError) as raised:
        ClientConfig.from_connection_parts(host="http://evil.example:pw-in-host@x", login="cli_x", password="s")
    assert "pw-in-host" not in str(raised.value)


@pytest.mark.parametrize("timeout", ["inf", "nan", "1e309"])
def test_a_timeout_that_is_not_a_finite_number_is_refused(timeout: str) -> None:
    with pytest.raises(FeishuVCConfigError, match=r"extra\.timeout"):
        ClientConfig.from_connection_parts(host=None, login="cli_x", password="s", extra={"timeout": timeout})


@pytest.mark.parametrize(
    "error", [{"permission_violations": None, "field_violations": [None]}, {"permission_violations": ["x"]}]
)
def test_malformed_error_details_still_make_a_typed_error(error: dict) -> None:
    body = json.dumps({"code": 121003, "error": error}).encode()
    with pytest.raises(FeishuVCAPIError, match="121003"):
        parse_envelope(HttpResponse(400, {}, body))


def test_a_status_answer_whose_data_is_not_an_object_is_a_typed_error() -> None:
    clock = FakeClock()
    answer = HttpResponse(200, {}, b'{"code": 0, "error": {}, "data": 1}')
    with pytest.raises(FeishuVCAPIError, match="no data object"):
        Script([answer], clock=clock).run(api.get_export("7111", POLICY, AppBudgets(100, clock=clock)))


def test_a_redirect_claiming_success_is_an_error_never_an_answer() -> None:
    answer = HttpResponse(302, {"location": "https://evil.example/"}, b'{"code": 0, "data": {"status": 3}}')
    with pytest.raises(FeishuVCAPIError, match=r"redirect .*never followed"):
        parse_envelope(answer)


def test_a_token_endpoints_garbled_answer_is_not_quoted() -> None:
    garbled = HttpResponse(200, {}, b'{"tenant_access_token": "t-leaked", "expire": 72')
    with pytest.raises(FeishuVCAPIError) as raised:
        parse_envelope(garbled, quote_body=False)
    assert "t-leaked" not in str(raised.value) and "bytes not shown" in str(raised.value)


def test_a_negative_content_length_says_nothing() -> None:
    assert FileInfo.from_headers({"content-length": "-5"}).size is None


def test_a_long_cjk_file_name_is_cut_to_a_name_linux_can_create() -> None:
    header = "attachment; filename*=UTF-8''" + "%E4%BC%9A" * 120 + ".xlsx"  # 120 x 会: 360 bytes
    name = safe_filename(filename_from_content_disposition(header), "fallback.xlsx")
    assert name.endswith(".xlsx") and len(name.encode()) <= 200 and len(f".{name}.0123456789ab.part".encode()) <= 255


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"export_task_id": "1", "poll_interval": math.inf}, "poll_interval"),
        ({"export_task_id": "1", "poll_interval": 0}, "poll_interval"),
        ({"export_task_id": "1", "deadline": "tomorrow"}, "deadline"),
        ({"export_task_id": "1", "deadline": math.nan}, "deadline"),
        ({}, "export_task_id"),
        ({"export_task_id": "1", "timeout": 5}, "timeout"),
        ({"export_task_id": "1", "feishu_vc_conn_id": ""}, "feishu_vc_conn_id"),
    ],
)
def test_a_trigger_from_bad_kwargs_fails_by_name(kwargs: dict, field: str) -> None:
    from airflow_provider_feishu_vc.triggers.feishu_vc import FeishuVCExportTrigger

    with pytest.raises(FeishuVCConfigError) as raised:
        FeishuVCExportTrigger(**kwargs)
    assert raised.value.field == field


@pytest.mark.parametrize("destination", ["", "nope://x/y", "s3\x00://b/k"])
def test_a_destination_no_store_takes_is_refused_by_name(destination: str) -> None:
    from airflow_provider_feishu_vc.hooks.feishu_vc import as_storage_path

    with pytest.raises(FeishuVCConfigError) as raised:
        as_storage_path(destination)
    assert raised.value.field == "destination"


def test_a_zip_needing_a_newer_zip_version_is_not_an_xlsx_not_a_crash(tmp_path: Path) -> None:
    """The shrunk example flipped one bit of the central directory's "version needed to extract"."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    raw = bytearray(buffer.getvalue())
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<H", raw, central + 6, 84)  # version needed: 8.4
    (tmp_path / "v.xlsx").write_bytes(bytes(raw))
    from airflow_provider_feishu_vc.tables import read_export

    with pytest.raises(FeishuVCTableError, match="not a readable zip archive"):
        read_export(tmp_path / "v.xlsx", "meeting_list")


def test_a_flipped_bit_in_a_compressed_sheet_is_damage_not_other_rows(tmp_path: Path) -> None:
    """The deep run's example: one bit of the deflated sheet turned cell A13 into A1 and B13 into B313, and the sheet
    reader, which does not check CRC-32, read 21 rows of a 20-row export. The archive's checksum now decides."""
    from airflow_provider_feishu_vc.tables import read_export
    from tests.tables.workbooks import write

    path = write(tmp_path / "v.xlsx", ["会议ID", "会议开始时间", "音频"],
                 [["1", "2022.07.21 11:01:40 (GMT+08:00)", "是"]] * 20)  # fmt: skip
    raw = bytearray(path.read_bytes())
    assert read_export(bytes(raw), "meeting_list").num_rows == 20
    with zipfile.ZipFile(path) as archive:
        sheet = archive.getinfo("xl/worksheets/sheet1.xml")
    name_length, extra_length = struct.unpack_from("<HH", raw, sheet.header_offset + 26)
    data_start = sheet.header_offset + 30 + name_length + extra_length
    raw[data_start + sheet.compress_size // 2] ^= 1
    with pytest.raises(
        FeishuVCTableError, match=r"damaged xlsx workbook: Bad CRC-32 for file 'xl/worksheets/sheet1\.xml'"
    ):
        read_export(bytes(raw), "meeting_list")


@pytest.mark.parametrize(
    "value", ["4⑦", "4⑦\u00a0", "1764000000²", "17640000₀0", "Ⅻ", "--1764000000", "4⑦\u2007", "١٧٦٤⑦"]
)
def test_a_time_of_digits_that_are_no_ascii_digits_is_refused_by_name(value: str) -> None:
    from airflow_provider_feishu_vc.client.exports import to_unix_seconds

    with pytest.raises(FeishuVCConfigError) as raised:
        to_unix_seconds("start_time", value)
    assert raised.value.field == "start_time"


@pytest.mark.parametrize("value", ["4⑦", "٣", "²", "Ⅻ"])
def test_a_number_field_of_digits_that_are_no_ascii_digits_is_refused_by_name(value: str) -> None:
    from airflow_provider_feishu_vc.client.exports import build_export_body

    with pytest.raises(FeishuVCConfigError) as raised:
        build_export_body("meeting_list", {"start_time": 1764000000, "end_time": 1764003600, "meeting_status": value})
    assert raised.value.field == "meeting_status"


@pytest.mark.parametrize("status", [math.inf, -math.inf, math.nan, 1e300])
def test_a_status_that_is_not_a_finite_number_is_a_typed_error(status: float) -> None:
    with pytest.raises(FeishuVCAPIError, match="unknown status"):
        api.ExportTask.from_payload("7111", {"data": {"status": status}})


@pytest.mark.parametrize("token", [b"Infinity", b"-Infinity", b"NaN", b"1e400", b"-1e999"])
def test_an_answer_carrying_a_non_finite_number_is_not_a_feishu_envelope(token: bytes) -> None:
    body = b'{"code": 0, "msg": "ok", "data": {"status": ' + token + b', "file_token": "f"}}'
    with pytest.raises(FeishuVCAPIError, match="not a Feishu JSON envelope"):
        parse_envelope(HttpResponse(200, {}, body))
    replies = [HttpResponse(200, {}, body)]
    clock = FakeClock()
    with pytest.raises(FeishuVCAPIError):
        Script(replies, clock=clock).run(api.get_export("7111", POLICY, AppBudgets(100, clock=clock)), max_steps=20)


def test_a_time_of_ascii_digits_between_any_white_space_is_still_a_time() -> None:
    from airflow_provider_feishu_vc.client.exports import to_unix_seconds

    assert to_unix_seconds("start_time", "\u00a01764000000\u2007") == 1764000000


@pytest.mark.parametrize("abandoned", ["out of data", "assume"])
def test_an_example_hypothesis_abandons_is_neither_an_outcome_nor_a_failure(abandoned: str) -> None:
    """``make fuzz`` reported 174 failures of "users: parse-time checks" while every test passed: a ``data.draw``
    inside a boundary ran out of data, and Hypothesis' signal to drop the example was counted as a failure."""
    from hypothesis.errors import StopTest, UnsatisfiedAssumption

    from tests.fuzz.checks import boundary
    from tests.fuzz.conftest import TALLY

    name = f"probe: {abandoned}"
    signal = StopTest(0) if abandoned == "out of data" else UnsatisfiedAssumption()
    with pytest.raises(type(signal)), boundary(name):
        raise signal
    assert TALLY[name]["failures"] == 0 and TALLY[name]["examples"] == 0
    with pytest.raises(ZeroDivisionError), boundary(name):  # anything else still counts as a failure
        _ = 1 / 0
    assert TALLY[name]["failures"] == 1
    del TALLY[name]
