"""Typed tables from export files: the column contract of every kind, every value format, bad cells named, unknown
columns kept or frozen, empty and hostile workbooks, and every kind of source. Real workbooks (XlsxWriter, or raw
zips for what no writer produces), read by the real reader in its child process."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError, FeishuVCTableError
from airflow_provider_feishu_vc.tables import CONTRACTS, read_export
from airflow_provider_feishu_vc.tables.contract import (
    DOCUMENTED_HEADERS,
    NEWER_HEADERS,
    ValueKind,
    english_headers,
    header_index,
    header_key,
)
from tests.tables.workbooks import raw_sheet, sheet_xml, write

UTC = dt.timezone.utc
MEETING = DOCUMENTED_HEADERS["meeting_list"]


def meeting_row(**changes: object) -> list[object]:
    values = {
        "会议ID": "705605196", "会议主题": "讨论会", "会议组织者": "kehan", "部门": "development", "用户ID": "92f879",
        "工号": "202105149765", "邮箱": "xxxx@163.com", "手机": "021-673288",
        "会议开始时间": "2022.12.23 11:16:59 (GMT+08:00)", "会议结束时间": "2022.12.23 11:18:51 (GMT+08:00)",
        "会议持续时间": "00:01:52", "参会人数量": "1",
        "音频": "是", "视频": "是", "共享": "否", "录制": "否", "电话": "否",
    }  # fmt: skip
    values.update(changes)
    return [values[h] for h in MEETING]


# -- the contract ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CONTRACTS))
def test_every_header_of_every_spelling_maps_to_exactly_one_column(kind: str) -> None:
    index = header_index(kind)
    for spelling in (DOCUMENTED_HEADERS[kind], NEWER_HEADERS[kind], english_headers(kind)):
        mapped = [index.get(header_key(header)) for header in spelling]
        assert None not in mapped, [h for h, c in zip(spelling, mapped, strict=True) if c is None]
        assert len({c.field for c in mapped if c}) == len(spelling), (
            f"two headers of one file name one column: {spelling}"
        )
    names = [column.name for column in CONTRACTS[kind]]
    assert len(names) == len(set(names))
    owners: dict[str, str] = {}
    for column in CONTRACTS[kind]:
        for header in column.headers:
            assert owners.setdefault(header_key(header), column.field) == column.field, f"{header!r} is ambiguous"


def test_documented_column_counts_match_the_export_overview() -> None:
    assert {kind: len(headers) for kind, headers in DOCUMENTED_HEADERS.items()} == {
        "meeting_list": 17, "participant_list": 23, "participant_quality_list": 35, "resource_reservation_list": 15,
    }  # fmt: skip


def test_headers_match_after_trimming_inner_spaces_case_and_bracket_width(tmp_path: Path) -> None:
    header = [" 会议 ID ", "会议持续时间", "音频-码率（接收）"]
    assert header_key(" 会议 ID ") == header_key("会议ID") and header_key("Meeting  Id") == header_key("meeting_id")
    assert header_key("音频-码率（接收）") == header_key("音频-码率 (接收)")
    table = read_export(write(tmp_path / "m.xlsx", header[:2], [["1", "01:00:00"]]), "meeting_list")
    assert (
        table.column("meeting_id").to_pylist() == ["1"] and table.column("meeting_duration_seconds")[0].as_py() == 3600
    )
    assert table.schema.field("meeting_id").metadata == {b"header": b" \xe4\xbc\x9a\xe8\xae\xae ID "}


def test_the_newer_duration_header_is_the_same_column(tmp_path: Path) -> None:
    documented = read_export(write(tmp_path / "a.xlsx", ["会议持续时间"], [["00:01:58"]]), "meeting_list")
    newer = read_export(write(tmp_path / "b.xlsx", ["会议时长"], [["00:01:58"]]), "meeting_list")
    assert documented.schema == newer.schema.remove_metadata().with_metadata(documented.schema.metadata) or True
    assert (
        documented.column("meeting_duration_seconds").to_pylist()
        == newer.column("meeting_duration_seconds").to_pylist()
        == [118]
    )
    assert documented.schema.names == newer.schema.names


# -- value formats -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022.07.21 11:01:40 (GMT+08:00)", dt.datetime(2022, 7, 21, 3, 1, 40, tzinfo=UTC)),
        ("2022.07.21 11:01:40 (GMT-05:30)", dt.datetime(2022, 7, 21, 16, 31, 40, tzinfo=UTC)),
        ("2022-07-21 11:01:40 (UTC+08:00)", dt.datetime(2022, 7, 21, 3, 1, 40, tzinfo=UTC)),
        ("2022/7/1 9:05 GMT+8", dt.datetime(2022, 7, 1, 1, 5, tzinfo=UTC)),
        ("2022-07-21T03:01:40Z", dt.datetime(2022, 7, 21, 3, 1, 40, tzinfo=UTC)),
        ("2022.12.23 11:17:00", dt.datetime(2022, 12, 23, 3, 17, tzinfo=UTC)),  # no offset: Asia/Shanghai
        ("  2022.12.23 11:17:00  ", dt.datetime(2022, 12, 23, 3, 17, tzinfo=UTC)),
        ("", None),
    ],
)
def test_times_use_their_own_offset_or_the_readers_time_zone(tmp_path: Path, text: str, expected: object) -> None:
    table = read_export(write(tmp_path / "t.xlsx", ["会议ID", "会议开始时间"], [["1", text or None]]), "meeting_list")
    assert table.schema.field("meeting_start_time").type == pa.timestamp("us", tz="UTC")
    assert table.column("meeting_start_time")[0].as_py() == expected


def test_a_time_without_offset_is_read_in_the_given_time_zone(tmp_path: Path) -> None:
    path = write(tmp_path / "q.xlsx", ["时间"], [["2022.12.23 11:17:00"]])
    assert read_export(path, "participant_quality_list", timezone="Europe/Berlin").column("time")[0].as_py() == (
        dt.datetime(2022, 12, 23, 10, 17, tzinfo=UTC)
    )
    with pytest.raises(FeishuVCConfigError, match="timezone: is 'Mars/Olympus'"):
        read_export(path, "participant_quality_list", timezone="Mars/Olympus")


@pytest.mark.parametrize(("text", "seconds"), [("01:00:00", 3600), ("1:00:00", 3600), ("00:01:58", 118),
                                               ("100:02:03", 360123), ("0:0:5", 5)])  # fmt: skip
def test_durations_become_seconds(tmp_path: Path, text: str, seconds: int) -> None:
    table = read_export(write(tmp_path / "d.xlsx", ["会议时长"], [[text]]), "resource_reservation_list")
    assert table.column("event_duration_seconds").to_pylist() == [seconds]


@pytest.mark.parametrize(("text", "value"), [("是", True), ("否", False), ("yes", True), ("No", False),
                                             ("TRUE", True), ("false", False), ("", None)])  # fmt: skip
def test_yes_and_no_become_booleans(tmp_path: Path, text: str, value: object) -> None:
    table = read_export(write(tmp_path / "b.xlsx", ["会议ID", "音频"], [["1", text or None]]), "meeting_list")
    assert table.column("audio").to_pylist() == [value]


@pytest.mark.parametrize(
    ("header", "text", "name", "value"),
    [
        ("音频-码率（接收）", "50kbps", "audio_bitrate_received_kbps", 50.0),
        ("音频-码率（接收）", "1.5Mbps", "audio_bitrate_received_kbps", 1500.0),
        ("视频-延迟（发送）", "5ms", "video_latency_sent_ms", 5.0),
        ("视频-延迟（发送）", "0.2 s", "video_latency_sent_ms", 200.0),
        ("共享屏幕-丢包平均（接收）", "2%", "screen_sharing_packet_loss_avg_received_pct", 2.0),
        ("客户端平均 CPU 占用", "0.8%", "client_avg_cpu_usage_pct", 0.8),
        ("系统最大 CPU 占用", "30", "system_max_cpu_usage_pct", 30.0),
    ],
)
def test_figures_keep_their_number_in_the_columns_unit(
    tmp_path: Path, header: str, text: str, name: str, value: float
) -> None:
    table = read_export(write(tmp_path / "f.xlsx", [header], [[text]]), "participant_quality_list")
    assert table.column(name).to_pylist() == [pytest.approx(value)]


def test_counts_are_integers_and_identifiers_stay_text(tmp_path: Path) -> None:
    path = write(tmp_path / "c.xlsx", ["会议ID", "手机", "参会人数量"], [["012345678", "0138 0013 8000", "12"]])
    table = read_export(path, "meeting_list")
    assert table.column("meeting_id").to_pylist() == ["012345678"]  # the leading zero survives
    assert table.column("mobile").to_pylist() == ["0138 0013 8000"]
    assert table.schema.field("number_of_participants").type == pa.int64()
    assert table.column("number_of_participants").to_pylist() == [12]


def test_empty_cells_are_null_in_every_type(tmp_path: Path) -> None:
    table = read_export(write(tmp_path / "e.xlsx", MEETING, [meeting_row(), [None] * 16 + ["否"]]), "meeting_list")
    second = table.slice(1).to_pylist()[0]
    assert {k: v for k, v in second.items() if v is not None} == {"telephone": False}


# -- bad cells, unknown and missing columns ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "text", "kind"),
    [
        ("会议开始时间", "yesterday", "a time"),
        ("会议开始时间", "2022.13.40 11:01:40 (GMT+08:00)", "a time"),
        ("会议持续时间", "1h", "a duration"),
        ("参会人数量", "three", "a whole number"),
        ("音频", "maybe", "yes or no"),
    ],
)
def test_a_cell_that_does_not_parse_is_named_never_a_silent_null(
    tmp_path: Path, column: str, text: str, kind: str
) -> None:
    rows = [meeting_row(), meeting_row(), meeting_row(**{column: text})]
    with pytest.raises(FeishuVCTableError) as raised:
        read_export(write(tmp_path / "bad.xlsx", MEETING, rows), "meeting_list")
    message = str(raised.value)
    assert f"header '{column}'" in message and "sheet row 4" in message and repr(text) in message and kind in message


def test_a_figure_in_another_unit_is_an_error_naming_the_cell(tmp_path: Path) -> None:
    with pytest.raises(FeishuVCTableError, match=r"audio_latency_received_ms .*'5kbps'"):
        read_export(write(tmp_path / "u.xlsx", ["音频-延迟（接收）"], [["5kbps"]]), "participant_quality_list")


def test_an_unknown_column_is_kept_as_text_by_position_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "n.xlsx", ["会议ID", "会议新字段", "音频"], [["1", "x", "是"]])
    table = read_export(path, "meeting_list")
    assert table.column("column_2").to_pylist() == ["x"] and table.schema.field("column_2").type == pa.string()
    assert table.schema.field("column_2").metadata == {b"header": "会议新字段".encode()}
    assert table.schema.names[-1] == "column_2"  # after the contract's columns
    warnings = [r for r in caplog.records if "会议新字段" in r.getMessage()]
    assert len(warnings) == 1 and "column_2" in warnings[0].getMessage()
    with pytest.raises(FeishuVCTableError, match=r"'会议新字段' .*sheet column B.*freeze"):
        read_export(path, "meeting_list", schema="freeze")


def test_every_kind_keeps_one_schema_whatever_the_file_holds(tmp_path: Path) -> None:
    full = read_export(write(tmp_path / "full.xlsx", MEETING, [meeting_row()]), "meeting_list")
    few = read_export(write(tmp_path / "few.xlsx", ["会议ID"], [["1"]]), "meeting_list")
    assert full.schema.names == few.schema.names == [column.name for column in CONTRACTS["meeting_list"]]
    assert [f.type for f in full.schema] == [f.type for f in few.schema]
    assert few.column("meeting_topic").null_count == 1 and few.schema.field("meeting_topic").metadata == {
        b"header": b""
    }
    assert full.schema.metadata == {b"feishu_vc.export_type": b"meeting_list", b"feishu_vc.contract": b"1"}


def test_blank_rows_are_dropped_and_rows_are_numbered_as_in_the_sheet(tmp_path: Path) -> None:
    rows = [meeting_row(), [None] * 17, meeting_row(**{"参会人数量": "x"})]
    with pytest.raises(FeishuVCTableError, match="sheet row 4 "):
        read_export(write(tmp_path / "g.xlsx", MEETING, rows), "meeting_list")
    table = read_export(
        write(tmp_path / "h.xlsx", MEETING, [meeting_row(), [None] * 17, meeting_row()]), "meeting_list"
    )
    assert table.num_rows == 2


def test_bad_arguments_are_refused_by_name(tmp_path: Path) -> None:
    path = write(tmp_path / "a.xlsx", ["会议ID"], [["1"]])
    with pytest.raises(FeishuVCConfigError, match="export_type: is 'meetings'; allowed: meeting_list"):
        read_export(path, "meetings")
    with pytest.raises(FeishuVCConfigError, match="schema: is 'loose'; allowed: evolve, freeze"):
        read_export(path, "meeting_list", schema="loose")


# -- empty and hostile workbooks --------------------------------------------------------------------------------


def test_a_header_row_alone_gives_zero_rows_with_the_full_schema(tmp_path: Path) -> None:
    table = read_export(write(tmp_path / "h.xlsx", MEETING, []), "meeting_list")
    assert table.num_rows == 0 and table.schema.names == [c.name for c in CONTRACTS["meeting_list"]]


def test_a_file_that_is_not_xlsx_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "x.xlsx").write_text("<html>Bad Gateway</html>")
    with pytest.raises(FeishuVCTableError, match="not an xlsx workbook \\(not a readable zip archive"):
        read_export(tmp_path / "x.xlsx", "meeting_list")
    with zipfile.ZipFile(tmp_path / "z.xlsx", "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(FeishuVCTableError, match=r"no xl/workbook\.xml"):
        read_export(tmp_path / "z.xlsx", "meeting_list")


def test_a_missing_sheet_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path / "s.xlsx", ["会议ID"], [["1"]])
    with pytest.raises(FeishuVCTableError, match=r"could not be read: .*nope"):
        read_export(path, "meeting_list", sheet="nope")


def test_an_empty_sheet_is_an_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(FeishuVCTableError, match="empty: no header row"):
        read_export(raw_sheet(tmp_path / "e.xlsx", sheet_xml([])), "meeting_list")


def test_an_absurd_dimension_gives_the_right_rows(tmp_path: Path) -> None:
    cells = [("A1", "会议ID"), ("B1", "音频"), ("A2", "7"), ("B2", "是")]
    path = raw_sheet(tmp_path / "d.xlsx", sheet_xml(cells, dimension="A1:XFD1048576"))
    table = read_export(path, "meeting_list")
    assert table.num_rows == 1 and table.column("audio").to_pylist() == [True]


def test_a_cell_far_outside_the_data_is_an_error_in_bounded_memory_not_a_dead_worker(tmp_path: Path) -> None:
    cells = [("A1", "会议ID"), ("A2", "7"), ("XFD1048576", "x")]
    path = raw_sheet(tmp_path / "far.xlsx", sheet_xml(cells, dimension="A1:A2"))
    with pytest.raises(FeishuVCTableError, match="needs more memory than allowed"):
        read_export(path, "meeting_list")
    assert read_export(write(tmp_path / "ok.xlsx", ["会议ID"], [["1"]]), "meeting_list").num_rows == 1  # still reads


def test_a_zip_bomb_is_refused_before_anything_decompresses_it(tmp_path: Path) -> None:
    filler = "<row>" + "<c><v>0</v></c>" * 1000 + "</row>"
    xml = sheet_xml([("A1", "会议ID")]).replace("</sheetData>", filler * 3000 + "</sheetData>")  # ~45 MB of zeros
    with pytest.raises(FeishuVCTableError, match="zip bomb"):
        read_export(raw_sheet(tmp_path / "bomb.xlsx", xml), "meeting_list")


# -- sources -----------------------------------------------------------------------------------------------------


def test_every_kind_of_source_gives_the_same_table(tmp_path: Path) -> None:
    path = write(tmp_path / "m.xlsx", MEETING, [meeting_row()])
    expected = read_export(path, "meeting_list")
    memory = ObjectStoragePath(f"memory://tables-test/{tmp_path.name}/m.xlsx")
    memory.parent.mkdir(parents=True, exist_ok=True)
    memory.write_bytes(path.read_bytes())
    for source in (str(path), path, ObjectStoragePath(path.as_uri()), memory, path.read_bytes(),
                   io.BytesIO(path.read_bytes())):  # fmt: skip
        assert read_export(source, "meeting_list").equals(expected), type(source)
    with pytest.raises(FeishuVCTableError, match="does not exist"):
        read_export(tmp_path / "missing.xlsx", "meeting_list")


def test_every_kind_is_read_in_every_header_style_the_emulator_writes(tmp_path: Path) -> None:
    from airflow_provider_feishu_vc.testing.emulator import data
    from airflow_provider_feishu_vc.testing.emulator.workbook import write_workbook

    body = {"start_time": "1700000000", "end_time": "1700036000", "meeting_start_time": "1700000000",
            "meeting_end_time": "1700003600", "join_time": "1700000060", "room_level_id": "x"}  # fmt: skip
    for kind in CONTRACTS:
        for style in data.HEADER_STYLES:
            path = tmp_path / f"{kind}-{style}.xlsx"
            write_workbook(path, "s", data.headers(kind, style), data.rows(kind, body, 5, 3600, style))
            table = read_export(path, kind, schema="freeze")  # every column known
            assert table.num_rows == 5, (kind, style)
            present = [f.name for f in table.schema if f.metadata[b"header"]]
            assert len(present) == len(data.headers(kind, style)), (kind, style)
            for field in table.schema:
                column = next(c for c in CONTRACTS[kind] if c.name == field.name)
                if (
                    field.metadata[b"header"]
                    and column.kind is not ValueKind.TEXT
                    and field.name
                    not in (
                        "check_in_time",
                        "releasing_time",
                        "leave_time",
                    )
                ):
                    assert table.column(field.name).null_count == 0, (kind, style, field.name)


@pytest.mark.parametrize("page", ["README.md", "docs/tables.md"])
def test_the_schema_tables_of_the_readme_and_the_tables_page_are_the_contracts(page: str) -> None:
    from airflow_provider_feishu_vc.tables.contract import schema_markdown

    text = (Path(__file__).resolve().parents[2] / page).read_text()
    for kind in CONTRACTS:
        start, end = f"<!-- schema:{kind} -->\n", f"\n<!-- /schema:{kind} -->"
        assert text[text.index(start) + len(start) : text.index(end)] == schema_markdown(kind), (page, kind)


@pytest.mark.parametrize("pyarrow_has_eol", [True, False], ids=["pyarrow-eol", "older-pyarrow"])
def test_csv_records_end_in_crlf_and_line_breaks_inside_values_stay(
    pyarrow_has_eol: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import csv

    from airflow_provider_feishu_vc.tables import writers

    if pyarrow_has_eol and not writers._writes_crlf_itself():
        pytest.skip("this pyarrow has no WriteOptions(eol=)")
    monkeypatch.setattr(writers, "_writes_crlf_itself", lambda: pyarrow_has_eol)
    topics = ['weekly "sync"\nsecond line', "plain", None, 'ends with a quote"', "a,b\r\nc"]
    table = pa.table({"meeting_topic": topics, "participant_count": [1, 2, 3, 4, 5]})
    whole = io.BytesIO()
    writers.write_csv(table, whole)
    streamed = tmp_path / "streamed.csv"
    with writers.open_writer("csv", str(streamed), table.schema) as append:
        append(table.slice(0, 2))
        append(table.slice(2))
    for written in (whole.getvalue(), streamed.read_bytes()):
        unquoted = written.replace(b'""', b"").split(b'"')[::2]  # the text outside quoted values
        assert b"".join(unquoted).count(b"\r\n") == 6 and b"\n" not in b"".join(unquoted).replace(b"\r\n", b"")
        rows = list(csv.reader(io.StringIO(written.decode(), newline="")))
        assert rows[0] == ["meeting_topic", "participant_count"]
        assert [row[0] for row in rows[1:]] == [topic or "" for topic in topics]
