"""The run-time row count: what a sheet's XML holds, counted apart from the sheet reader, so that a table that would
not hold exactly the sheet's rows, each value in its own column, is refused (``reader.TableBuilder.data_of``).

Each cut piece (:func:`counted`, in a thread of its own beside the piece's read) and each sheet read whole
(:func:`check_whole`) gets the numbers of its row elements and the count of its cell elements, from one vector pass
per byte offset (:func:`_elements`). Where the rows read differ, the slower exact counts here say whether the sheet
really holds rows without a value (:func:`valued_rows`) or a cell that names another row or cell
(:func:`cell_rows`). Stdlib and numpy only, imported when counting starts.
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from collections.abc import Iterator
from typing import IO, Any

from airflow_provider_feishu_vc.client.errors import FeishuVCTableError
from airflow_provider_feishu_vc.tables.pieces import (
    _NO_VALUE_CELL,
    DAMAGE,
    PREFIXED_SHEET_DATA,
    READ_BYTES,
    ROW,
    ROW_END,
    ROW_NUMBER,
    SHEET_DATA,
    SHEET_DATA_END,
    VALUELESS_ROW,
    Piece,
    WholeSheetNeeded,
    _unprefixed,
    sheet_part,
)


def counted(piece: Piece) -> Piece:
    """``piece`` with its row elements and cell elements counted and the rows' numbers checked (a cut piece; in a
    thread of its own while the piece is read, so that neither cutting the next piece nor handing this one on waits
    for it). A piece that is not cut, or a count left out (None), gives the piece as it is."""
    if piece.rows_at is None or not isinstance(piece.source, bytes):
        return piece
    found = _elements(piece.source, *piece.rows_at)
    if found is None:  # not counted
        return piece
    numbers, cells = found
    if _twice(numbers) is not None:  # a comment or CDATA may hold the second: count the rows without them
        numbers = _row_numbers(*own_rows(piece))
    return dataclasses.replace(numbered(piece, numbers), cells=cells)


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


#: ``<r``, ``ow`` and ``<c`` read as little-endian 16-bit words: a row element starts ``<r`` then ``ow``.
_ROW_OPENING, _ROW_OPENING_REST, _CELL_OPENING = (int.from_bytes(pair, "little") for pair in (b"<r", b"ow", b"<c"))
#: What follows ``<row`` in the row elements every known writer writes: the row number comes first.
_NUMBER_FIRST = b' r="'
_NUMBER_FIRST_WORD = int.from_bytes(_NUMBER_FIRST, "little")
#: The most digits a row number read a vector at a time may have (a sheet has at most 1,048,576 rows).
_NUMBER_DIGITS = 10
#: The rows a sheet may have, and the highest number a row element may carry and be counted (numpy's int64).
MAX_SHEET_ROWS = 1_048_576
_MOST_HELD = 2**62


def _elements(text: bytes, start: int, end: int, previous: int = 0) -> tuple[Any, int] | None:
    """The numbers of the row elements ``text[start:end]`` holds, in the order written, as a numpy array (a row
    without a number is the one before's plus one, ``previous`` before the first, as the sheet reader numbers it), and
    how many times it spells ``<c``: every cell element, and the rare ``<color>``, ``<charset>`` or ``<condense>`` of a
    rich-text value. So the cell count is never fewer than the cells read with a value, and as many only when each
    cell element was read as a cell of its own (a cell laid over another makes one fewer): it needs no second look.

    One vector pass per byte offset: ``text`` read as 16-bit words at both offsets, each word compared with ``<c``
    (counted) and with ``<r`` (kept where the next word is ``ow``: a row element). numpy compares words a vector at a
    time, whatever the cells hold; the numbers are read where ``r`` comes first, else one by one. (None: not counted,
    only where a benchmark leaves the count out.)"""
    import numpy as np

    cells, found = 0, []
    for shift in range(min(2, end - start)):
        words = np.frombuffer(text, "<u2", (end - start - shift) // 2, start + shift)
        cells += int(np.count_nonzero(words == _CELL_OPENING))
        opening = _few_true(words[:-1] == _ROW_OPENING)
        found.append(opening[words[opening + 1] == _ROW_OPENING_REST] * 2 + (start + shift))
    at = np.sort(np.concatenate(found)) if found else np.empty(0, np.int64)
    return _numbers_at(text, at, previous), cells


def _row_numbers(text: bytes, start: int, end: int, previous: int = 0) -> Any:
    """The numbers of the row elements ``text[start:end]`` holds (:func:`_elements`)."""
    found = _elements(text, start, end, previous)
    return None if found is None else found[0]


def _few_true(mask: Any) -> Any:
    """Where a numpy bool array with few True values holds them (``np.flatnonzero``, a third of its time): eight
    bools at a time as one 64-bit word, and the one byte set in each word that is not zero found by its exponent."""
    import numpy as np

    whole = len(mask) // 8 * 8
    octets = mask[:whole].view("<u8")
    held = np.flatnonzero(octets != 0)
    values = octets[held]
    one = (values & (values - np.uint64(1))) == 0
    _, exponent = np.frexp(values[one].astype(np.float64))  # byte k set: 2 ** (8k), whose exponent is 8k + 1
    found = [held[one] * 8 + (exponent - 1) // 8]
    several = held[~one]
    if several.size:  # two True values within eight bools
        candidates = (several[:, None] * 8 + np.arange(8)).ravel()
        found.append(candidates[mask[candidates]])
    found.append(np.flatnonzero(mask[whole:]) + whole)
    return np.sort(np.concatenate(found)) if several.size else np.concatenate(found)


def _numbers_at(text: bytes, at: Any, previous: int) -> Any:
    """The numbers of the row elements that start at ``at`` (sorted offsets of ``<row`` in ``text``): read a vector
    at a time where ``r="`` comes first, else one by one (:data:`ROW_NUMBER`)."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    if not at.size:
        return at.astype(np.int64)
    size = len(_NUMBER_FIRST) + _NUMBER_DIGITS + 1
    raw = np.frombuffer(text, np.uint8)
    if int(at[-1]) + len(b"<row") + size <= len(raw):
        window = sliding_window_view(raw, size)[at + len(b"<row")]
    else:  # near the end of ``text`` the window repeats its last byte: all digits (one by one), or the closing quote
        window = raw[np.minimum(at[:, None] + np.arange(4, 4 + size), len(raw) - 1)]
    digits = window[:, len(_NUMBER_FIRST) :] - np.uint8(ord("0"))  # any other byte wraps past 9
    length = np.argmin(digits <= 9, axis=1)  # digits before the first other byte (0 when all are digits: one by one)
    quick = (
        (np.ascontiguousarray(window[:, : len(_NUMBER_FIRST)]).view("<u4")[:, 0] == _NUMBER_FIRST_WORD)
        & (length > 0)
        & (window[np.arange(at.size), len(_NUMBER_FIRST) + length] == ord('"'))
    )
    numbers = np.zeros(at.size, np.int64)
    digit_counts = np.flatnonzero(np.bincount(length[quick]))
    for digit_count in digit_counts.tolist():  # one or two in a piece
        rows = slice(None) if len(digit_counts) == 1 and quick.all() else quick & (length == digit_count)
        row_digits = digits[rows, :digit_count].astype(np.int64)
        value = row_digits[:, 0]
        for place in range(1, digit_count):
            value = value * 10 + row_digits[:, place]
        numbers[rows] = value
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


def _twice(numbers: Any) -> int | None:
    """The lowest number that ``numbers`` (a numpy array) holds twice, or None."""
    import numpy as np

    if bool(np.all(numbers[1:] > numbers[:-1])):  # in order, as every known writer writes them: no sort
        return None
    ordered = np.sort(numbers)
    twice = np.flatnonzero(ordered[1:] == ordered[:-1])
    return int(ordered[twice[0]]) if twice.size else None


def _whole_sheet_rows(piece: Piece) -> Iterator[tuple[bytes, int, int]]:
    """:func:`_sheet_rows` of the sheet of a piece read whole (the file itself), whose rows were counted."""
    assert isinstance(piece.source, str), "a piece read whole"
    with zipfile.ZipFile(piece.source) as archive:
        part = sheet_part(archive, piece.sheet)
        assert part is not None, "a sheet whose rows were counted"
        with archive.open(part) as stream:
            yield from _sheet_rows(stream)


def valued_rows(piece: Piece) -> int:
    """How many rows of a piece hold a value, a cut piece's copy of the sheet's first such row left out (one pass of
    a regular expression over its sheet XML: for the pieces of a sheet with rows that hold none)."""
    if isinstance(piece.source, str):  # the sheet read whole, its rows counted (:func:`check_whole`)
        return sum(_valued_rows(text, start, end) for text, start, end in _whole_sheet_rows(piece))
    return _valued_rows(*own_rows(piece))


#: A cell element, and its reference (column letters, row number).
CELL = re.compile(rb"<c\b[^>]*?(?:/>|>.*?</c>)", re.DOTALL)
CELL_REFERENCE = re.compile(rb"""<c\b[^>]*?\sr\s*=\s*["']([A-Za-z]+)(\d+)["']""")  # a5 reads as A5
NO_VALUE_CELL = re.compile(_NO_VALUE_CELL)


@dataclasses.dataclass(frozen=True)
class NamedCells:
    """What the cells with a value of a piece name, one by one (a cut piece's copy of the sheet's first row with a
    value left out)."""

    #: The sheet rows they name (a numpy array, in order).
    rows: Any
    #: How many cells with a value each of those rows holds (a numpy array, in the same order).
    values: Any
    #: A cell two of them name (the sheet reader keeps one value), or None.
    twice: str | None
    #: Per sheet row, the first cell the sheet reader reads no value from though it holds one: an inline string
    #: (``t="inlineStr"``) that holds a ``<v>``.
    unread: dict[int, str]
    #: The sheet rows none of whose values the sheet reader reads (each such a cell): it reads no row there.
    unread_rows: Any


def cell_rows(piece: Piece) -> NamedCells:
    """What the cells of a piece name (:class:`NamedCells`): one regular-expression pass over every cell, for a piece
    where a cell names a row that has no row element, or fewer cells were read with a value than it has."""
    import numpy as np

    named = _NamedSoFar()
    if isinstance(piece.source, str):
        previous = 0
        for text, start, end in _whole_sheet_rows(piece):
            previous = named.add(text, start, end, previous)
    else:
        named.add(*own_rows(piece), 0)
    rows = sorted(named.values)
    return NamedCells(
        np.array(rows, np.int64),
        np.array([named.values[row] for row in rows], np.int64),
        named.twice,
        named.unread,
        np.array([row for row in rows if named.unread_values.get(row) == named.values[row]], np.int64),
    )


#: A cell whose value the sheet reader does not read: an inline string with a ``<v>`` (alone, or beside its ``<is>``).
UNREAD_CELL = re.compile(rb"""<c\b[^>]*?\st\s*=\s*["']inlineStr["'][^>]*>.*?<v\b""", re.DOTALL)


class _NamedSoFar:
    """The cells with a value named so far, row by row."""

    def __init__(self) -> None:
        #: Per sheet row, how many distinct cells with a value name it.
        self.values: dict[int, int] = {}
        self.seen: set[tuple[int, int]] = set()
        self.twice: str | None = None
        self.unread: dict[int, str] = {}
        #: Per sheet row, how many of its values the sheet reader does not read.
        self.unread_values: dict[int, int] = {}

    def add(self, text: bytes, start: int, end: int, previous: int) -> int:
        """Add the cells with a value of the rows in ``text[start:end]``; the number of the last row."""
        for row in ROW.finditer(text, start, end):
            element = row.group(0)
            written = ROW_NUMBER.match(element)
            previous = int(written.group(1)) if written else previous + 1
            column = -1
            for found in CELL.finditer(element):
                cell = found.group(0)
                reference = CELL_REFERENCE.match(cell)
                number = previous
                if reference is None:
                    column += 1
                else:
                    column = _column_index(reference.group(1))
                    number = int(reference.group(2))
                if NO_VALUE_CELL.fullmatch(cell):
                    continue
                name = f"{column_letters(column)}{number}"
                if (number, column) in self.seen:
                    self.twice = self.twice or name
                    continue
                self.seen.add((number, column))
                self.values[number] = self.values.get(number, 0) + 1
                if UNREAD_CELL.match(cell):
                    self.unread.setdefault(number, name)
                    self.unread_values[number] = self.unread_values.get(number, 0) + 1
        return previous


def _column_index(letters: bytes) -> int:
    """The 0-based column of spreadsheet letters: A -> 0, AA -> 26."""
    index = 0
    for letter in letters.upper():
        index = index * 26 + letter - ord("A") + 1
    return index - 1


def column_letters(position: int) -> str:
    """Spreadsheet letters of a 0-based column position: 0 -> A, 26 -> AA."""
    letters, number = "", position + 1
    while number:
        number, remainder = divmod(number - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _valued_rows(text: bytes, start: int, end: int) -> int:
    """How many rows of ``text[start:end]`` (whole rows) hold a value."""
    return text.count(b"<row", start, end) - len(VALUELESS_ROW.findall(text, start, end))


def check_whole(path: str, sheet: int | str) -> tuple[str | None, Any, int | None]:
    """For a sheet read whole, in one pass over the file: what is wrong with the first part whose bytes do not match
    their CRC-32 (None when every part does: calamine does not check, and a flipped bit in a compressed sheet can read
    as other rows), and the numbers of the sheet's row elements, as a cut piece's are read (None when its part is not
    known for sure: :func:`pieces.sheet_part`; see :func:`numbered`), and how many cell elements it holds."""
    rows: Any = None
    cells: int | None = None
    try:
        with zipfile.ZipFile(path) as archive:
            counted_part = sheet_part(archive, sheet)
            for part in archive.infolist():
                with archive.open(part) as stream:
                    if counted_part is not None and part.filename == counted_part.filename:
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
        found = _elements(text, start, end, previous)
        if found is None:  # not counted
            return None, None
        numbers, part_cells = found
        parts.append(numbers)
        cells += part_cells
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
