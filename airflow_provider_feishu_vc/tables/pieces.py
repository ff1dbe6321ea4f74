"""A big sheet as small workbooks of consecutive rows, so that the sheet reader holds one piece's cells at a time.

calamine holds a whole sheet's cells at once: about 1.7 GB for a million-row meeting list. Here the sheet's XML is
inflated as a stream (its CRC-32 checked on the way, as every other part's) and cut at row ends into pieces of
about :data:`PIECE_BYTES`; each piece becomes a small stored (uncompressed) workbook with the original's other
parts. Every piece after the first starts with a copy of the sheet's first row with a value (the header, or a
title above it), renumbered to sit just above the piece's first row, so that the reader can check where the piece's
cell range starts: a piece whose copy is not where the first piece's row was is read shifted into place, or the
sheet read whole (``reader.TableBuilder.data_of``). Each piece's rows and cells are counted from its XML apart from
the sheet reader, while the piece is read (``counting.py``); a piece read with another count is an error, never a
table with rows lost, merged or invented.

A sheet is read whole (one piece: the file itself) when cutting it would gain nothing or could differ from reading
it whole: it is small, the workbook has more than one worksheet, the shared-strings table is large (every piece
would parse it again), or its rows do not carry the row numbers (``<row r="...">``) every known writer writes.
Stdlib and numpy only (no pyarrow): cutting runs beside the reading, in a thread of the sheet reader's helper process.
"""

from __future__ import annotations

import io
import posixpath
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
#: Where a sheet's rows start: ``<sheetData>``, with any attributes (a namespace declared on it), not ``<sheetData/>``.
SHEET_DATA = re.compile(rb"<sheetData\b[^>]*(?<!/)>")
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
    a known writer holds a value; where the rows read differ, :func:`counting.valued_rows` counts those that do."""

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
    #: that names another row, and the piece's cells are then checked one by one (:func:`counting.cell_rows`).
    numbers: Any = None
    #: How many cell elements the piece's rows hold, its copy left out (None: not counted; :func:`counting.counted`):
    #: fewer cells read with a value (a cell laid over another, or cells without one): checked one by one.
    cells: int | None = None


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


def sheet_part(archive: zipfile.ZipFile, sheet: int | str) -> zipfile.ZipInfo | None:
    """The worksheet part the sheet reader reads for ``sheet`` (its index or name): the only worksheet, or the one
    the workbook's sheet list and its relationships name, when every sheet listed is a worksheet (None when that
    cannot be told for sure: the rows are then not counted)."""
    only = _only_sheet(archive, sheet)
    if only is not None:
        return only
    try:
        listed = ElementTree.fromstring(archive.read("xl/workbook.xml"))
        related = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError):
        return None
    targets = {rel.get("Id"): rel.get("Target") for rel in related.iter() if _local(rel.tag) == "Relationship"}
    sheets = [
        (element.get("name"), targets.get(next((v for k, v in element.attrib.items() if _local(k) == "id"), None)))
        for element in listed.iter()
        if _local(element.tag) == "sheet"
    ]
    parts = [
        posixpath.normpath(target[1:] if target.startswith("/") else posixpath.join("xl", target))
        for _, target in sheets
        if target
    ]
    if len(parts) != len(sheets) or not all(re.fullmatch(r"xl/worksheets/[^/]+\.xml", part) for part in parts):
        return None
    names = [name for name, _ in sheets]
    index = sheet if isinstance(sheet, int) else names.index(sheet) if names.count(sheet) == 1 else -1
    if not 0 <= index < len(parts):
        return None
    try:
        return archive.getinfo(parts[index])
    except KeyError:
        return None


def _local(tag: str) -> str:
    """An XML name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def _first_valued_row(archive: zipfile.ZipFile, sheet: int | str) -> int:
    """The sheet row where the sheet reader's cell range starts (its first row with a value, or with an error value),
    found in the first :data:`HEAD_BYTES` of the sheet; 1 when it cannot be told (its part unknown, or no such
    row there)."""
    part = sheet_part(archive, sheet)
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


#: The rows of a sheet whose elements carry a prefix (``<x:sheetData>``, as the .NET Open XML SDK writes them).
PREFIXED_SHEET_DATA = re.compile(rb"<([A-Za-z_][\w.-]*):sheetData\b[^>]*(?<!/)>")


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
