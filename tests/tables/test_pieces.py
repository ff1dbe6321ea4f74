"""Reading a big sheet a piece at a time (tables/pieces.py) gives exactly the table reading it whole gives: every
kind and header style, bad cells named by their real sheet row, a column whose only data sits in a later piece, a
damaged sheet; and the sheets that must be read whole are."""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_feishu_vc.client.errors import FeishuVCTableError
from airflow_provider_feishu_vc.tables import counting, pieces, read_export
from airflow_provider_feishu_vc.tables.contract import CONTRACTS
from airflow_provider_feishu_vc.testing.emulator import data
from airflow_provider_feishu_vc.testing.emulator.workbook import write_stored_workbook, write_workbook
from tests.tables.workbooks import write

BODY = {"start_time": "1700000000", "end_time": "1700036000", "meeting_start_time": "1700000000",
        "meeting_end_time": "1700003600", "join_time": "1700000060", "room_level_id": "x"}  # fmt: skip
SMALL_PIECES = 8 * 1024


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pieces of 8 KiB: a few hundred rows make dozens of pieces (the value travels to the helper in each read)."""
    monkeypatch.setattr(pieces, "PIECE_BYTES", SMALL_PIECES)
    return SMALL_PIECES


def read_whole(path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, **options: str) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(pieces, "PIECE_BYTES", 2**40)
        return read_export(path, kind, **options)


@pytest.mark.parametrize("kind", sorted(CONTRACTS))
@pytest.mark.parametrize("style", sorted(data.HEADER_STYLES))
def test_every_kind_and_style_reads_the_same_in_pieces_as_whole(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch, kind: str, style: str
) -> None:
    path = tmp_path / "export.xlsx"
    write_workbook(path, "s", data.headers(kind, style), data.rows(kind, BODY, 400, 600, style))
    cut = list(pieces.pieces(str(path), 0, small_pieces))
    assert len(cut) > 10 and not any(piece.whole for piece in cut)
    whole = read_whole(path, kind, monkeypatch)
    in_pieces = read_export(path, kind)
    assert in_pieces.num_rows == 400
    assert in_pieces.equals(whole, check_metadata=True)


def test_pieces_cover_every_row_once_in_order(tmp_path: Path, small_pieces: int) -> None:
    path = tmp_path / "export.xlsx"
    write_workbook(path, "s", ["会议ID"], ([str(n)] for n in range(1, 2001)))
    seen: list[str] = []
    import fastexcel

    for number, piece in enumerate(pieces.pieces(str(path), 0, small_pieces)):
        column = fastexcel.read_excel(piece.source).load_sheet(0, header_row=None, dtypes="string").to_arrow()
        values = column.column(0).to_pylist()
        assert values[0] == "会议ID"  # the header, or its copy just above the piece's first row
        if number:
            assert piece.first_row == int(values[1])  # the copy sits in the row above: sheet row = value + 1 - 1
        seen += values[1:]
        # every row element of the piece, its copy left out
        assert counting.counted(piece).rows == len(values) - piece.copy
    assert seen == [str(n) for n in range(1, 2001)]


def test_a_bad_cell_in_a_later_piece_is_named_by_its_sheet_row(tmp_path: Path, small_pieces: int) -> None:
    header = data.headers("meeting_list")
    rows = list(data.rows("meeting_list", BODY, 600, 600))
    start = header.index("会议开始时间")
    rows[477][start] = "not a time"
    path = tmp_path / "export.xlsx"
    write_workbook(path, "s", header, rows)
    with pytest.raises(FeishuVCTableError, match=r"sheet row 479\b.*'not a time'"):
        read_export(path, "meeting_list")


def test_a_column_whose_only_data_is_in_a_later_piece_is_kept_as_when_read_whole(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    header = data.headers("meeting_list")
    rows = [[*row, ""] for row in data.rows("meeting_list", BODY, 500, 600)]
    rows[450][-1] = "a note nobody headed"
    path = tmp_path / "export.xlsx"
    write_workbook(path, "s", [*header, ""], rows)
    in_pieces = read_export(path, "meeting_list")
    assert in_pieces.equals(read_whole(path, "meeting_list", monkeypatch))
    extra = f"column_{len(header) + 1}"
    assert in_pieces.column(extra).to_pylist()[450] == "a note nobody headed"


def test_a_damaged_sheet_read_in_pieces_is_an_error_naming_the_damage(tmp_path: Path, small_pieces: int) -> None:
    path = tmp_path / "export.xlsx"
    write_workbook(path, "s", data.headers("meeting_list"), data.rows("meeting_list", BODY, 300, 600))
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        sheet = archive.getinfo("xl/worksheets/sheet1.xml")
    name_length, extra_length = struct.unpack_from("<HH", raw, sheet.header_offset + 26)
    raw[sheet.header_offset + 30 + name_length + extra_length + sheet.compress_size * 3 // 4] ^= 0x10
    with pytest.raises(FeishuVCTableError, match=r"^source is a damaged xlsx workbook: "):
        read_export(bytes(raw), "meeting_list")


def test_sheets_that_must_be_read_whole_are(tmp_path: Path, small_pieces: int) -> None:
    header, rows = data.headers("meeting_list"), list(data.rows("meeting_list", BODY, 300, 600))
    small = tmp_path / "small.xlsx"
    write_workbook(small, "s", header, rows[:2])
    assert [p.whole for p in pieces.pieces(str(small), 0, 2**20)] == [True]
    unnumbered = tmp_path / "unnumbered.xlsx"  # the stdlib writer's rows carry no r="..."
    write_stored_workbook(unnumbered, "s", header, rows, len(rows))
    assert [p.whole for p in pieces.pieces(str(unnumbered), 0, small_pieces)] == [True]
    shared = tmp_path / "shared.xlsx"  # XlsxWriter's default: a shared-strings table
    write(shared, header, rows)
    with monkeypatch_shared_limit(0):
        assert [p.whole for p in pieces.pieces(str(shared), 0, small_pieces)] == [True]
    assert not any(p.whole for p in pieces.pieces(str(shared), 0, small_pieces))  # a small table is cut too
    assert [p.whole for p in pieces.pieces(str(small), "another sheet", 1)] == [True]


class monkeypatch_shared_limit:
    def __init__(self, limit: int) -> None:
        self.limit, self.saved = limit, pieces.MAX_SHARED_STRINGS_BYTES

    def __enter__(self) -> None:
        pieces.MAX_SHARED_STRINGS_BYTES = self.limit

    def __exit__(self, *_: object) -> None:
        pieces.MAX_SHARED_STRINGS_BYTES = self.saved


@given(
    text=st.lists(
        st.sampled_from(
            [b"<row", b"<ro", b"<r", b"ow", b"w", b"<", b"<c", b"c", b'<row r="1"/>', b"</row>", b"x", b"\xe4\xbc\x9a"]
        )
    ).map(b"".join),
    bounds=st.tuples(st.integers(0, 80), st.integers(0, 80)),
)
def test_the_row_and_cell_element_counts_find_every_tag_at_every_offset(text: bytes, bounds: tuple[int, int]) -> None:
    """The vector counts of row elements (where each starts) and of ``<c`` agree with ``bytes.count`` for any bytes
    and any bounds, a tag cut by either bound included, tags packed closer than eight bytes included."""
    start, end = min(min(bounds), len(text)), min(max(bounds), len(text))
    found = counting._elements(text, start, end)
    assert found is not None
    numbers, cells = found
    assert numbers.size == text.count(b"<row", start, end)
    assert cells == text.count(b"<c", start, end)


@given(st.lists(st.booleans(), max_size=200), st.integers(0, 7))
def test_few_true_finds_what_flatnonzero_finds(values: list[bool], offset: int) -> None:
    """Where a bool array holds True, eight at a time, is ``np.flatnonzero``'s answer for any array: dense or sparse,
    several True in one group of eight, a length that is no multiple of eight, a view that starts mid-word."""
    import numpy as np

    mask = np.array([False] * offset + values, dtype=bool)[offset:]
    assert counting._few_true(mask).tolist() == np.flatnonzero(mask).tolist()


@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(['<row r="{}">', '<row r="{}"/>', '<row spans="1:3" r="{}">', "<row>", '<row  r="{}">',
                             '<row r="{}" s="1">', '<row r="0{}">']),
            st.integers(1, 10**10),
        )
    ),
    filler=st.sampled_from([b"", b"x", b"xy", b"xyz", b"\xe4\xbc\x9a"]),
    cut=st.integers(0, 3),
    lead=st.integers(0, 3),
)  # fmt: skip
def test_the_row_numbers_are_read_as_the_sheet_reader_numbers_rows(
    rows: list[tuple[str, int]], filler: bytes, cut: int, lead: int
) -> None:
    """Each row element's number, read a vector at a time, is the one its ``r`` says (or the one before's plus one),
    whatever comes before ``r``, however many digits it has, wherever the element ends up against the end."""
    text = b"x" * lead + b"".join(tag.format(number).encode() + filler for tag, number in rows)
    text = text[: len(text) - cut] if rows and text.endswith(b">") else text
    expected, previous = [], 7
    for found in re.finditer(rb"<row", text):
        written = pieces.ROW_NUMBER.match(text, found.start())
        previous = int(written.group(1)) if written else previous + 1
        expected.append(previous)
    assert counting._row_numbers(text, 0, len(text), 7).tolist() == expected


@pytest.mark.parametrize(
    "xml", [b'<c r="A1"/>', b"x<c>", b'<c\tr="A1">', b"ab<c/", b'<color/><c r="B2"', b"<c", b"", b"<c<c ", b"<<cc<c"]
)
def test_cell_tags_are_counted_as_bytes_count_finds_them_in_every_slice(xml: bytes) -> None:
    """The vector count of ``<c`` (16-bit words at both byte offsets) against ``bytes.count``, at every start and end:
    none missed (a cell laid over another would go unseen), none found across a slice's edge."""
    for start in range(len(xml) + 1):
        for end in range(start, len(xml) + 1):
            found = counting._elements(xml, start, end)
            assert found is not None and found[1] == xml[start:end].count(b"<c")
