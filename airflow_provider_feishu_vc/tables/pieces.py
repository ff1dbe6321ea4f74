"""A big sheet as small workbooks of consecutive rows, so that the sheet reader holds one piece's cells at a time.

calamine holds a whole sheet's cells at once: about 1.7 GB for a million-row meeting list. Here the sheet's XML is
inflated as a stream (its CRC-32 checked on the way, as every other part's) and cut at row ends into pieces of
about :data:`PIECE_BYTES`; each piece becomes a small stored (uncompressed) workbook with the original's other
parts. Every piece after the first starts with a copy of the sheet's first row with a value (the header, or a
title above it), renumbered to sit just above the piece's first row, so that the reader can check where the piece's
cell range starts: a piece whose copy is not where the first piece's row was is read shifted into place, or the
sheet read whole (``reader.TableBuilder.data_of``). Each piece's rows are counted from its XML apart from the sheet
reader, while the piece is read (:meth:`Piece.counted`: its row elements, one vector pass; when they differ from the
rows read, those holding a value, exactly); a piece read with another count is an error, never a table with
rows lost, merged or invented.

A sheet is read whole (one piece: the file itself) when cutting it would gain nothing or could differ from reading
it whole: it is small, the workbook has more than one worksheet, the shared-strings table is large (every piece
would parse it again), or its rows do not carry the row numbers (``<row r="...">``) every known writer writes.
Stdlib and numpy only (no pyarrow): cutting runs beside the reading, in a thread of the sheet reader's helper process.
"""

from __future__ import annotations

import dataclasses
import io
import re
import xml.etree.ElementTree as ElementTree
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from airflow_provider_feishu_vc.client.errors import FeishuVCTableError

Bytes = bytes | memoryview

#: About how much sheet XML a piece holds: some 4,000 rows of a meeting list. Small pieces keep memory flat and
#: both cores busy (measured on 100,000 and 1,000,000 rows: 1 MiB to 32 MiB, 4 MiB the fastest). A sheet of less
#: than two pieces is read whole.
PIECE_BYTES = 4 * 2**20
#: A shared-strings table every piece would parse again, up to this size uncompressed.
MAX_SHARED_STRINGS_BYTES = 16 * 2**20
#: How many rows from the sheet's first row with a value may hold the header: the first piece holds them all.
HEADER_SEARCH_ROWS = 10
READ_BYTES = 8 * 2**20
#: How far into the sheet its ``<sheetData>`` and first two rows must be found.
HEAD_BYTES = 4 * 2**20
SHEET_DATA = re.compile(rb"<sheetData\s*>")
DIMENSION = re.compile(rb"<dimension\b[^>]*/>")
ROW = re.compile(rb"<row\b[^>]*?(?:/>|>.*?</row>)", re.DOTALL)
#: A row element's number, as XML allows it: in either quote, space around the ``=`` (the sheet reader reads them all).
ROW_NUMBER = re.compile(rb"""<row\b[^>]*?\sr\s*=\s*["'](\d+)["']""")
#: The number of the row a piece starts with (whitespace may lead).
FIRST_ROW_NUMBER = re.compile(rb'\s*<row\b[^>]*?\sr="(\d+)"')
ROW_START = re.compile(rb"<row\b")
ROW_END = b"</row>"
_FORMULA = rb"(?:<f\b[^>]*?(?:/>|>[^<]*</f>))?"
#: A cell the sheet reader leaves out of its cell range: a styled blank cell, a formula without a cached value, an
#: empty ``<v>`` (but a formula's text or date result, ``t="str"`` / ``t="d"``, reads as '' even when empty).
_OUT_OF_RANGE_CELL = (
    rb"<c\b(?:[^>]*?/>|[^>]*>\s*" + _FORMULA + rb"\s*</c>"
    rb'|(?![^>]*?\bt="(?:str|d)")[^>]*>\s*' + _FORMULA + rb"\s*(?:<v\s*/>|<v></v>)\s*</c>)"
)
#: A cell without a value: out of the range, or holding an error value (``t="e"``: in the range, read as empty).
_NO_VALUE_CELL = (
    rb"(?:" + _OUT_OF_RANGE_CELL + rb'|<c\b[^>]*?\bt="e"[^>]*>\s*' + _FORMULA + rb"\s*(?:<v>[^<]*</v>|<v\s*/>)?\s*</c>)"
)
#: A row without a value, which the table leaves out: no cells, or only cells without a value.
VALUELESS_ROW = re.compile(rb"<row\b[^>]*?(?:/>|>(?:\s*" + _NO_VALUE_CELL + rb")*\s*</row>)")
#: A row outside the sheet reader's cell range (where its first row is): no cells, or only cells it leaves out.
OUT_OF_RANGE_ROW = re.compile(rb"<row\b[^>]*?(?:/>|>(?:\s*" + _OUT_OF_RANGE_CELL + rb")*\s*</row>)")
SHEET_DATA_END = b"</sheetData>"
TAIL = b"</sheetData></worksheet>"
#: What reading a damaged part raises.
DAMAGE = (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, zlib.error)


class WholeSheetNeeded(Exception):
    """A piece met something that reading it alone could get wrong: read the sheet whole instead."""


@dataclass(frozen=True)
class Piece:
    """A workbook to read: ``source`` (bytes of a piece, or the original file's path), the sheet to read in it, the
    sheet row of its first row with a value (the sheet's first such row, or its copy above a later piece's rows),
    and how many row elements the piece has, the copy left out (None: not counted). Every row of a sheet written by
    a known writer holds a value; where the rows read differ, :func:`valued_rows` counts those that do."""

    source: bytes | str
    sheet: int | str
    first_row: int
    whole: bool
    rows: int | None = None
    #: Whether the piece's first row is a copy of the sheet's first row with a value (every piece after the first).
    copy: bool = False
    #: Where in a cut piece's ``source`` its own rows' XML (the copy left out) starts and ends, to be counted.
    rows_at: tuple[int, int] | None = None
    #: A row number two of the piece's row elements carry (the sheet reader lays them on one row), or None.
    twice: int | None = None
    #: The numbers of the piece's row elements (a numpy array; None: not counted): a row read elsewhere holds a cell
    #: that names another row, and the piece's cells are then checked one by one (:func:`cell_rows`).
    numbers: Any = None
    #: How many cell elements the piece's rows hold, its copy left out (None: not counted; :func:`_cell_elements`):
    #: fewer cells read with a value (a cell laid over another, or cells without one): checked one by one.
    cells: int | None = None

    def counted(self) -> Piece:
        """The piece with its row elements counted and their numbers checked (a cut piece; in a thread of its own
        while the piece is read, so that neither cutting the next piece nor handing this one on waits for it)."""
        if self.rows_at is None or not isinstance(self.source, bytes):
            return self
        numbers = _row_numbers(self.source, *self.rows_at)
        if numbers is None:  # not counted
            return self
        counted = numbered(self, numbers if _twice(numbers) is None else _row_numbers(*own_rows(self)))
        return dataclasses.replace(counted, cells=_cell_elements(self.source, *self.rows_at))


def exactly(piece: Piece) -> Piece:
    """A counted cut piece with the numbers of its row elements read without comments, CDATA and processing
    instructions (:func:`own_rows`), where the quick count (which sees ``<row`` there too) could be off."""
    return piece if piece.rows is None or piece.rows_at is None else numbered(piece, _row_numbers(*own_rows(piece)))


def numbered(piece: Piece, numbers: Any) -> Piece:
    """``piece`` with the numbers of its row elements (a numpy array)."""
    return dataclasses.replace(piece, rows=len(numbers), twice=_twice(numbers), numbers=numbers)


def own_rows(piece: Piece) -> tuple[bytes, int, int]:
    """A cut piece's own rows' XML, its copy left out, as ``text[start:end]`` (comments, CDATA and processing
    instructions left out: :func:`_without_markup`); a ``WholeSheetNeeded`` for one cut in two by the piece's end."""
    assert isinstance(piece.source, bytes) and piece.rows_at is not None, "a cut piece"
    text, (start, end) = piece.source, piece.rows_at
    if not _has_markup(text, start, end):
        return text, start, end
    text = _without_markup(text[start:end])
    if MARKUP_START.search(text):
        raise WholeSheetNeeded("a comment, CDATA or processing instruction runs past a piece's end")
    return text, 0, len(text)


#: Comments, CDATA and processing instructions (no known writer puts any among a sheet's rows), and how each starts.
MARKUP = re.compile(rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>", re.DOTALL)
MARKUP_START = re.compile(rb"<!--|<!\[CDATA\[|<\?")


def _has_markup(text: bytes, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` holds ``<!`` or ``<?`` (found by their rare second byte: ``<`` is everywhere)."""
    for mark in b"!?":
        at = text.find(mark, start, end)
        while at >= 0:
            if at > start and text[at - 1] == ord("<"):
                return True
            at = text.find(mark, at + 1, end)
    return False


def _without_markup(text: bytes) -> bytes:
    """``text`` without its comments and processing instructions (text there could look like a row), and each CDATA
    section as one letter (text: a value, as the sheet reader reads it); one left open at the end stays."""
    return MARKUP.sub(lambda found: b"x" if found.group(0).startswith(b"<![") else b"", text)


def pieces(path: str, sheet: int | str, piece_bytes: int = PIECE_BYTES) -> Iterator[Piece]:
    """The pieces of ``sheet`` in order, or the whole file as one piece; a ``FeishuVCTableError`` for a part that
    does not inflate or whose bytes do not match their CRC-32."""
    try:
        yield from _pieces(path, sheet, piece_bytes)
    except DAMAGE as error:
        raise FeishuVCTableError(f"source is a damaged xlsx workbook: {error}") from None


def _pieces(path: str, sheet: int | str, piece_bytes: int) -> Iterator[Piece]:
    with zipfile.ZipFile(path) as archive:
        part = _cuttable_sheet(archive, sheet, piece_bytes)
        if part is None:
            yield Piece(path, sheet, _first_valued_row(archive, sheet), whole=True)
            return
        others = [(info, archive.read(info)) for info in archive.infolist() if info.filename != part.filename]
        with archive.open(part) as stream:
            cut = _Cutter(stream, piece_bytes)
            if not cut.start():
                yield Piece(path, sheet, _first_valued_row(archive, sheet), whole=True)
                return
            for first_row, rows in cut.pieces():
                workbook, rows_at = _workbook(others, part.filename, (cut.head, *rows, TAIL))
                del rows  # the rows' text is freed before the next piece is cut
                yield Piece(workbook, 0, first_row, whole=False, copy=first_row != cut.header_row, rows_at=rows_at)


def _cuttable_sheet(archive: zipfile.ZipFile, sheet: int | str, piece_bytes: int) -> zipfile.ZipInfo | None:
    part = _only_sheet(archive, sheet)
    if part is None or part.file_size < 2 * piece_bytes:
        return None
    shared = [i for i in archive.infolist() if i.filename.lower() == "xl/sharedstrings.xml"]
    if shared and shared[0].file_size > MAX_SHARED_STRINGS_BYTES:
        return None
    return part


def _only_sheet(archive: zipfile.ZipFile, sheet: int | str) -> zipfile.ZipInfo | None:
    """The worksheet part of a workbook of one worksheet, when it is the sheet asked for."""
    worksheets = [i for i in archive.infolist() if re.fullmatch(r"xl/worksheets/[^/]+\.xml", i.filename)]
    if len(worksheets) != 1:
        return None
    if sheet != 0 and sheet != _only_sheet_name(archive):
        return None  # the reader says what is wrong with the sheet asked for
    return worksheets[0]


def _first_valued_row(archive: zipfile.ZipFile, sheet: int | str) -> int:
    """The sheet row where the sheet reader's cell range starts (its first row with a value, or with an error value),
    found in the first :data:`HEAD_BYTES` of the sheet; 1 when it cannot be told (several worksheets, or no such row
    there)."""
    part = _only_sheet(archive, sheet)
    if part is None:
        return 1
    with archive.open(part) as stream:
        head = stream.read(HEAD_BYTES)
    named = None if SHEET_DATA.search(head) else PREFIXED_SHEET_DATA.search(head)
    head = _unprefixed(head, named.group(1) if named else b"")
    opened = SHEET_DATA.search(head)
    number = 0
    for match in ROW.finditer(head, opened.end() if opened else len(head)):
        row = match.group(0)
        written = ROW_NUMBER.match(row)
        number = int(written.group(1)) if written else number + 1
        if not OUT_OF_RANGE_ROW.fullmatch(row):
            return number
    return 1


def _only_sheet_name(archive: zipfile.ZipFile) -> str | None:
    try:
        root = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    except (KeyError, ElementTree.ParseError):
        return None
    names = [element.get("name") for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "sheet"]
    return names[0] if len(names) == 1 else None


class _Cutter:
    """Cuts the inflating sheet XML at row ends."""

    def __init__(self, stream: IO[bytes], piece_bytes: int) -> None:
        self.stream, self.piece_bytes = stream, piece_bytes
        self.head = b""
        self.header = b""
        self.header_row = 0
        #: The number of the last row cut so far (a piece's first row must come after it).
        self.last_row = 0
        self.rest = b""
        #: Where the first row with a value starts in ``rest``.
        self.header_at = 0

    def start(self) -> bool:
        """Read up to the row after the first row with a value: the head (without ``<dimension>``), that row and its
        number. False when the sheet does not look as expected (it is then read whole)."""
        buffer = b""
        while len(buffer) < HEAD_BYTES:
            block = self.stream.read(READ_BYTES)
            if not block:
                break
            buffer += block
            opened = SHEET_DATA.search(buffer)
            if opened is None:
                continue
            rows = list(_first_rows(buffer, opened.end()))
            if len(rows) < 2:
                continue
            (header, header_number), (_, data_number) = rows
            if header_number is None or data_number is None or data_number <= header_number:
                return False
            self.head = DIMENSION.sub(b"", buffer[: opened.end()])
            self.header, self.header_row, self.last_row = header, header_number, header_number
            self.header_at = buffer.index(header, opened.end()) - opened.end()
            self.rest = buffer[opened.end() :]
            return True
        return False

    def pieces(self) -> Iterator[tuple[int, tuple[Bytes, ...]]]:
        """(sheet row of the piece's first row with a value, the rows' XML in parts) for each piece; later pieces lead
        with a copy of the sheet's first row with a value."""
        blocks, size, wanted, ended = [self.rest], len(self.rest), self.piece_bytes, False
        first = True
        while True:
            while size < wanted and not ended:
                block = self.stream.read(READ_BYTES)
                blocks.append(block)
                size += len(block)
                ended = not block
            text = b"".join(blocks)
            view, offset = memoryview(text), 0
            while len(text) - offset >= self.piece_bytes:
                end = text.rfind(ROW_END, offset, offset + self.piece_bytes)
                if end < 0:  # a row longer than a piece: the piece ends with it
                    end = text.find(ROW_END, offset + self.piece_bytes)
                    if end < 0:
                        break
                end += len(ROW_END)
                if first:  # the first piece holds every row the header may be in
                    least = _after_rows(text, self.header_at, HEADER_SEARCH_ROWS)
                    if least is None:
                        break  # read on
                    end = max(end, least)
                yield from self._piece(text, view, offset, end, first)
                first, offset = False, end
            if ended:
                close = text.rfind(SHEET_DATA_END, offset)
                end = close if close >= 0 else len(text)
                yield from self._piece(text, view, offset, end, first)
                return
            blocks, size = [text[offset:]], len(text) - offset
            wanted = self.piece_bytes if size < self.piece_bytes else size + 1  # a long row: read on
            del view, text

    def _piece(
        self, text: bytes, view: memoryview, start: int, end: int, first: bool
    ) -> Iterator[tuple[int, tuple[Bytes, ...]]]:
        """``text[start:end]`` (``view`` is ``text``'s memoryview) as a piece."""
        rows = view[start:end]
        if first:
            yield self.header_row, (rows,)
        elif ROW_START.search(rows):
            yield self._with_header(rows)
        elif bytes(rows).strip():  # no ``<row``, yet more than space: rows the cutter does not know (``<x:row>``)
            raise WholeSheetNeeded("a piece holds no row element spelled <row")
        last = ROW_NUMBER.match(text, max(text.rfind(b"<row", start, end), 0))
        if last is not None:
            self.last_row = int(last.group(1))

    def _with_header(self, rows: memoryview) -> tuple[int, tuple[Bytes, ...]]:
        number = FIRST_ROW_NUMBER.match(rows[:4096])  # read alone, a first row without a number follows the copy
        if number is None or int(number.group(1)) <= self.last_row:
            raise WholeSheetNeeded("a piece's first row has no row number, or one not after the last piece's rows")
        above = int(number.group(1)) - 1
        renumbered = re.sub(rb'(<row\b[^>]*?\sr=")\d+(")', rb"\g<1>%d\g<2>" % above, self.header, count=1)
        renumbered = re.sub(rb'(<c\b[^>]*?\sr="[A-Z]+)\d+(")', rb"\g<1>%d\g<2>" % above, renumbered)
        return above, (renumbered, rows)


def _after_rows(text: bytes, start: int, count: int) -> int | None:
    """Where the ``count``-th row from ``start`` ends in ``text``, or None when it ends beyond."""
    end = start
    for _ in range(count):
        found = text.find(ROW_END, end)
        if found < 0:
            return None
        end = found + len(ROW_END)
    return end


#: ``<row`` read as one little-endian 32-bit word.
_ROW_WORD = int.from_bytes(b"<row", "little")
#: What follows ``<row`` in the row elements every known writer writes: the row number comes first.
_NUMBER_FIRST = b' r="'
#: The most digits a row number read a vector at a time may have (a sheet has at most 1,048,576 rows).
_NUMBER_DIGITS = 10


#: The rows a sheet may have, and the highest number a row element may carry and be counted (numpy's int64).
MAX_SHEET_ROWS = 1_048_576
_MOST_HELD = 2**62


def _row_numbers(text: bytes, start: int, end: int, previous: int = 0) -> Any:
    """The numbers of the row elements ``text[start:end]`` holds, in the order written, as a numpy array (a row
    without a number is the one before's plus one, ``previous`` before the first, as the sheet reader numbers it).

    The elements are the places where ``text`` spells ``<row``, found as 32-bit words at each of the four byte offsets
    (numpy compares words a vector at a time: a third of ``bytes.count``'s time, the same whatever the cells hold);
    their numbers are read a vector at a time where ``r`` comes first, else one by one."""
    import numpy as np

    found = [
        np.flatnonzero(np.frombuffer(text, "<u4", (end - start - shift) // 4, start + shift) == _ROW_WORD) * 4
        + (start + shift)
        for shift in range(min(4, end - start))
    ]
    at = np.sort(np.concatenate(found)) if found else np.empty(0, np.int64)
    if not at.size:
        return at
    tail = len(_NUMBER_FIRST) + _NUMBER_DIGITS + 1
    window = np.frombuffer(text, np.uint8)[np.minimum(at[:, None] + np.arange(4, 4 + tail), len(text) - 1)]
    digits = window[:, len(_NUMBER_FIRST) :].astype(np.int64) - ord("0")
    is_digit = (digits >= 0) & (digits <= 9)
    length = np.argmin(is_digit, axis=1)  # digits before the first other byte (0 when all are digits: one by one)
    quick = (
        (window[:, : len(_NUMBER_FIRST)] == np.frombuffer(_NUMBER_FIRST, np.uint8)).all(axis=1)
        & (length > 0)
        & (digits[np.arange(at.size), length] == ord('"') - ord("0"))
    )  # near the end of ``text`` the window repeats its last byte: all digits (one by one), or the closing quote
    numbers = np.zeros(at.size, np.int64)
    for place in range(_NUMBER_DIGITS):
        numbers = np.where(place < length, numbers * 10 + digits[:, place], numbers)
    for index in np.flatnonzero(~quick).tolist():
        written = ROW_NUMBER.match(text, int(at[index]))
        before = int(numbers[index - 1]) if index else previous
        number = int(written.group(1)) if written else before + 1
        if number > _MOST_HELD:
            raise FeishuVCTableError(
                f"source's sheet has a row element numbered {number}: a sheet has at most {MAX_SHEET_ROWS} rows"
            )
        numbers[index] = number
    return numbers


#: ``<c`` read as one little-endian 16-bit word.
_CELL_WORD = int.from_bytes(b"<c", "little")


def _cell_elements(text: bytes, start: int, end: int) -> int:
    """How many times ``text[start:end]`` spells ``<c``, found as 16-bit words at both byte offsets (numpy, as
    :func:`_row_numbers` finds ``<row``): every cell element, and the rare ``<color>``, ``<charset>`` or ``<condense>``
    of a rich-text value. Never fewer than the cells read with a value, and as many only when each cell element was
    read as a cell of its own (a cell laid over another makes one fewer), so the count needs no second look."""
    import numpy as np

    return sum(
        int(np.count_nonzero(np.frombuffer(text, "<u2", (end - start - shift) // 2, start + shift) == _CELL_WORD))
        for shift in range(min(2, end - start))
    )


def _twice(numbers: Any) -> int | None:
    """The lowest number that ``numbers`` (a numpy array) holds twice, or None."""
    import numpy as np

    if bool(np.all(numbers[1:] > numbers[:-1])):  # in order, as every known writer writes them: no sort
        return None
    ordered = np.sort(numbers)
    twice = np.flatnonzero(ordered[1:] == ordered[:-1])
    return int(ordered[twice[0]]) if twice.size else None


def valued_rows(piece: Piece) -> int:
    """How many rows of a piece hold a value, a cut piece's copy of the sheet's first such row left out (one pass of
    a regular expression over its sheet XML: for the pieces of a sheet with rows that hold none)."""
    if isinstance(piece.source, str):  # the sheet read whole, its rows counted (:func:`check_whole`)
        with zipfile.ZipFile(piece.source) as archive:
            part = _only_sheet(archive, piece.sheet)
            assert part is not None, "a sheet whose rows were counted"
            with archive.open(part) as stream:
                return sum(_valued_rows(text, start, end) for text, start, end in _sheet_rows(stream))
    return _valued_rows(*own_rows(piece))


#: A cell element, and its reference (column letters, row number).
CELL = re.compile(rb"<c\b[^>]*?(?:/>|>.*?</c>)", re.DOTALL)
CELL_REFERENCE = re.compile(rb"""<c\b[^>]*?\sr\s*=\s*["']([A-Za-z]+)(\d+)["']""")  # a5 reads as A5
NO_VALUE_CELL = re.compile(_NO_VALUE_CELL)


def cell_rows(piece: Piece) -> tuple[Any, str | None]:
    """The sheet rows the cells of a piece with a value name (a numpy array, in order; a cut piece's copy of the
    sheet's first row with a value left out), and a cell two of them name (the sheet reader keeps one value), or None:
    one regular-expression pass over every cell, for a piece where a cell names a row that has no row element."""
    import numpy as np

    named: set[int] = set()
    seen: set[tuple[int, int]] = set()
    twice: list[str] = []
    if isinstance(piece.source, str):
        with zipfile.ZipFile(piece.source) as archive:
            part = _only_sheet(archive, piece.sheet)
            assert part is not None, "a sheet whose rows were counted"
            with archive.open(part) as stream:
                previous = 0
                for text, start, end in _sheet_rows(stream):
                    previous = _name_cells(text, start, end, previous, named, seen, twice)
    else:
        _name_cells(*own_rows(piece), 0, named, seen, twice)
    return np.array(sorted(named), np.int64), (twice[0] if twice else None)


def _name_cells(
    text: bytes, start: int, end: int, previous: int, named: set[int], seen: set[tuple[int, int]], twice: list[str]
) -> int:
    """Add the sheet rows that the cells with a value of the rows in ``text[start:end]`` name to ``named``, and
    each cell named twice to ``twice`` (in ``seen``: the cells named so far); the number of the last row."""
    for row in ROW.finditer(text, start, end):
        element = row.group(0)
        written = ROW_NUMBER.match(element)
        previous = int(written.group(1)) if written else previous + 1
        column = -1
        for cell in CELL.finditer(element):
            reference = CELL_REFERENCE.match(cell.group(0))
            number = previous
            if reference is None:
                column += 1
            else:
                column = _column_index(reference.group(1))
                number = int(reference.group(2))
            if NO_VALUE_CELL.fullmatch(cell.group(0)):
                continue
            if (number, column) in seen and not twice:
                twice.append(f"{reference.group(1).decode().upper() if reference else column + 1}{number}")
            seen.add((number, column))
            named.add(number)
    return previous


def _column_index(letters: bytes) -> int:
    """The 0-based column of spreadsheet letters: A -> 0, AA -> 26."""
    index = 0
    for letter in letters.upper():
        index = index * 26 + letter - ord("A") + 1
    return index - 1


def _valued_rows(text: bytes, start: int, end: int) -> int:
    """How many rows of ``text[start:end]`` (whole rows) hold a value."""
    return text.count(b"<row", start, end) - len(VALUELESS_ROW.findall(text, start, end))


def _first_rows(buffer: bytes, start: int) -> Iterator[tuple[bytes, int | None]]:
    """The first row with a value and the row after it, each with its number (None when unnumbered, or when the sheet
    reader's cell range starts above the first row with a value: at a row of error values, which read as empty)."""
    found = 0
    for match in ROW.finditer(buffer, start):
        row = match.group(0)
        if found == 0 and VALUELESS_ROW.fullmatch(row):
            if OUT_OF_RANGE_ROW.fullmatch(row):
                continue
            yield row, None  # such a row cannot be the copy that shows where a piece's cells start
            found += 1
            continue
        number = ROW_NUMBER.match(row)
        yield row, (int(number.group(1)) if number else None)
        found += 1
        if found == 2:
            return


def whole(path: str, sheet: int | str) -> Piece:
    """The sheet read whole: the file itself as its only piece."""
    try:
        with zipfile.ZipFile(path) as archive:
            return Piece(path, sheet, _first_valued_row(archive, sheet), whole=True)
    except DAMAGE as error:
        raise FeishuVCTableError(f"source is a damaged xlsx workbook: {error}") from None


def check_whole(path: str, sheet: int | str) -> tuple[str | None, Any, int | None]:
    """For a sheet read whole, in one pass over the file: what is wrong with the first part whose bytes do not match
    their CRC-32 (None when every part does: calamine does not check, and a flipped bit in a compressed sheet can read
    as other rows), and the numbers of the sheet's row elements, as a cut piece's are read (None when it cannot be
    told here: a workbook of several worksheets; see :func:`numbered`), and how many cell elements it holds."""
    rows: Any = None
    cells: int | None = None
    try:
        with zipfile.ZipFile(path) as archive:
            sheet_part = _only_sheet(archive, sheet)
            for part in archive.infolist():
                with archive.open(part) as stream:
                    if sheet_part is not None and part.filename == sheet_part.filename:
                        rows, cells = _row_elements_of(stream)
                    while stream.read(READ_BYTES):
                        pass
    except DAMAGE as error:
        return str(error), None, None
    return None, rows, cells


def _row_elements_of(stream: IO[bytes]) -> tuple[Any, int | None]:
    """The numbers of the row elements in the sheet XML read from ``stream`` (a numpy array) and how many cell
    elements they hold (None, None when it has no ``<sheetData>``)."""
    import numpy as np

    parts, previous, cells = [], 0, 0
    for text, start, end in _sheet_rows(stream):
        numbers = _row_numbers(text, start, end, previous)
        if numbers is None:  # not counted
            return None, None
        parts.append(numbers)
        cells += _cell_elements(text, start, end)
        previous = int(numbers[-1]) if len(numbers) else previous
    return (np.concatenate(parts), cells) if parts else (None, None)


def _sheet_rows(stream: IO[bytes]) -> Iterator[tuple[bytes, int, int]]:
    """What the ``<sheetData>`` of the sheet XML read from ``stream`` holds, in parts ``text[start:end]`` that end at
    a row's end (or at the end of the rows); a sheet whose elements carry a prefix (``<x:row>``) with it left out."""
    text, start, prefix = b"", -1, b""
    while block := stream.read(READ_BYTES):
        text = _unprefixed(text + block if text else block, prefix)
        if start < 0:
            found = SHEET_DATA.search(text)
            if found is None and (named := PREFIXED_SHEET_DATA.search(text)) is not None:
                prefix = named.group(1)
                text = _unprefixed(text, prefix)
                found = SHEET_DATA.search(text)
            if found is None:
                continue
            start = found.end()
        limit = len(text)
        if _has_markup(text, start, limit):
            text = text[:start] + _without_markup(text[start:])
            left_open = MARKUP_START.search(text, start)
            limit = left_open.start() if left_open else len(text)
        end = text.rfind(ROW_END, start, limit)
        end = start if end < 0 else end + len(ROW_END)
        close = text.find(SHEET_DATA_END, end, limit)
        if close >= 0:
            yield text, start, close
            return
        if end > start:
            yield text, start, end
            text, start = text[end:], 0
    if start >= 0:
        yield text, start, len(text)


#: The rows of a sheet whose elements carry a prefix (``<x:sheetData>``, as the .NET Open XML SDK writes them).
PREFIXED_SHEET_DATA = re.compile(rb"<([A-Za-z_][\w.-]*):sheetData\s*>")


def _unprefixed(text: bytes, prefix: bytes) -> bytes:
    """``text`` with ``prefix`` left out of its tags (the sheet reader reads such elements as it reads the others)."""
    return text.replace(b"<" + prefix + b":", b"<").replace(b"</" + prefix + b":", b"</") if prefix else text


def _workbook(
    others: list[tuple[zipfile.ZipInfo, bytes]], sheet_name: str, sheet_xml: tuple[Bytes, ...]
) -> tuple[bytes, tuple[int, int]]:
    """A stored workbook of ``others`` and the sheet written from ``sheet_xml`` (head, [copy,] rows, tail), and where
    in it the rows lie (stored entries are written through to ``out`` as they are)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as piece:
        for info, content in others:
            piece.writestr(info.filename, content)
        with piece.open(sheet_name, "w", force_zip64=True) as sheet:
            *before, rows, tail = sheet_xml
            for part in before:
                sheet.write(part)
            start = out.tell()
            sheet.write(rows)
            rows_at = (start, out.tell())
            sheet.write(tail)
    return out.getvalue(), rows_at
