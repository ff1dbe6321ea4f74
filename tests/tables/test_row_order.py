"""Rows where a sheet puts them, not where its XML writes them: a row element out of the order of its number, a cell
whose reference names another row, two row elements of one number, rows without a number. Read in pieces or whole,
the table holds the rows a spreadsheet shows, in sheet order, or the read is an error saying rows would be lost."""

from __future__ import annotations

import contextlib
import itertools
import re
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from airflow_provider_feishu_vc.client.errors import FeishuVCTableError
from airflow_provider_feishu_vc.tables import pieces, read_export
from airflow_provider_feishu_vc.tables.contract import DOCUMENTED_HEADERS
from tests.tables.workbooks import grid_xml, raw_sheet

MEETING = DOCUMENTED_HEADERS["meeting_list"]
ROWS = 600
SMALL_PIECES = 8 * 1024
#: How fastexcel before 0.21 (the Airflow 3.2 leg's lock) meets an inline string written with <v>: it refuses the cell,
#: which is an error as well (nothing read without a word); 0.21 reads it as empty, and our check names it.
REFUSED_INLINE_V = r"|Unknown cell 't' attribute: \"inlineStr\""


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(pieces, "PIECE_BYTES", SMALL_PIECES)
    return SMALL_PIECES


def read_whole(path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(pieces, "PIECE_BYTES", 2**40)
        return read_export(path, "meeting_list")


def meeting(number: int) -> list[str]:
    """A meeting-list row whose ID is its number."""
    return [str(number), f"topic {number}", "kehan", "dev", "u1", "e1", "a@b.c", "138",
            "2022.12.23 11:16:59 (GMT+08:00)", "2022.12.23 11:18:51 (GMT+08:00)", "00:01:52", "3",
            "是", "否", "是", "否", "否"]  # fmt: skip


def meeting_rows() -> list[tuple[int, list[tuple[int, str | None]]]]:
    """The header in sheet row 1, meeting n in sheet row n + 1."""
    return [(1, list(enumerate(MEETING)))] + [(n + 1, list(enumerate(meeting(n)))) for n in range(1, ROWS + 1)]


def test_a_row_written_out_of_order_reads_in_sheet_order_in_pieces(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sheet row 401's element is written after row 31's, inside a piece of rows 29 to 36 (not its last row, so the
    next piece starts after that piece's last row element): read alone, that piece put meeting 400 before 31."""
    grid = meeting_rows()
    grid.insert(31, grid.pop(401))
    path = raw_sheet(tmp_path / "out-of-order.xlsx", grid_xml(grid))
    cut = list(pieces.pieces(str(path), 0, small_pieces))
    assert len(cut) > 10 and not any(piece.whole for piece in cut)
    table = read_export(path, "meeting_list")
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, ROWS + 1)]
    assert table.equals(read_whole(path, monkeypatch))


def test_a_cell_whose_reference_names_a_row_below_the_sheet_is_read_where_it_points_in_pieces(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row 21's only cell says it is A5000: a spreadsheet, and the whole read, put it in row 5000, after the last
    meeting; the piece holding row 21 must not put it before the next pieces' rows."""
    grid = meeting_rows()
    xml = grid_xml(grid)
    xml = re.sub(r'<row r="21">.*?</row>', '<row r="21"><c r="A5000" t="inlineStr"><is><t>far</t></is></c></row>', xml)
    path = raw_sheet(tmp_path / "far-cell.xlsx", xml)
    table = read_export(path, "meeting_list")
    expected = [str(n) for n in range(1, ROWS + 1) if n != 20] + ["far"]
    assert table.column("meeting_id").to_pylist() == expected
    assert table.equals(read_whole(path, monkeypatch))


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
@pytest.mark.parametrize("at", [50, ROWS - 50])
def test_two_row_elements_of_one_number_are_an_error_not_one_merged_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int, at: int
) -> None:
    """A second ``<row r="n">`` right after the first: the sheet reader lays both on one row (the later cells win);
    the table would lose a row without a word."""
    grid = meeting_rows()
    grid.insert(at + 1, (at + 1, list(enumerate(meeting(9999)))))
    path = raw_sheet(tmp_path / "twice.xlsx", grid_xml(grid))
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    with pytest.raises(FeishuVCTableError, match=rf"two row elements numbered {at + 1}\b"):
        read_export(path, "meeting_list")


def test_a_cell_laid_over_another_rows_cell_is_an_error_in_pieces_and_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row 21's only cell says it is A301, where meeting 300's ID is: one of the two values is lost."""
    xml = grid_xml(meeting_rows())
    xml = re.sub(r'<row r="21">.*?</row>', '<row r="21"><c r="A301" t="inlineStr"><is><t>over</t></is></c></row>', xml)
    path = raw_sheet(tmp_path / "over.xlsx", xml)
    for piece_bytes in (SMALL_PIECES, 2**40):
        monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
        with pytest.raises(FeishuVCTableError, match=r"names cell A301 twice"):
            read_export(path, "meeting_list")


def test_rows_without_a_number_read_the_same_in_pieces_as_whole(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every fifth row element has no ``r`` (nor its cells): it is the row after the one before. A piece that starts
    with one cannot tell where it sits: the sheet is read whole, never a piece laid over its neighbour."""
    xml = grid_xml(meeting_rows())
    cell_reference = re.compile(r' r="[A-Z]+\d+"')
    for number in range(5, ROWS + 2, 5):
        unnumbered = re.compile(rf'<row r="{number}">(.*?)</row>')
        xml = unnumbered.sub(lambda m: "<row>" + cell_reference.sub("", m[1]) + "</row>", xml)
    path = raw_sheet(tmp_path / "unnumbered.xlsx", xml)
    table = read_export(path, "meeting_list")
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, ROWS + 1)]
    assert table.equals(read_whole(path, monkeypatch))


def test_a_sheet_read_whole_after_its_pieces_names_cells_by_their_sheet_row(tmp_path: Path, small_pieces: int) -> None:
    """Two formatted blank rows above the header, a note in an unheaded column of a later piece (so the sheet is read
    whole after all), and a bad cell: the error names the cell's own row, not one counted from the sheet's first."""
    width = len(MEETING)
    grid = [(1, [(c, None) for c in range(width)]), (2, [(c, None) for c in range(width)])]
    grid += [(n + 2, cells) for n, cells in meeting_rows()]
    grid[500] = (grid[500][0], [*grid[500][1], (width + 1, "a late note")])
    grid[550] = (grid[550][0], [(c, "many" if c == 11 else text) for c, text in grid[550][1]])
    path = raw_sheet(tmp_path / "late-note.xlsx", grid_xml(grid))
    with pytest.raises(FeishuVCTableError, match=rf"sheet row {grid[550][0]} \(cell L{grid[550][0]}\): 'many'"):
        read_export(path, "meeting_list")


def test_a_header_row_written_after_the_data_is_found_in_pieces(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header's row element comes last in the sheet's XML, far from the first piece: a spreadsheet shows it in row
    1 all the same, and so does the table."""
    grid = meeting_rows()
    grid.append(grid.pop(0))
    path = raw_sheet(tmp_path / "header-last.xlsx", grid_xml(grid))
    table = read_export(path, "meeting_list")
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, ROWS + 1)]
    assert table.equals(read_whole(path, monkeypatch))


def formula_blank(number: int) -> str:
    """A row whose only cell is a formula with an empty text result (``=IF(...,"",...)``): the reader reads ''."""
    return f'<row r="{number}"><c r="B{number}" t="str"><f>IF(A1="","",A1)</f><v></v></c></row>'


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
def test_rows_of_empty_formula_results_and_formatted_blank_rows_are_not_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int
) -> None:
    """Rows counted in the XML and rows read agree on what holds a value: a formula's empty text result is a cell the
    reader reads (as ''), a formatted cell without a value is not; neither makes a row of the table."""
    xml = grid_xml(meeting_rows())
    for number in range(40, ROWS, 40):
        xml = re.sub(rf'<row r="{number}">.*?</row>', formula_blank(number), xml)
        xml = re.sub(
            rf'<row r="{number + 1}">.*?</row>', f'<row r="{number + 1}"><c r="C{number + 1}" s="1"/></row>', xml
        )
    path = raw_sheet(tmp_path / "formula-blanks.xlsx", xml)
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    table = read_export(path, "meeting_list")
    gone = {number - 1 for number in range(40, ROWS, 40)} | {number for number in range(40, ROWS, 40)}
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, ROWS + 1) if n not in gone]


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
@pytest.mark.parametrize(
    "above", ['<c r="A1" t="e"><v>#N/A</v></c>', formula_blank(1)[len('<row r="1">') : -len("</row>")]]
)
def test_cells_are_named_by_their_sheet_row_below_a_row_of_error_values_or_empty_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int, above: str
) -> None:
    """Row 1 holds only an error value (read as empty) or a formula's empty result: the reader's cells start there,
    not at the header in row 2, and a bad cell is named by its own sheet row all the same."""
    grid = [(n + 1, cells) for n, cells in meeting_rows()]
    grid[400] = (grid[400][0], [(c, "many" if c == 11 else text) for c, text in grid[400][1]])
    xml = grid_xml(grid).replace("<sheetData>", f'<sheetData><row r="1">{above}</row>')
    path = raw_sheet(tmp_path / "above.xlsx", xml)
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    with pytest.raises(FeishuVCTableError, match=rf"sheet row {grid[400][0]} \(cell L{grid[400][0]}\): 'many'"):
        read_export(path, "meeting_list")


def test_a_sheet_read_whole_with_comments_among_its_rows_is_read_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A comment that looks like a row (no known writer puts one there) is left out of what is counted, and the sheet
    reads as a spreadsheet shows it. Formatted blank rows make the reader's
    count differ from the row elements, so that the rows are counted by value."""
    xml = grid_xml(meeting_rows())
    xml = xml.replace('<row r="30">', '<!-- <row r="7"><c r="A7"><v>1</v></c></row> --><row r="30">')
    xml = re.sub(r'<row r="40">.*?</row>', '<row r="40"><c r="A40" s="1"/></row>', xml)
    path = raw_sheet(tmp_path / "comment.xlsx", xml)
    monkeypatch.setattr(pieces, "PIECE_BYTES", 2**40)
    table = read_export(path, "meeting_list")
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, ROWS + 1) if n != 39]


def test_a_workbook_with_two_parts_of_one_name_is_refused(tmp_path: Path) -> None:
    """Two sheet parts under one name: readers differ on which one counts (this one took the last, silently)."""
    path = raw_sheet(tmp_path / "twice.xlsx", grid_xml(meeting_rows()[:5]))
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(path, "a") as archive,
    ):
        archive.writestr("xl/worksheets/sheet1.xml", grid_xml(meeting_rows()[5:10]))
    with pytest.raises(FeishuVCTableError, match=r"two parts named xl/worksheets/sheet1\.xml"):
        read_export(path, "meeting_list")


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
@pytest.mark.parametrize("twice", [23, 300], ids=["same-piece", "later-piece"])
def test_two_row_elements_of_one_number_are_an_error_even_beside_a_cell_that_names_an_empty_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int, twice: int
) -> None:
    """A second ``<row r="n">`` (two rows laid on one: one row fewer read) and, in row 21, a cell naming A5000 (one
    row more read): a count of row elements against rows read saw as many of each, and the read lost meeting
    ``n - 1`` without a word (in pieces, a piece holding row 21 but not row n alone reads one row too many)."""
    grid = meeting_rows()
    grid.insert(twice, (twice, list(enumerate(meeting(9999)))))
    far = '<c r="A5000" t="inlineStr"><is><t>far</t></is></c></row>'
    xml = re.sub(r'(<row r="21">.*?)</row>', lambda m: m[1] + far, grid_xml(grid), count=1)
    path = raw_sheet(tmp_path / "twice-and-far.xlsx", xml)
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    with pytest.raises(FeishuVCTableError, match=rf"two row elements numbered {twice}\b|rows with a value, but"):
        read_export(path, "meeting_list")


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
def test_a_cell_laid_over_another_rows_cell_is_an_error_even_beside_a_cell_that_names_an_empty_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int
) -> None:
    """Row 21's only cell says it is A301 (row 21 is gone, and one of two values in A301), and row 25 holds a cell
    naming A5000 (a row more): the count of rows came out even, and the sheet read whole lost meeting 20."""
    xml = grid_xml(meeting_rows())
    xml = re.sub(r'<row r="21">.*?</row>', '<row r="21"><c r="A301" t="inlineStr"><is><t>over</t></is></c></row>', xml)
    far = '<c r="A5000" t="inlineStr"><is><t>far</t></is></c></row>'
    xml = re.sub(r'(<row r="25">.*?)</row>', lambda m: m[1] + far, xml, count=1)
    path = raw_sheet(tmp_path / "over-and-far.xlsx", xml)
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    with pytest.raises(FeishuVCTableError, match=r"cell A301 twice|rows with a value, but"):
        read_export(path, "meeting_list")


@pytest.mark.parametrize("reference", ["A5000", "a5000"])
def test_a_cell_naming_an_empty_row_beside_a_blank_row_reads_the_same_in_pieces_as_whole(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch, reference: str
) -> None:
    """Row 21 a formatted blank row, row 25 with one more cell naming A5000 (the sheet reader takes a lower-case
    reference as well): the cells are checked one by one, and the table holds what they name, in pieces and whole."""
    xml = grid_xml(meeting_rows())
    far = f'<c r="{reference}" t="inlineStr"><is><t>far</t></is></c></row>'
    xml = re.sub(r'(<row r="25">.*?)</row>', lambda m: m[1] + far, xml, count=1)
    xml = re.sub(r'<row r="21">.*?</row>', '<row r="21" s="1"/>', xml)
    path = raw_sheet(tmp_path / "blank-and-far.xlsx", xml)
    table = read_export(path, "meeting_list")
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, ROWS + 1) if n != 20] + ["far"]
    assert table.equals(read_whole(path, monkeypatch))


def test_row_elements_with_a_namespace_prefix_at_the_sheet_end_are_not_left_out_in_pieces(
    tmp_path: Path, small_pieces: int
) -> None:
    """The last rows written as ``<x:row>`` (the sheet reader reads prefixed elements; the cutter looks for
    ``<row``): the last piece held no row it knew, was left out, and the table lost meetings 594 to 600 without a
    word. Read whole, the count says the rows differ: in pieces too, the read is an error."""
    prefixed = 'xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    xml = grid_xml(meeting_rows()).replace("<worksheet ", f"<worksheet {prefixed} ", 1)
    for number in range(595, ROWS + 2):
        xml = re.sub(rf'<row r="{number}">(.*?)</row>', rf'<x:row r="{number}">\1</x:row>', xml)
    path = raw_sheet(tmp_path / "prefixed.xlsx", xml)
    cut = list(itertools.islice(pieces.pieces(str(path), 0, small_pieces), 10))
    assert len(cut) == 10 and not any(piece.whole for piece in cut)
    with pytest.raises(FeishuVCTableError, match=r"hold 594 rows with a value, but 601 were read"):
        read_export(path, "meeting_list")


def prefixed(xml: str) -> str:
    """``xml`` with every element of the main namespace written with the prefix ``x:`` (as the .NET Open XML SDK
    writes sheets)."""
    xml = xml.replace("<worksheet xmlns=", "<x:worksheet xmlns:x=").replace("</worksheet>", "</x:worksheet>")
    return re.sub(r"<(/?)(sheetData|row|c|is|t|v|dimension)\b", r"<\1x:\2", xml)


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
def test_a_sheet_of_prefixed_elements_is_counted_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int
) -> None:
    """Every element written ``<x:row>``, ``<x:c>``: the sheet reader reads it, the cutter reads it whole, and its
    rows were not counted at all, so two row elements of one number lost meeting 50 without a word. The same sheet
    without the second row element reads as the sheet without prefixes does."""
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    grid = meeting_rows()
    path = raw_sheet(tmp_path / "prefixed.xlsx", prefixed(grid_xml(grid)))
    assert read_export(path, "meeting_list").equals(
        read_export(raw_sheet(tmp_path / "plain.xlsx", grid_xml(grid)), "meeting_list")
    )
    grid.insert(51, (51, list(enumerate(meeting(9999)))))
    path = raw_sheet(tmp_path / "prefixed-twice.xlsx", prefixed(grid_xml(grid)))
    with pytest.raises(FeishuVCTableError, match=r"two row elements numbered 51\b"):
        read_export(path, "meeting_list")


LAST = 121  # the sheet rows of the generated sheets: the header and meetings 1 to 120 (about 15 small pieces)
hostile_edit = st.one_of(
    st.tuples(st.just("twice"), st.integers(2, LAST)),  # a second row element of that number, after the first
    st.tuples(st.just("blank"), st.integers(2, LAST)),  # the row's cells left without a value
    st.tuples(st.just("far"), st.integers(2, LAST), st.integers(2, LAST + 40)),  # one more cell, naming A<target>
    st.tuples(st.just("move"), st.integers(2, LAST), st.integers(2, LAST + 40)),  # the row's cells: one, A<target>
)


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(edits=st.lists(hostile_edit, min_size=1, max_size=4))
@example(edits=[("blank", 3), ("blank", 4), ("far", 2, 3)])  # row 3's value named from row 2: was refused
@example(edits=[("twice", 11), ("far", 2, 2), ("far", 2, 11)])
def test_rows_laid_on_one_or_named_elsewhere_read_as_the_cells_say_or_are_an_error(
    edits: list[tuple[Any, ...]],
) -> None:
    """Row elements of one number, blank rows, cells naming other rows, in any mix, in pieces and whole: two row
    elements of one number are an error; else the table holds exactly the rows the cells name, in order (a model of
    the sheet reader: a cell sits where its reference says), or, where two cells name one cell, the read may be an
    error. A count of rows alone can be evened out by a row named elsewhere."""
    rows = {n: list(enumerate(meeting(n - 1))) for n in range(2, LAST + 1)}
    extra: dict[int, list[int]] = {}  # cells added to a row element: the rows their references name
    seconds = set()
    for edit in edits:
        kind, number = edit[0], edit[1]
        if kind == "twice":
            seconds.add(number)
        elif kind == "blank":
            rows[number] = [(column, None) for column, _ in rows[number]]
            extra.pop(number, None)
        else:
            if kind == "move":
                rows[number] = []
            extra.setdefault(number, []).append(edit[2])
    elements = [(1, list(enumerate(MEETING)))]
    for number in range(2, LAST + 1):
        elements.append((number, rows[number]))
        if number in seconds:
            elements.append((number, list(enumerate(meeting(9000 + number)))))
    xml = grid_xml(elements)
    named: dict[tuple[int, int], str] = {}
    twice: set[tuple[int, int]] = set()

    def name(cell: tuple[int, int], text: str) -> None:
        if cell in named:
            twice.add(cell)
        named[cell] = text

    for number, cells in elements:
        for column, text in cells:
            if text is not None:
                name((number, column), text)
    for number, targets in extra.items():
        far = "".join(f'<c r="A{t}" t="inlineStr"><is><t>far {t}</t></is></c>' for t in targets)
        element = re.compile(rf'(<row r="{number}"[^>]*?)(?:/>|>(.*?)</row>)')
        xml = element.sub(lambda m, far=far: f"{m[1]}>{m[2] or ''}{far}</row>", xml, count=1)  # type: ignore[misc]
        for target in targets:
            name((target, 0), f"far {target}")
    sheet_rows = sorted({n for n, _ in named if n > 1})
    with tempfile.TemporaryDirectory() as folder:
        path = raw_sheet(Path(folder) / "hostile.xlsx", xml)
        for piece_bytes in (2048, 2**40):
            with patched(pieces, "PIECE_BYTES", piece_bytes):
                if seconds:
                    with pytest.raises(FeishuVCTableError, match=None if twice else "two row elements numbered"):
                        read_export(path, "meeting_list")
                    continue
                try:
                    ids = read_export(path, "meeting_list").column("meeting_id").to_pylist()
                except FeishuVCTableError:
                    assert twice, "only two cells naming one cell may make the read an error"
                    continue
                assert len(ids) == len(sheet_rows)
                for number, read in zip(sheet_rows, ids, strict=True):
                    if (number, 0) not in twice:
                        assert read == named.get((number, 0))


@contextlib.contextmanager
def patched(owner: object, name: str, value: object) -> Iterator[None]:
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
@pytest.mark.parametrize("markup", ["<!-- {} -->", "<?note {} ?>"], ids=["comment", "instruction"])
def test_a_comment_among_the_rows_hides_no_row_laid_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int, markup: str
) -> None:
    """A comment that looks like row 5000, a second ``<row r="51">`` and a cell naming A5000: the count of rows came
    out even, the check of numbers was left out for a sheet with comments among its rows, and the sheet read whole
    lost meeting 50. Comments and processing instructions are left out of what is counted, not a reason to count
    nothing."""
    grid = meeting_rows()
    grid.insert(51, (51, list(enumerate(meeting(9999)))))
    xml = grid_xml(grid)
    ghost = markup.format('<row r="5000"><c r="A5000"><v>1</v></c></row>')
    xml = xml.replace('<row r="30">', ghost + '<row r="30">', 1)
    far = '<c r="A5000" t="inlineStr"><is><t>far</t></is></c></row>'
    xml = re.sub(r'(<row r="25">.*?)</row>', lambda m: m[1] + far, xml, count=1)
    path = raw_sheet(tmp_path / "comment-twice.xlsx", xml)
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    with pytest.raises(FeishuVCTableError, match=r"two row elements numbered 51\b|rows with a value"):
        read_export(path, "meeting_list")


def test_a_comment_cut_in_two_by_a_piece_end_reads_the_sheet_whole(
    tmp_path: Path, small_pieces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long comment of row-like text among the rows: the pieces are cut at a ``</row>`` inside it, so no piece
    can leave it out alone; the sheet is read whole, its rows counted without the comment."""
    ghost = "<!-- " + '<row r="7"><c r="A7"><v>1</v></c></row>' * 600 + " -->"
    xml = grid_xml(meeting_rows()).replace('<row r="300">', ghost + '<row r="300">', 1)
    path = raw_sheet(tmp_path / "long-comment.xlsx", xml)
    table = read_export(path, "meeting_list")
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, ROWS + 1)]
    assert table.equals(read_whole(path, monkeypatch))


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
@pytest.mark.parametrize(
    ("cell", "named", "lost"),
    [("A22", "A21", "A21"), ("B22", "A22", "A22")],
    ids=["over-a-row-above", "twice-in-its-row"],
)
def test_a_cell_laid_over_another_cell_is_an_error_where_the_rows_count_out_even(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int, cell: str, named: str, lost: str
) -> None:
    """Row 22's cell ``cell`` says it is ``named``, a cell some row element already fills: no row is lost, invented
    or read where no row element is, so neither count saw it, and the read lost one value without a word (meeting
    20's ID, or meeting 21's)."""
    xml = grid_xml(meeting_rows()).replace(f'<c r="{cell}"', f'<c r="{named}"', 1)
    path = raw_sheet(tmp_path / "over-a-filled-cell.xlsx", xml)
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    with pytest.raises(FeishuVCTableError, match=rf"names cell {lost} twice"):
        read_export(path, "meeting_list")


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
@pytest.mark.parametrize(
    "written",
    ['<c r="A22" t="inlineStr"><v>21</v></c>', '<c r="A22" t="inlineStr"><is><t>21</t></is><v>5</v></c>'],
    ids=["v-for-is", "v-beside-is"],
)
def test_a_value_the_sheet_reader_does_not_read_is_an_error_that_names_its_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int, written: str
) -> None:
    """Meeting 21's ID written as an inline string holding a ``<v>``: the sheet reader reads no value from it (nor
    from one holding both ``<is>`` and ``<v>``), and the table had that meeting's ID null without a word."""
    xml = grid_xml(meeting_rows())
    xml = re.sub(r'<c r="A22" t="inlineStr"><is><t>21</t></is></c>', written, xml, count=1)
    assert written in xml
    path = raw_sheet(tmp_path / "inline-v.xlsx", xml)
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    with pytest.raises(
        FeishuVCTableError,
        match=r"sheet row 22 holds 17 cells with a value, but the sheet reader read 16: cell A22 is" + REFUSED_INLINE_V,
    ):
        read_export(path, "meeting_list")


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
@pytest.mark.parametrize("spelled", [r" r='\1'", r' r = "\1"', r" r =  '\1'"], ids=["single", "spaced", "both"])
def test_row_and_cell_numbers_in_single_quotes_or_spaced_out_are_read_as_the_sheet_reader_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int, spelled: str
) -> None:
    """XML allows ``r='5'`` and ``r = "5"``, and the sheet reader reads them: a correct sheet so written, with empty
    sheet rows 300 to 304, was refused (its rows' and cells' numbers were taken as missing, so the cells seemed to
    name rows 300 to 304 and the reader to have read them elsewhere)."""
    grid = [(number if number < 300 else number + 5, cells) for number, cells in meeting_rows()]
    xml = re.sub(r' r="([^"]*)"', spelled, grid_xml(grid))
    path = raw_sheet(tmp_path / "quoted.xlsx", xml)
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    table: Any = read_export(path, "meeting_list")
    assert table.column("meeting_id").to_pylist() == [str(n) for n in range(1, ROWS + 1)]


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
def test_a_row_number_too_long_to_hold_is_an_error_that_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int
) -> None:
    """A row element numbered with 20 digits (its cells named as usual): reading its number one by one overflowed,
    and the read failed with 'OverflowError: Python int too large to convert to C long'."""
    number = "9" * 20
    xml = grid_xml(meeting_rows()).replace('<row r="300">', f'<row spans="1:17" r="{number}">', 1)
    path = raw_sheet(tmp_path / "long-number.xlsx", xml)
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    with pytest.raises(FeishuVCTableError, match=rf"row element numbered {number}: a sheet has at most 1048576 rows"):
        read_export(path, "meeting_list")


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
@pytest.mark.parametrize(
    "opening",
    [
        '<sheetData xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">',
        '<x:sheetData xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main">',
    ],
    ids=["attribute", "prefix-declared-on-it"],
)
def test_rows_are_counted_when_the_sheet_data_element_has_attributes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int, opening: str
) -> None:
    """``<sheetData>`` carrying an attribute (a namespace declared on it, as XML allows): its rows were not found, so
    not counted at all, and two row elements of one number read as one row, meeting 50 lost without a word."""
    grid = meeting_rows()
    grid.insert(51, (51, list(enumerate(meeting(9999)))))
    xml = grid_xml(grid)
    if opening.startswith("<x:"):
        xml = prefixed(xml).replace("<x:sheetData>", opening)
    else:
        xml = xml.replace("<sheetData>", opening)
    assert opening in xml
    path = raw_sheet(tmp_path / "sheet-data-attribute.xlsx", xml)
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    with pytest.raises(FeishuVCTableError, match=r"two row elements numbered 51\b"):
        read_export(path, "meeting_list")


def test_a_piece_whose_first_row_reads_as_empty_names_that_row(tmp_path: Path, small_pieces: int) -> None:
    """A later piece's first row written wholly as inline strings with a ``<v>`` (the sheet reader reads none of its
    values): the error named sheet row 109, eight rows further, from comparing the rows read and the rows named from
    their first ones; it names the row, and the cell that was not read."""

    def unread(xml: str, number: int) -> str:
        return re.sub(rf'(<c r="[A-Z]+{number}" t="inlineStr")><is><t>([^<]*)</t></is>', r"\1><v>\2</v>", xml)

    xml = grid_xml(meeting_rows())
    for number in range(100, 400):  # a row that starts a piece once written so
        path = raw_sheet(tmp_path / "first-row-unread.xlsx", unread(xml, number))
        cut = pieces.pieces(str(path), 0, small_pieces)
        starts = [
            int(found.group(1))
            for piece in cut
            if piece.copy and piece.rows_at and (found := pieces.FIRST_ROW_NUMBER.match(piece.source, piece.rows_at[0]))
        ]
        if number in starts:
            break
    else:
        pytest.fail("no row starts a piece")
    with pytest.raises(
        FeishuVCTableError,
        match=rf"\(sheet row {number} differs: cell A{number} is an inline string .* <v>" + REFUSED_INLINE_V,
    ):
        read_export(path, "meeting_list")


@pytest.mark.parametrize("sheet", [0, "会议明细"], ids=["by-index", "by-name"])
def test_a_sheet_of_a_workbook_of_several_worksheets_is_counted_too(tmp_path: Path, sheet: int | str) -> None:
    """A meeting list with a notes sheet after it (XlsxWriter), meeting 9999's row element renumbered 51, the row of
    meeting 50: the sheet reader lays both on one row, and as the rows of a workbook of several worksheets were not
    counted, the read lost meeting 50 without a word."""
    import xlsxwriter

    written = tmp_path / "two-sheets.xlsx"
    with xlsxwriter.Workbook(str(written)) as book:
        meetings = book.add_worksheet("会议明细")
        meetings.write_row(0, 0, list(MEETING))
        for number in range(1, ROWS + 1):
            meetings.write_row(number, 0, meeting(number))
        meetings.write_row(ROWS + 5, 0, meeting(9999))
        book.add_worksheet("说明").write(0, 0, "notes")
    path = tmp_path / "two-sheets-renumbered.xlsx"
    last = ROWS + 6
    with zipfile.ZipFile(written) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = re.sub(rb'(<row r=")%d(")' % last, rb"\g<1>51\g<2>", data)
                data = re.sub(rb'(<c r="[A-Z]+)%d(")' % last, rb"\g<1>51\g<2>", data)
            target.writestr(info, data)
    assert read_export(written, "meeting_list", sheet=sheet).num_rows == ROWS + 1
    with pytest.raises(FeishuVCTableError, match=r"two row elements numbered 51\b"):
        read_export(path, "meeting_list", sheet=sheet)


@pytest.mark.parametrize("piece_bytes", [SMALL_PIECES, 2**40], ids=["pieces", "whole"])
def test_a_title_row_the_sheet_reader_reads_as_empty_is_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int
) -> None:
    """A title in sheet row 1 written as an inline string with a ``<v>``: the sheet reader reads no row there, and the
    error named the sheet's (or the first piece's) last row, compared from the first rows read and named."""
    grid = [(1, [(0, "会议明细")])] + [(number + 1, cells) for number, cells in meeting_rows()]
    xml = grid_xml(grid).replace("<is><t>会议明细</t></is>", "<v>会议明细</v>", 1)
    path = raw_sheet(tmp_path / "unread-title.xlsx", xml)
    monkeypatch.setattr(pieces, "PIECE_BYTES", piece_bytes)
    with pytest.raises(
        FeishuVCTableError, match=r"\(sheet row 1 differs: cell A1 is an inline string" + REFUSED_INLINE_V
    ):
        read_export(path, "meeting_list")
