"""Workbooks for the table reader, generated: random cells under each column's type (well-formed and not), and
broken zips and XML. Each read is a real read (the child process included)."""

from __future__ import annotations

import datetime as dt
import io
import re
import tempfile
import zipfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_feishu_vc.client.errors import FeishuVCTableError
from airflow_provider_feishu_vc.tables import CONTRACTS, read_export
from airflow_provider_feishu_vc.tables.contract import LARK_ENGLISH_HEADERS, Column, ValueKind, header_index, header_key
from tests.fuzz.checks import boundary
from tests.tables.workbooks import write

UTC = dt.timezone.utc
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
moments = st.datetimes(dt.datetime(2001, 1, 1), dt.datetime(2099, 1, 1)).map(lambda d: d.replace(microsecond=0))


#: Feishu's "no value" marks, as a cell may hold them: null in every typed column, kept as written in text.
no_value = st.tuples(st.sampled_from(["-", "--", "\u2014"]), st.sampled_from(["", " ", "  "])).map(
    lambda mark: mark[1] + mark[0] + mark[1]
)
#: Per figure unit: (units a cell may carry, the factor to the column's unit), in the case Feishu writes them.
FIGURE_UNITS = {"kbps": [("kbps", 1.0), ("Kbps", 1.0), ("Mbps", 1000.0), ("", 1.0)],
                "ms": [("ms", 1.0), ("MS", 1.0), ("s", 1000.0), ("", 1.0)], "pct": [("%", 1.0), ("", 1.0)]}  # fmt: skip
#: Units the JSON list APIs show that no documented column holds: a bad cell in every figure column.
FOREIGN_UNITS = ["dB", "fps", "P"]


@st.composite
def cell(draw: st.DrawFn, column: Column) -> tuple[str | None, object]:
    """A cell of ``column``: (its text, the value the reader must give), or junk text with ``...`` expected (a cell
    that may, or must, be a bad one)."""
    if draw(st.integers(0, 9)) == 0:
        return None, None
    if draw(st.integers(0, 7)) == 0:
        return draw(st.text(max_size=12)), ...
    kind = column.kind
    if draw(st.integers(0, 7)) == 0:
        text = draw(no_value)
        return text, (text if kind is ValueKind.TEXT else None)
    if kind is ValueKind.TIME:
        moment = draw(moments)
        hours = draw(st.integers(-12, 14))
        offset = dt.timezone(dt.timedelta(hours=hours))
        local = moment.replace(tzinfo=offset)
        spelling = draw(st.integers(0, 2))
        if spelling == 0:
            sign = "+" if hours >= 0 else "-"
            text = f"{local:%Y.%m.%d %H:%M:%S} (GMT{sign}{abs(hours):02d}:00)"
            return text, local.astimezone(UTC)
        if spelling == 1:  # UTC / GMT / Z without an offset: UTC
            zone = draw(st.sampled_from(["UTC", "GMT", "(UTC)", "(GMT)", "Z", "utc"]))
            return f"{moment:%Y-%m-%d %H:%M:%S} {zone}", moment.replace(tzinfo=UTC)
        return f"{moment:%Y.%m.%d %H:%M:%S}", moment.replace(tzinfo=SHANGHAI).astimezone(UTC)
    if kind is ValueKind.DURATION:
        seconds = draw(st.integers(0, 10**6))
        hours, rest = divmod(seconds, 3600)
        leading = draw(st.booleans())
        return (f"{hours:02d}" if leading else str(hours)) + f":{rest // 60:02d}:{rest % 60:02d}", seconds
    if kind is ValueKind.BOOL:
        word, value = draw(st.sampled_from([("是", True), ("否", False), ("yes", True), ("no", False)]))
        return word, value
    if kind is ValueKind.COUNT:
        number = draw(st.integers(0, 10**9))
        return draw(st.sampled_from(["", "+"])) + str(number), number
    if kind is ValueKind.FIGURE:
        number = draw(st.integers(0, 10**6)) / draw(st.sampled_from([1, 10, 100]))  # 0.8%, 2.35%, ...
        space = draw(st.sampled_from(["", " "]))
        if draw(st.integers(0, 9)) == 0:
            return f"{number}{space}{draw(st.sampled_from(FOREIGN_UNITS))}", ...  # must be a bad cell
        unit, factor = draw(st.sampled_from(FIGURE_UNITS.get(column.unit or "", [("", 1.0)])))
        return f"{number}{space if unit else ''}{unit}", number * factor
    text = draw(st.text(min_size=1, max_size=15).filter(lambda t: t.strip()))
    return text, text


@st.composite
def sheets(draw: st.DrawFn) -> tuple[str, list[tuple[Column, str]], list[list[tuple[str | None, object]]]]:
    kind = draw(st.sampled_from(list(CONTRACTS)))
    columns = draw(st.lists(st.sampled_from(CONTRACTS[kind]), min_size=1, max_size=6, unique_by=lambda c: c.field))
    # any header each column accepts: Chinese, newer, Lark's English (as Lark spells it), the canonical name
    index = header_index(kind)
    english = {index[header_key(label)].field: label for label in LARK_ENGLISH_HEADERS[kind]}
    headers = [
        draw(st.sampled_from([*column.headers, english.get(column.field, column.headers[0])])) for column in columns
    ]
    rows = draw(st.lists(st.tuples(*(cell(column) for column in columns)).map(list), max_size=6))
    return kind, list(zip(columns, headers, strict=True)), rows


@given(sheets())
def test_any_cells_give_their_typed_values_or_an_error_naming_a_bad_cell(
    generated: tuple[str, list[tuple[Column, str]], list[list[tuple[str | None, object]]]],
) -> None:
    kind, named, rows = generated
    columns = [column for column, _ in named]
    headers = [header for _, header in named]
    junk = any(expected is ... for row in rows for _, expected in row)
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / "f.xlsx", headers, [[text for text, _ in row] for row in rows])
        with boundary("workbooks: cells under each column's type", allowed=(FeishuVCTableError,)):
            try:
                table = read_export(path, kind)
            except FeishuVCTableError as error:
                message = str(error)
                row = int(re.search(r"sheet row (\d+)", message).group(1))  # type: ignore[union-attr]
                assert 2 <= row <= len(rows) + 1 and any(f"header {h!r}" in message for h in headers), message
                assert junk, f"well-formed cells were refused: {message}"
                raise
            kept = [row for row in rows if any(text is not None and text.strip() for text, _ in row)]
            assert table.num_rows == len(kept)
            for position, column in enumerate(columns):
                got = table.column(column.name).to_pylist()
                for index, row in enumerate(kept):
                    text, expected = row[position]
                    if expected is ... or text is None or not text.strip():
                        continue
                    if isinstance(expected, float):
                        assert abs(got[index] - expected) <= 1e-9 * max(1.0, expected), (column.name, text, got[index])
                    else:
                        assert got[index] == expected, (column.name, text, got[index])


def _valid_workbook() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / "v.xlsx", ["会议ID", "会议开始时间", "音频"],
                     [["1", "2022.07.21 11:01:40 (GMT+08:00)", "是"]] * 20)  # fmt: skip
        return path.read_bytes()


VALID = _valid_workbook()


def _replace_part(source: bytes, part: str, content: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(source)) as old, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as new:
        for item in old.infolist():
            new.writestr(item.filename, content if item.filename == part else old.read(item.filename))
    return out.getvalue()


broken = st.one_of(
    st.binary(max_size=200),
    st.integers(0, len(VALID)).map(lambda cut: VALID[:cut]),
    st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)).map(
        lambda flip: VALID[: flip[0]] + bytes([VALID[flip[0]] ^ flip[1]]) + VALID[flip[0] + 1 :]
    ),
    st.tuples(st.sampled_from(["xl/worksheets/sheet1.xml", "xl/workbook.xml", "[Content_Types].xml",
                               "xl/_rels/workbook.xml.rels"]), st.binary(max_size=120)).map(
        lambda swap: _replace_part(VALID, swap[0], swap[1])
    ),
)  # fmt: skip


@given(broken)
def test_any_broken_workbook_is_a_clear_error_or_the_right_rows(content: bytes) -> None:
    with boundary("workbooks: broken zip and XML", allowed=(FeishuVCTableError,)):
        table = read_export(content, "meeting_list", timeout=30)
        assert table.num_rows <= 20
