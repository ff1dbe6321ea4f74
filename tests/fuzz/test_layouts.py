"""Workbook layouts, generated: the header not in the first row nor in column A, title rows and formatted blank rows
above it, blank formatted cells and columns, notes beside the table, sparse and blank rows, trailing empty rows,
shared and inline strings, numbers and booleans stored as such, ``-`` / ``--`` / ``—`` cells (padded or not) in every
column, every kind, Chinese and Lark's English headers, row elements written out of the order of their numbers. Read
in small pieces and whole (both real reads, the child process included), the table must be the same, and exactly the
rows written (in sheet order), each value in its column."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_feishu_vc.tables import CONTRACTS, pieces, read_export
from airflow_provider_feishu_vc.tables.contract import (
    DOCUMENTED_HEADERS,
    NEWER_HEADERS,
    Column,
    ValueKind,
    english_headers,
    header_index,
    header_key,
)
from tests.fuzz.checks import boundary
from tests.tables.workbooks import GridCell, write_grid

UTC = dt.timezone.utc
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
#: Titles and notes: text no kind takes for a header.
TITLES = ("会议明细 2022-07-21", "Meeting list, exported 2022-07-21", "导出时间：2022.07.21 11:01", "飞书视频会议")
WORDS = st.text(alphabet="abcXYZ 会议明细导出-._:0123456789", min_size=1, max_size=10).map(str.strip).filter(bool)
moments = st.datetimes(dt.datetime(2001, 1, 1), dt.datetime(2099, 1, 1)).map(lambda d: d.replace(microsecond=0))
strings = st.sampled_from("si")  # a shared or an inline string
Written = tuple[GridCell, Any]
UNIT_SUFFIXES = {"kbps": "kbps", "ms": "ms", "pct": "%"}
#: Feishu's "no value" marks, as the docs list them (spelled here, not taken from the code under test): alone in a
#: cell, padded or not, they are null in every typed column and kept as written in text columns.
MARKS = st.tuples(st.sampled_from(["", " ", "  "]), st.sampled_from(["-", "--", "\u2014"]), st.sampled_from(["", " "]))


@st.composite
def value(draw: st.DrawFn, column: Column) -> Written:
    """A cell of ``column`` as some writer stores it, and the value the table must hold."""
    text = draw(strings)
    kind = column.kind
    if draw(st.integers(0, 5)) == 0:  # no value, as Feishu marks it: in any column, times and counts included
        mark = "".join(draw(MARKS))
        return (text, mark), mark if kind is ValueKind.TEXT else None
    if kind is ValueKind.TIME:
        moment, hours = draw(moments), draw(st.integers(-12, 14))
        if draw(st.booleans()):
            local = moment.replace(tzinfo=dt.timezone(dt.timedelta(hours=hours)))
            sign = "+" if hours >= 0 else "-"
            return (text, f"{moment:%Y.%m.%d %H:%M:%S} (GMT{sign}{abs(hours):02d}:00)"), local.astimezone(UTC)
        return (text, f"{moment:%Y.%m.%d %H:%M:%S}"), moment.replace(tzinfo=SHANGHAI).astimezone(UTC)
    if kind is ValueKind.DURATION:
        seconds = draw(st.integers(0, 10**6))
        hours, rest = divmod(seconds, 3600)
        return (text, f"{hours}:{rest // 60:02d}:{rest % 60:02d}"), seconds
    if kind is ValueKind.BOOL:
        return draw(st.sampled_from([((text, "是"), True), ((text, "否"), False), ((text, "yes"), True),
                                     ((text, "no"), False), (("b", "1"), True), (("b", "0"), False)]))  # fmt: skip
    if kind is ValueKind.COUNT:
        number = draw(st.integers(0, 10**9))
        return (draw(st.sampled_from([text, "n"])), str(number)), number
    if kind is ValueKind.FIGURE:
        figure = draw(st.integers(0, 10**6)) / 10
        if draw(st.booleans()):
            return ("n", str(figure)), figure
        return (text, f"{figure}{UNIT_SUFFIXES.get(column.unit or '', '')}"), figure
    if draw(st.integers(0, 4)) == 0:
        number = draw(st.integers(0, 10**9))
        return ("n", str(number)), str(number)
    words = draw(WORDS)
    return (text, words), words


#: A cell that holds no value: none at all, a formatted cell, whitespace, an error value (read as empty), or a
#: formula's empty text result.
empty = st.sampled_from([None, ("-", ""), ("i", " "), ("s", "  "), ("e", "#N/A"), ("f", "")])
#: A cell of a blank row: formatted, mostly; an error value or an empty formula result sometimes (the sheet reader
#: keeps both in its cells: a row of them above the header is where its cells start).
blank = st.sampled_from([("-", ""), ("-", ""), ("-", ""), ("e", "#N/A"), ("f", "")])


@dataclass
class Layout:
    kind: str
    rows: list[tuple[int, list[tuple[int, GridCell]]]]
    expected: list[dict[str, Any]]
    piece_bytes: int


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    kind = draw(st.sampled_from(list(CONTRACTS)))
    spelling = draw(st.sampled_from([DOCUMENTED_HEADERS[kind], NEWER_HEADERS[kind], english_headers(kind)]))
    chosen = draw(st.lists(st.sampled_from(spelling), min_size=1, max_size=8, unique=True))
    index = header_index(kind)
    columns = [index[header_key(header)] for header in chosen]
    left = draw(st.sampled_from([0, 1, 1, 2]))  # the header's first column
    right = left + len(chosen)  # the first column right of the header
    notes_at = draw(st.sampled_from([None, right, right + 1, *([left - 1] * 3 if left else [])]))
    rows: list[tuple[int, list[tuple[int, GridCell]]]] = []
    number = 0

    def blank_cells() -> list[tuple[int, GridCell]]:
        return [(column, draw(blank)) for column in sorted(draw(st.sets(st.integers(0, right + 2), max_size=4)))]

    for above in draw(st.lists(st.sampled_from(["title", "blank", "gap"]), max_size=3)):
        number += 1
        if above == "title":
            rows.append((number, [(draw(st.integers(0, right)), (draw(strings), draw(st.sampled_from(TITLES))))]))
        elif above == "blank":
            rows.append((number, blank_cells()))
    number += 1
    header_cells = [(left + i, (draw(strings), header)) for i, header in enumerate(chosen)]
    rows.append((number, sorted([*header_cells, *[c for c in blank_cells() if not left <= c[0] < right]])))
    data: list[tuple[list[Any], Any]] = []  # per data row: the value of each chosen column, and its note
    shapes = st.sampled_from(["row", "row", "row", "sparse", "blank", "gap", "note"])
    for shape in [draw(shapes) for _ in range(draw(st.integers(0, 40)))]:  # sheets of many pieces as often as not
        number += 1
        if shape == "gap":
            continue
        if shape == "blank":
            rows.append((number, blank_cells()))
            continue
        cells: list[tuple[int, GridCell]] = []
        values: list[Any] = []
        filled = False  # a cell with a value is written: a no-value mark is one (a row of nulls, not no row)
        for position, column in enumerate(columns):
            written: Written | None = (
                draw(value(column)) if shape == "row" or (shape == "sparse" and draw(st.booleans())) else None
            )
            if written is None:
                cell = draw(empty)
                if cell is not None:
                    cells.append((left + position, cell))
                values.append(None)
            else:
                cells.append((left + position, written[0]))
                values.append(written[1])
                filled = True
        noted = shape == "note" or (shape == "sparse" and draw(st.booleans()))
        note = draw(WORDS) if notes_at is not None and noted else None
        if note is not None:
            cells.append((notes_at, (draw(strings), note)))  # type: ignore[arg-type]
        rows.append((number, sorted(cells)))
        if note is not None or filled:
            data.append((values, note))
    for _ in range(draw(st.integers(0, 2))):  # trailing formatted rows
        number += 1
        rows.append((number, blank_cells()))
    for origin, target in draw(st.lists(st.tuples(st.integers(0, len(rows) - 1), st.integers(0, len(rows) - 1)),
                                        max_size=2)):  # fmt: skip
        rows.insert(target, rows.pop(origin))  # a row element written out of order: it stays in its sheet row
    start = min(column for _, cells in rows for column, (kind_, _) in cells if kind_ != "-")
    expected = []
    for values, note in data:
        row = {column.name: None for column in CONTRACTS[kind]}
        row.update({column.name: v for column, v in zip(columns, values, strict=True)})
        if any(n is not None for _, n in data):
            row[f"column_{notes_at - start + 1}"] = note  # type: ignore[operator]
        expected.append(row)
    return Layout(kind, rows, expected, draw(st.sampled_from([200, 400, 1500])))


@contextmanager
def piece_bytes(size: int) -> Iterator[None]:
    saved = pieces.PIECE_BYTES
    pieces.PIECE_BYTES = size
    try:
        yield
    finally:
        pieces.PIECE_BYTES = saved


@given(layouts())
def test_any_layout_reads_the_same_in_pieces_and_whole_and_holds_exactly_the_rows_written(layout: Layout) -> None:
    with tempfile.TemporaryDirectory() as folder, boundary("workbooks: layouts in pieces and whole", allowed=()):
        path = write_grid(Path(folder) / "layout.xlsx", layout.rows)
        with piece_bytes(layout.piece_bytes):
            in_pieces = read_export(path, layout.kind)
        with piece_bytes(2**40):
            whole = read_export(path, layout.kind)
        assert in_pieces.equals(whole, check_metadata=True), (in_pieces.to_pylist(), whole.to_pylist())
        assert whole.to_pylist() == layout.expected
