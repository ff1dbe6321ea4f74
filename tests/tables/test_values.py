"""What real files will bring: Lark's documented English labels for every kind, Feishu's "no value" marks in typed
columns, counts with a sign, decimal percentages and units, times marked UTC / GMT without an offset. Real
workbooks, read by the real reader in its child process."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from airflow_provider_feishu_vc.client.errors import FeishuVCTableError
from airflow_provider_feishu_vc.tables import CONTRACTS, read_export
from airflow_provider_feishu_vc.tables.contract import (
    DOCUMENTED_HEADERS,
    header_index,
    header_key,
)
from tests.tables.workbooks import write

UTC = dt.timezone.utc

#: Lark's English field lists, copied by hand from shared/feishu-vc-api.md ("What an export file holds", item 5),
#: spelled exactly as Lark spells them: the contract's list must be this one, not one derived from it.
LARK_AS_PUBLISHED = {
    "meeting_list": (
        "meeting id", "meeting topic", "meeting organizer", "department", "user id", "job number", "email",
        "phone number", "meeting start time", "meeting end time", "meeting duration", "Number of participants",
        "audio", "video", "share", "recording", "phone",
    ),
    "participant_list": (
        "participant", "department", "user id", "job number", "phone number", "email", "device", "app version",
        "public network ip", "internal network ip", "proxy", "location", "network type", "microphone", "speaker",
        "camera", "audio", "video", "share", "join time", "leave time", "duration", "leave reason",
    ),
    "participant_quality_list": (
        "time",
        *(f"{medium}-{metric}({direction})" for medium in ("audio", "video", "share-screen")
          for direction in ("receiver", "sender") for metric in ("birate", "lag", "jitter", "loss avg", "loss max")),
        "cpu min usage of client", "cpu avg usage of client", "cpu max usage of client", "cpu max usage of system",
    ),
    "resource_reservation_list": (
        "meeting room name", "meeting topic", "booker", "department of booker", "Number of invitees",
        "Number of accept", "meeting start time", "meeting end time", "meeting duration",
        "status of meeting room reservation", "check-in device", "check-in status of meeting room",
        "check-in time of meeting room", "releaser", "release time",
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(CONTRACTS))
def test_larks_english_header_row_maps_one_to_one_onto_the_documented_columns_in_order(kind: str) -> None:
    from airflow_provider_feishu_vc.tables.contract import LARK_ENGLISH_HEADERS

    assert LARK_ENGLISH_HEADERS[kind] == LARK_AS_PUBLISHED[kind]
    index = header_index(kind)
    english = [index.get(header_key(label)) for label in LARK_AS_PUBLISHED[kind]]
    assert [label for label, c in zip(LARK_AS_PUBLISHED[kind], english, strict=True) if c is None] == []
    documented = [index[header_key(header)] for header in DOCUMENTED_HEADERS[kind]]
    # label i names the column the i-th documented (Chinese) header names: the order decides ambiguous words
    assert [c.field for c in english if c] == [c.field for c in documented]
    assert len({c.field for c in documented}) == len(documented)


def test_ambiguous_english_words_land_in_the_column_their_position_names() -> None:
    meetings = header_index("meeting_list")
    assert meetings[header_key("phone number")].field == "mobile"  # 手机, text
    assert meetings[header_key("phone")].field == "telephone"  # 电话, yes / no
    assert meetings[header_key("share")].field == "sharing"
    participants = header_index("participant_list")
    assert participants[header_key("phone number")].field == "phone"
    assert participants[header_key("duration")].field == "time_in_meeting"
    rooms = header_index("resource_reservation_list")
    assert rooms[header_key("meeting topic")].field == "event_title"
    assert rooms[header_key("meeting duration")].field == "event_duration"


def test_the_quality_lists_documented_order_is_five_received_then_five_sent_per_medium() -> None:
    headers = DOCUMENTED_HEADERS["participant_quality_list"]
    assert headers[1:11] == (
        "音频-码率（接收）", "音频-延迟（接收）", "音频-抖动（接收）", "音频-丢包平均（接收）", "音频-丢包最大（接收）",
        "音频-码率（发送）", "音频-延迟（发送）", "音频-抖动（发送）", "音频-丢包平均（发送）", "音频-丢包最大（发送）",
    )  # fmt: skip


def test_an_english_meeting_list_reads_every_column_typed(tmp_path: Path) -> None:
    start, end = "2022.12.23 11:16:59 (GMT+08:00)", "2022.12.23 11:18:51 (GMT+08:00)"
    row = ["705605196", "sync", "kehan", "dev", "92f879", "2021", "a@example.com", "+86 138", start, end,
           "00:01:52", "3", "yes", "no", "yes", "no", "no"]  # fmt: skip
    table = read_export(write(tmp_path / "e.xlsx", LARK_AS_PUBLISHED["meeting_list"], [row]), "meeting_list",
                        schema="freeze")  # fmt: skip
    got = table.to_pylist()[0]
    assert got["mobile"] == "+86 138" and got["telephone"] is False and got["sharing"] is True
    assert got["employee_id"] == "2021" and got["number_of_participants"] == 3


# -- no value ----------------------------------------------------------------------------------------------------

NO_VALUE_MARKS = ["-", "--", "—", "  -  "]


@pytest.mark.parametrize("mark", NO_VALUE_MARKS)
def test_a_no_value_mark_is_null_in_every_typed_column_and_kept_in_text(tmp_path: Path, mark: str) -> None:
    header = ["会议室名称", "邀请人数", "会议开始时间", "会议时长", "会议室签到时间", "释放人", "释放时间"]
    row = ["A", mark, mark, mark, mark, mark, mark]
    table = read_export(write(tmp_path / "r.xlsx", header, [row]), "resource_reservation_list")
    got = table.to_pylist()[0]
    typed = ("guests_number", "event_start_time", "event_duration_seconds", "check_in_time", "releasing_time")
    assert {name: got[name] for name in typed} == dict.fromkeys(typed)
    assert got["releasing_person"] == mark  # text keeps what was written
    quality = read_export(write(tmp_path / "q.xlsx", ["时间", "音频-码率（接收）"], [[mark, mark]]),
                          "participant_quality_list")  # fmt: skip
    assert quality.to_pylist() == [{**quality.to_pylist()[0], "time": None, "audio_bitrate_received_kbps": None}]
    booleans = read_export(write(tmp_path / "b.xlsx", ["会议ID", "音频"], [["1", mark]]), "meeting_list")
    assert booleans.column("audio").to_pylist() == [None]


def test_a_dash_inside_a_value_is_still_a_bad_cell(tmp_path: Path) -> None:
    with pytest.raises(FeishuVCTableError, match=r"number_of_participants .*'- 3'"):
        read_export(write(tmp_path / "c.xlsx", ["会议ID", "参会人数量"], [["1", "- 3"]]), "meeting_list")


# -- counts, figures, times ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [("+3", 3), (" +12 ", 12), ("+0", 0), ("7", 7), ("+5.0", 5)])
def test_a_count_with_a_plus_sign_is_its_number(tmp_path: Path, text: str, value: int) -> None:
    rows = [["1", "2"], ["2", text]]  # a plain count first: the fast cast fails on the second row only
    table = read_export(write(tmp_path / "c.xlsx", ["会议ID", "参会人数量"], rows), "meeting_list")
    assert table.column("number_of_participants").to_pylist() == [2, value]


@pytest.mark.parametrize("text", ["++3", "+", "+-3", "3+"])
def test_a_malformed_signed_count_is_a_bad_cell_naming_column_row_and_value(tmp_path: Path, text: str) -> None:
    with pytest.raises(FeishuVCTableError) as raised:
        read_export(write(tmp_path / "c.xlsx", ["会议ID", "参会人数量"], [["1", "2"], ["2", text]]), "meeting_list")
    message = str(raised.value)
    assert "number_of_participants" in message and "sheet row 3" in message and repr(text) in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022.07.21 11:01:40 UTC", dt.datetime(2022, 7, 21, 11, 1, 40, tzinfo=UTC)),
        ("2022.07.21 11:01:40 (UTC)", dt.datetime(2022, 7, 21, 11, 1, 40, tzinfo=UTC)),
        ("2022.07.21 11:01:40 (GMT)", dt.datetime(2022, 7, 21, 11, 1, 40, tzinfo=UTC)),
        ("2022-07-21 11:01:40 GMT", dt.datetime(2022, 7, 21, 11, 1, 40, tzinfo=UTC)),
        ("2022-07-21T11:01:40 utc", dt.datetime(2022, 7, 21, 11, 1, 40, tzinfo=UTC)),
        ("2022.07.21 11:01:40 (GMT+08:00)", dt.datetime(2022, 7, 21, 3, 1, 40, tzinfo=UTC)),
    ],
)
def test_utc_and_gmt_without_an_offset_are_utc(tmp_path: Path, text: str, expected: dt.datetime) -> None:
    table = read_export(write(tmp_path / "t.xlsx", ["会议ID", "会议开始时间"], [["1", text]]), "meeting_list")
    assert table.column("meeting_start_time").to_pylist() == [expected]


@pytest.mark.parametrize("text", ["2022.07.21 11:01:40 (UTC", "2022.07.21 11:01:40 UTCX", "2022.07.21 11:01:40 GMT+"])
def test_a_broken_zone_is_a_bad_cell(tmp_path: Path, text: str) -> None:
    with pytest.raises(FeishuVCTableError, match="meeting_start_time"):
        read_export(write(tmp_path / "t.xlsx", ["会议ID", "会议开始时间"], [["1", text]]), "meeting_list")


@pytest.mark.parametrize(
    ("header", "text", "name", "value"),
    [
        ("客户端最小 CPU 占用", "0.8%", "client_min_cpu_usage_pct", 0.8),
        ("客户端最小 CPU 占用", "+0.8 %", "client_min_cpu_usage_pct", 0.8),
        ("音频-丢包平均（接收）", "2.35%", "audio_packet_loss_avg_received_pct", 2.35),
        ("音频-码率（接收）", "50Kbps", "audio_bitrate_received_kbps", 50.0),
        ("音频-延迟（发送）", "5 MS", "audio_latency_sent_ms", 5.0),
    ],
)
def test_decimal_percentages_and_units_in_any_case_parse(
    tmp_path: Path, header: str, text: str, name: str, value: float
) -> None:
    table = read_export(write(tmp_path / "f.xlsx", [header], [[text]]), "participant_quality_list")
    assert table.column(name).to_pylist() == [pytest.approx(value)]


def test_a_unit_the_column_cannot_hold_is_a_bad_cell(tmp_path: Path) -> None:
    for text in ("3dB", "30fps", "1080P"):
        with pytest.raises(FeishuVCTableError, match=rf"audio_bitrate_received_kbps .*'{text}'"):
            read_export(write(tmp_path / "u.xlsx", ["音频-码率（接收）"], [[text]]), "participant_quality_list")


# -- the emulator writes what Feishu and Lark write -----------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CONTRACTS))
def test_the_emulators_english_files_carry_larks_labels_and_its_documented_files_the_documented_order(
    kind: str,
) -> None:
    from airflow_provider_feishu_vc.testing.emulator import data

    assert tuple(data.headers(kind, "english")) == LARK_AS_PUBLISHED[kind]
    assert tuple(data.headers(kind, "documented")) == DOCUMENTED_HEADERS[kind]


def test_the_emulator_writes_a_dash_where_feishu_has_no_value_and_the_table_reads_it_as_null(tmp_path: Path) -> None:
    from airflow_provider_feishu_vc.testing.emulator import data
    from airflow_provider_feishu_vc.testing.emulator.workbook import write_workbook

    body = {"start_time": "1700000000", "end_time": "1700036000", "room_level_id": "x"}
    for kind, checks in {
        "resource_reservation_list": {"check_in_time": "releasing_time", "releasing_time": "check_in_time"},
        "participant_list": {"leave_time": "join_time"},
    }.items():
        fields = [field for _, field in data.layout(kind)]
        for style in ("documented", "english"):
            rows = list(data.rows(kind, body, 8, 3600, style))
            assert write_workbook(tmp_path / f"{kind}.xlsx", "s", data.headers(kind, style), rows) == 8
            table = read_export(tmp_path / f"{kind}.xlsx", kind, schema="freeze")
            for field, other in checks.items():
                written = [row[fields.index(field)] for row in rows]
                assert "-" in written, (kind, field)  # some row has no value there
                got = table.column(field).to_pylist()
                assert [value is None for value in got] == [text == "-" for text in written], (kind, field)
                assert table.column(other).null_count < table.num_rows


@pytest.mark.parametrize("kind", list(CONTRACTS))
def test_the_schema_tables_list_every_one_of_larks_english_labels(kind: str) -> None:
    from airflow_provider_feishu_vc.tables.contract import schema_markdown

    table = schema_markdown(kind)
    assert [label for label in LARK_AS_PUBLISHED[kind] if f"`{label}`" not in table] == []
