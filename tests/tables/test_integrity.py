"""A typed table holds exactly the sheet's rows, in order, each value in its own column, or the read is an error
naming what could not be read: layouts that once lost, shifted or invented rows (issue 35), read in pieces and
whole."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from airflow_provider_feishu_vc.client.errors import FeishuVCTableError
from airflow_provider_feishu_vc.tables import counting, pieces, read_export
from airflow_provider_feishu_vc.tables.contract import DOCUMENTED_HEADERS
from airflow_provider_feishu_vc.testing.emulator import data
from airflow_provider_feishu_vc.testing.emulator.workbook import write_workbook
from tests.tables.workbooks import grid_xml, raw_sheet

MEETING = DOCUMENTED_HEADERS["meeting_list"]
BODY = {"start_time": "1700000000", "end_time": "1700036000", "meeting_start_time": "1700000000",
        "meeting_end_time": "1700003600", "join_time": "1700000060", "room_level_id": "x"}  # fmt: skip
ROWS = 2000


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(pieces, "PIECE_BYTES", 8 * 1024)
    return 8 * 1024


def read_whole(path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(pieces, "PIECE_BYTES", 2**40)
        return read_export(path, kind)


def meeting(number: int) -> list[str]:
    """A meeting-list row whose ID is its number, every other cell well-formed."""
    return [str(number), f"topic {number}", "kehan", "dev", "u1", "e1", "a@b.c", "138",
            "2022.12.23 11:16:59 (GMT+08:00)", "2022.12.23 11:18:51 (GMT+08:00)", "00:01:52", "3",
            "是", "否", "是", "否", "否"]  # fmt: skip


def test_a_formatted_blank_row_above_the_header_loses_no_row_in_pieces(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = [(1, [(c, None) for c in range(len(MEETING))]), (2, list(enumerate(MEETING)))]
    grid += [(n + 2, list(enumerate(meeting(n)))) for n in range(1, ROWS + 1)]
    path = raw_sheet(tmp_path / "blank-row.xlsx", grid_xml(grid))
    assert sum(not p.whole for p in pieces.pieces(str(path), 0, small_pieces)) > 10
    table = read_export(path, "meeting_list")
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, ROWS + 1)]
    assert table.equals(read_whole(path, "meeting_list", monkeypatch))


def test_a_note_left_of_the_header_shifts_no_column_in_pieces(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = [(1, [(c + 1, h) for c, h in enumerate(MEETING)])]
    grid += [(n + 1, [(c + 1, v) for c, v in enumerate(meeting(n))]) for n in range(1, ROWS + 1)]
    grid[5] = (grid[5][0], [(0, "a note"), *grid[5][1]])
    path = raw_sheet(tmp_path / "shifted.xlsx", grid_xml(grid))
    table = read_export(path, "meeting_list")
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, ROWS + 1)]
    assert table.column("meeting_topic").to_pylist() == [f"topic {n}" for n in range(1, ROWS + 1)]
    assert table.column("telephone").null_count == 0 and table.column("meeting_start_time").null_count == 0
    assert table.column("column_1").to_pylist() == [None] * 4 + ["a note"] + [None] * (ROWS - 5)
    assert table.equals(read_whole(path, "meeting_list", monkeypatch))


@pytest.mark.parametrize("rows", [3, ROWS], ids=["whole", "pieces"])
def test_a_title_row_above_the_header_is_reported_not_read_as_data(
    tmp_path: Path, small_pieces: int, caplog: pytest.LogCaptureFixture, rows: int
) -> None:
    grid = [(1, [(0, "会议明细 2022-07-21")]), (2, list(enumerate(MEETING)))]
    grid += [(n + 2, list(enumerate(meeting(n)))) for n in range(1, rows + 1)]
    path = raw_sheet(tmp_path / "title.xlsx", grid_xml(grid))
    with caplog.at_level(logging.WARNING):
        table = read_export(path, "meeting_list", schema="freeze")
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, rows + 1)]
    assert table.column("meeting_duration_seconds").null_count == 0
    assert table.schema.field("meeting_id").metadata == {b"header": "会议ID".encode()}
    said = [r.getMessage() for r in caplog.records if "会议明细 2022-07-21" in r.getMessage()]
    assert len(said) == 1 and "sheet row 2" in said[0], said
    grid[2 + rows // 2] = (grid[2 + rows // 2][0], [(0, "x"), (8, "yesterday")])
    with pytest.raises(FeishuVCTableError, match=rf"sheet row {rows // 2 + 3} \(cell I{rows // 2 + 3}\)"):
        read_export(raw_sheet(tmp_path / "bad.xlsx", grid_xml(grid)), "meeting_list")


@pytest.mark.parametrize("schema", ["evolve", "freeze"])
@pytest.mark.parametrize(
    ("written", "asked"),
    [("meeting_list", "participant_list"), ("participant_list", "meeting_list"),
     ("resource_reservation_list", "participant_quality_list"), ("participant_quality_list", "meeting_list")],
)  # fmt: skip
def test_the_wrong_kind_is_an_error_naming_the_kind_the_file_looks_like(
    tmp_path: Path, schema: str, written: str, asked: str
) -> None:
    path = tmp_path / "export.xlsx"
    write_workbook(path, "s", data.headers(written), data.rows(written, BODY, 5, 600))
    with pytest.raises(FeishuVCTableError, match=f"looks like a {written} export, not {asked}"):
        read_export(path, asked, schema=schema)


def test_a_sheet_with_no_header_of_any_kind_is_an_error(tmp_path: Path) -> None:
    path = raw_sheet(tmp_path / "none.xlsx", grid_xml([(1, [(0, "name"), (1, "value")]), (2, [(0, "a"), (1, "1")])]))
    with pytest.raises(FeishuVCTableError, match="no header row of a meeting_list export"):
        read_export(path, "meeting_list")


def test_a_note_left_of_the_header_in_a_later_piece_only_reads_the_sheet_whole(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = [(1, [(c + 1, h) for c, h in enumerate(MEETING)])]
    grid += [(n + 1, [(c + 1, v) for c, v in enumerate(meeting(n))]) for n in range(1, ROWS + 1)]
    grid[1500] = (grid[1500][0], [(0, "a late note"), *grid[1500][1]])
    path = raw_sheet(tmp_path / "late-note.xlsx", grid_xml(grid))
    table = read_export(path, "meeting_list")
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, ROWS + 1)]
    assert table.column("column_1").to_pylist()[1499] == "a late note"
    assert table.equals(read_whole(path, "meeting_list", monkeypatch))


def test_a_piece_read_with_another_count_of_rows_than_was_cut_is_an_error(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run-time row count: had the reader lost (or invented) a row of one piece, so that the row elements, the rows
    with a value and the rows the cells name all differ from the rows read, the read fails."""
    from airflow_provider_feishu_vc.tables import _sheet_process

    path = tmp_path / "export.xlsx"
    write_workbook(path, "s", MEETING, (meeting(n) for n in range(1, ROWS + 1)))
    counted, valued, cell_rows = counting._elements, counting.valued_rows, counting.cell_rows
    cut: list[int] = []

    def one_more_in_the_third_piece(text: bytes, start: int, end: int, previous: int = 0) -> object:
        cut.append(start)
        found = counted(text, start, end, previous)
        assert found is not None
        numbers, cells = found
        return (numbers, cells) if len(cut) != 3 else (np.append(numbers, numbers.max() + 10**6), cells)

    def one_more_named(piece: pieces.Piece) -> counting.NamedCells:
        named = cell_rows(piece)
        return dataclasses.replace(
            named, rows=np.append(named.rows, named.rows.max() + 10**6), values=np.append(named.values, 1)
        )

    monkeypatch.setattr(counting, "_elements", one_more_in_the_third_piece)
    monkeypatch.setattr(counting, "valued_rows", lambda piece: valued(piece) + 1)
    monkeypatch.setattr(counting, "cell_rows", one_more_named)
    request = {"path": str(path), "sheet": 0, "export_type": "meeting_list", "timezone": "Asia/Shanghai",
               "schema": "evolve", "output": "parquet", "out": str(tmp_path / "out.parquet"),
               "memory_limit": 2**33, "piece_bytes": small_pieces}  # fmt: skip
    with pytest.raises(FeishuVCTableError, match=r"sheet rows from \d+ hold \d+ rows with a value, but \d+ were"):
        _sheet_process.convert(request)
    monkeypatch.setattr(counting, "_elements", counted)
    answer = _sheet_process.convert(request)
    assert answer["rows"] == ROWS
    # what the count cost is timed apart (benchmarks report its share): some of the helper's CPU time, not all
    assert 0 < answer["seconds"]["counting_cpu"] < answer["seconds"]["cpu"]


@pytest.mark.parametrize("rows", [3, ROWS], ids=["whole", "pieces"])
def test_rows_are_named_by_their_sheet_row_below_formatted_blank_rows(
    tmp_path: Path, small_pieces: int, caplog: pytest.LogCaptureFixture, rows: int
) -> None:
    grid = [(1, [(c, None) for c in range(4)]), (3, [(0, "会议明细")]), (4, list(enumerate(MEETING)))]
    grid += [(n + 4, list(enumerate(meeting(n)))) for n in range(1, rows + 1)]
    with caplog.at_level(logging.WARNING):
        assert read_export(raw_sheet(tmp_path / "blank-above.xlsx", grid_xml(grid)), "meeting_list").num_rows == rows
    assert any("Sheet rows 3 to 3 sit above the header (sheet row 4)" in r.getMessage() for r in caplog.records)
    grid[-1] = (grid[-1][0], [(0, "x"), (11, "1h")])
    with pytest.raises(FeishuVCTableError, match=rf"sheet row {rows + 4} \(cell L{rows + 4}\)"):
        read_export(raw_sheet(tmp_path / "bad.xlsx", grid_xml(grid)), "meeting_list")


def test_pieces_whose_rows_skip_numbers_lose_no_row(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that leaves blank rows out numbers its rows with gaps: every row is read, in pieces as whole."""
    grid = [(1, list(enumerate(MEETING)))]
    grid += [(2 + 3 * n + n % 2, list(enumerate(meeting(n)))) for n in range(1, ROWS + 1)]
    path = raw_sheet(tmp_path / "gaps.xlsx", grid_xml(grid))
    assert sum(not p.whole for p in pieces.pieces(str(path), 0, small_pieces)) > 10
    table = read_export(path, "meeting_list")
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, ROWS + 1)]
    assert table.equals(read_whole(path, "meeting_list", monkeypatch))
