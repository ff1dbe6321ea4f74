"""An export's cells to a typed ``pyarrow.Table``: headers matched to the kind's column contract, every cell parsed
for its column's type, bad cells named, unknown columns kept (or refused).

This runs in the sheet reader's child process (``_sheet_process.py``): the cells never cross a process boundary as
text, and writing a Parquet or CSV file needs no table in the worker at all. Conversion works on chunks of rows,
so that a table can be written while the next chunk is parsed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError, FeishuVCTableError
from airflow_provider_feishu_vc.tables import counting, values
from airflow_provider_feishu_vc.tables.contract import (
    CONTRACT_VERSION,
    CONTRACTS,
    Column,
    ValueKind,
    header_index,
    header_key,
)
from airflow_provider_feishu_vc.tables.counting import column_letters
from airflow_provider_feishu_vc.tables.pieces import HEADER_SEARCH_ROWS, Piece, WholeSheetNeeded

log = logging.getLogger(__name__)
_header_index = functools.cache(header_index)

#: Feishu is a Chinese service: a time written without an offset (the quality list's) is read in this zone.
DEFAULT_TIMEZONE = "Asia/Shanghai"
SCHEMA_MODES = ("evolve", "freeze")
ARROW_TYPES = {
    ValueKind.TEXT: pa.string(),
    ValueKind.TIME: pa.timestamp("us", tz="UTC"),
    ValueKind.DURATION: pa.int64(),
    ValueKind.BOOL: pa.bool_(),
    ValueKind.COUNT: pa.int64(),
    ValueKind.FIGURE: pa.float64(),
}
DESCRIBED = {
    ValueKind.TIME: "a time such as 2022.07.21 11:01:40 (GMT+08:00)",
    ValueKind.DURATION: "a duration H:MM:SS",
    ValueKind.BOOL: "yes or no (是 / 否)",
    ValueKind.COUNT: "a whole number",
    ValueKind.FIGURE: "a number with the column's unit",
}
_TEXT = Column("text", ValueKind.TEXT, ())
#: The share of a header's filled cells that must name columns of the kind asked for.
MIN_HEADER_MATCH = 0.5


@dataclass(frozen=True)
class SheetColumn:
    """A column of the sheet: its position (0-based), header as written, name in the table, and its contract
    column (None: not in the contract, kept as text)."""

    position: int
    header: str
    name: str
    column: Column | None


def contract_of(export_type: str) -> tuple[Column, ...]:
    try:
        return CONTRACTS[export_type]
    except (KeyError, TypeError):
        raise FeishuVCConfigError("export_type", f"is {export_type!r}; allowed: {', '.join(CONTRACTS)}") from None


def check_options(export_type: str, timezone: str, schema: str) -> None:
    """Refuse bad arguments by name, before any file is touched."""
    contract_of(export_type)
    if schema not in SCHEMA_MODES:
        raise FeishuVCConfigError("schema", f"is {schema!r}; allowed: {', '.join(SCHEMA_MODES)}")
    try:
        pc.assume_timezone(pa.array([0], pa.timestamp("us")), timezone=timezone)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as error:
        raise FeishuVCConfigError("timezone", f"is {timezone!r}, not a time zone name such as Asia/Shanghai") from error


class TableBuilder:
    """Turns chunks of a sheet's data rows into typed tables of one schema: the contract's columns in its order (a
    column the file lacks all null), then the columns it does not know."""

    def __init__(self, cells: pa.Table, export_type: str, timezone: str, schema: str, first_row: int = 1) -> None:
        """``cells``: the sheet's first rows (a piece's, or all), from its first row with a value (sheet row
        ``first_row``); the header is found among the top :data:`HEADER_SEARCH_ROWS` of them."""
        if cells.num_rows == 0:
            raise FeishuVCTableError("source's sheet is empty: no header row")
        self.export_type, self.timezone = export_type, timezone
        self.warnings: list[str] = []
        top = _rows_as_text(cells.slice(0, HEADER_SEARCH_ROWS))
        at = self._find_header(top, first_row)
        #: Where the data starts in ``cells`` (the row after the header), and the header's sheet row.
        self.data_start, self.header_row = at + 1, first_row + at
        #: The sheet's first row with a value as read (a later piece's first row must be its copy).
        self.top_row = _trimmed(top[0])
        #: The last sheet row of the pieces read so far: a piece's rows are laid out by their numbers, and a row
        #: written out of order (or a cell naming another row) can stretch a piece past the next piece's first row.
        self.read_to = 0
        headers = top[at]
        if at:
            said = (" ".join(value for value in row if value and value.strip()) for row in top[:at])
            above = "; ".join(repr(text[:80]) for text in said if text)
            self.warnings.append(
                f"Sheet rows {first_row} to {self.header_row - 1} sit above the header (sheet row "
                f"{self.header_row}) of this {export_type} export: left out, not data: {above}"
            )
        self.layout = self._layout(headers, cells.slice(self.data_start), schema)
        found = {entry.column.field: entry for entry in self.layout if entry.column and entry.name == entry.column.name}
        #: Per output column: (its sheet column or None, the contract column that types it, its Arrow field).
        self.plan: list[tuple[SheetColumn | None, Column]] = [(found.get(c.field), c) for c in contract_of(export_type)]
        self.plan += [(entry, entry.column or _TEXT) for entry in self.layout if entry.name not in (
            c.name for c in contract_of(export_type))]  # fmt: skip
        fields = [
            pa.field(
                entry.name if entry else column.name,
                ARROW_TYPES[column.kind],
                metadata={"header": entry.header if entry else ""},
            )
            for entry, column in self.plan
        ]
        self.schema = pa.schema(
            fields, metadata={"feishu_vc.export_type": export_type, "feishu_vc.contract": CONTRACT_VERSION}
        )

    def _find_header(self, top: list[list[str | None]], first_row: int) -> int:
        """The index in ``top`` of the first row naming the most columns of the kind asked for; an error when none
        names any, or when it names too few (then the file is most likely another kind: the error says which)."""
        scores = [{kind: header_score(row, kind) for kind in CONTRACTS} for row in top]
        asked = [score[self.export_type] for score in scores]
        best = max(((max(s[kind] for s in scores), -order), kind) for order, kind in enumerate(CONTRACTS))
        likeliest = best[1] if best[0][0] > max(asked) else self.export_type
        looks = f": this looks like a {likeliest} export, not {self.export_type}"
        looks = "" if likeliest == self.export_type else looks
        if max(asked) == 0:
            raise FeishuVCTableError(
                f"source has no header row of a {self.export_type} export in its first {len(top)} rows (none names "
                f"a column of its contract){looks}"
            )
        at = asked.index(max(asked))
        filled = sum(1 for value in top[at] if value and value.strip())
        if looks or asked[at] < MIN_HEADER_MATCH * filled:
            raise FeishuVCTableError(
                f"source's header (sheet row {first_row + at}) names only {asked[at]} of its {filled} columns as "
                f"{self.export_type} columns{looks or ', too few to read it as one'}"
            )
        return at

    def _layout(self, headers: list[str | None], data: pa.Table, schema: str) -> list[SheetColumn]:
        index = header_index(self.export_type)
        taken: dict[str, int] = {}
        layout: list[SheetColumn] = []
        for position, header in enumerate(headers):
            text = (header or "").strip()
            column = index.get(header_key(text)) if text else None
            if column is None:
                if not text and not pc.any(pc.fill_null(values.present(data.column(position)), False)).as_py():
                    continue  # a column with neither a header nor data: nothing to keep
                if schema == "freeze":
                    raise FeishuVCTableError(
                        f"source has a column {self.export_type} does not know: {text!r} (sheet column "
                        f"{column_letters(position)}); schema='freeze' allows only the contract's columns"
                    )
                name = f"column_{position + 1}"
                self.warnings.append(
                    f"Column {column_letters(position)} ({text!r}) of this {self.export_type} export is not in the "
                    f"contract: kept as text, named {name}"
                )
                layout.append(SheetColumn(position, header or "", name, None))
                continue
            taken[column.field] = taken.get(column.field, 0) + 1
            name = column.name if taken[column.field] == 1 else f"{column.name}_{taken[column.field]}"
            if name != column.name:
                self.warnings.append(
                    f"Column {column_letters(position)} ({text!r}) names {column.field} again: kept as {name}"
                )
            layout.append(SheetColumn(position, header or "", name, column))
        return layout

    def chunks(
        self, cells: pa.Table, rows_per_chunk: int = 65_536, *, first_row: int = 1
    ) -> Iterator[tuple[pa.Table, int]]:
        """The data rows of the cells the builder was made from (``first_row``: the sheet row of their first row)
        in slices, each with the sheet row of its first row."""
        data = cells.slice(self.data_start)
        for start in range(0, max(data.num_rows, 1), rows_per_chunk):
            yield data.slice(start, rows_per_chunk), first_row + self.data_start + start

    def data_of(self, cells: pa.Table, piece: Piece) -> tuple[pa.Table, int]:
        """The data rows of one piece of the sheet (the first one this builder was made from, or a later one whose
        first row is a copy of the sheet's first row with a value), with the sheet row of the first. The piece must
        hold as many rows with a value as were counted in its XML while cutting, a later piece's copy must sit in the
        columns the first piece's row did, and below every row an earlier piece held."""
        if piece.copy:
            if piece.first_row < self.read_to:
                raise WholeSheetNeeded("a later piece's rows start above a row an earlier piece held")
            cells = self._aligned(cells)
            if self.has_data_outside(cells):
                raise WholeSheetNeeded("a later piece has data in a column the first did not")
        self.read_to = piece.first_row + cells.num_rows - 1
        if piece.twice is not None:  # the reader lays both on one row: the row count alone can miss it
            raise FeishuVCTableError(
                f"source's sheet has two row elements numbered {piece.twice}: the sheet reader lays them on one row, "
                "and the table would not hold exactly the sheet's rows"
            )
        read = rows_with_values(cells) - piece.copy
        counted = read
        if piece.rows is not None and read != piece.rows:  # rows without a value, or comments, or a row lost
            piece = counting.exactly(piece)
            counted = counting.valued_rows(piece)
        if piece.numbers is not None:
            read_at = valued_sheet_rows(cells, piece.first_row)[int(piece.copy) :]
            laid_over = piece.cells is not None and piece.cells != valued_cells(cells, piece.copy)
            if read != counted or laid_over or not _all_in(read_at, piece.numbers):  # a cell names another
                _check_cells(piece, read_at, valued_per_row(cells, piece.copy))
                counted = read
        if read != counted:
            raise FeishuVCTableError(
                f"source's sheet rows from {piece.first_row + piece.copy} hold {counted} rows with a value, but "
                f"{read} were read: the table would not hold exactly the sheet's rows"
            )
        skip = 1 if piece.copy else self.data_start
        return cells.slice(skip), piece.first_row + skip

    def _aligned(self, cells: pa.Table) -> pa.Table:
        """A later piece's cells in the first piece's columns: its first row (the copy of the sheet's first row
        with a value) tells where its cell range starts; a piece that starts k columns right of the first gets k
        empty columns in front."""
        copy = _trimmed(_rows_as_text(cells.slice(0, 1))[0]) if cells.num_rows else []
        shift = len(self.top_row) - len(copy)
        if shift < 0 or copy != self.top_row[shift:] or any(value is not None for value in self.top_row[:shift]):
            raise WholeSheetNeeded("a later piece does not start with the copy of the sheet's first row")
        if shift == 0:
            return cells
        blank = [pa.nulls(cells.num_rows, pa.string())] * shift
        return pa.Table.from_arrays([*blank, *cells.columns], names=[f"c{i}" for i in range(shift + cells.num_columns)])

    def has_data_outside(self, cells: pa.Table) -> bool:
        """Whether a later piece of the sheet (its first row a copy of the sheet's first row with a value) has data in
        a column this layout left out: one with neither a header nor data in the first piece."""
        kept = {entry.position for entry in self.layout}
        return any(
            pc.any(pc.fill_null(values.present(cells.column(position).slice(1)), False)).as_py()
            for position in range(cells.num_columns)
            if position not in kept
        )

    def convert(self, data: pa.Table, first_row: int) -> pa.Table:
        """One chunk of data rows, typed; ``first_row`` is the sheet row of its first row (for messages)."""
        data, positions = _without_blank_rows(data, first_row)
        arrays = []
        for entry, column in self.plan:
            if entry is None:
                arrays.append(pa.nulls(data.num_rows, ARROW_TYPES[column.kind]))
                continue
            raw = data.column(entry.position)
            arrays.append(self._parsed(column, entry, raw, positions, first_row))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _parsed(self, column: Column, entry: SheetColumn, raw: Any, positions: Any, first_row: int) -> Any:
        typed = values.parse(column, raw, self.timezone)
        bad = None if column.kind is ValueKind.TEXT else values.first_bad_cell(raw, typed)
        if bad is not None:
            row = (bad + first_row) if positions is None else int(positions[bad].as_py())
            cell = f"{column_letters(entry.position)}{row}"
            raise FeishuVCTableError(
                f"column {entry.name} (header {entry.header!r}), sheet row {row} (cell {cell}): {raw[bad].as_py()!r} "
                f"is not {DESCRIBED.get(column.kind, 'valid')}"
            )
        return typed


def header_score(row: list[str | None], kind: str) -> int:
    """How many distinct columns of ``kind``'s contract the cells of ``row`` name."""
    index = _header_index(kind)
    return len({column.field for value in row if value and (column := index.get(header_key(value)))})


def _all_in(read_at: Any, numbers: Any) -> bool:
    """Whether every row read with a value (``read_at``) is a row some row element is numbered (``numbers``)."""
    if len(read_at) == len(numbers) and np.array_equal(read_at, numbers):  # as every known writer writes them
        return True
    return bool(np.isin(read_at, numbers).all())


def _check_cells(piece: Piece, read_at: Any, read_values: Any) -> None:
    """Where the rows read differ from the row elements (a cell names another row, or a row was lost), or fewer cells
    were read with a value than the piece has cell elements: every cell of the piece, one by one; an error unless the
    rows read with a value (``read_at``, sheet rows) are the rows its cells name, no two naming one cell, and each
    row was read with as many values (``read_values``) as its cells hold."""
    named = counting.cell_rows(piece)
    if named.twice is not None:
        raise FeishuVCTableError(
            f"source's sheet names cell {named.twice} twice: the sheet reader keeps one of its values, and the table "
            "would not hold exactly the sheet's rows"
        )
    # compared from their first rows: a sheet read whole (or a first piece) whose first row element is not its first
    # row may start its cell range above piece.first_row; a later piece's rows sit below its copy, at piece.first_row
    rows = named.rows
    readable = rows[~np.isin(rows, named.unread_rows)]  # the rows it can read: aligned with those
    shift = 0 if piece.copy else int(readable[:1].sum() - read_at[:1].sum())
    if not np.array_equal(read_at + shift, rows):
        if np.array_equal(read_at + shift, readable):  # it read every row but those whose values it does not read
            differing = int(named.unread_rows[0])
        else:
            differing = int(np.setxor1d(read_at + shift, rows)[0])
        unread = named.unread.get(differing)
        raise FeishuVCTableError(
            f"source's sheet rows from {piece.first_row + piece.copy} hold {len(rows)} rows with a value, but "
            f"{len(read_at)} were read (sheet row {differing} differs"
            + _unread_cell(unread)
            + "): the table would not hold exactly the sheet's rows"
        )
    lost = np.flatnonzero(named.values > read_values)
    if lost.size:
        row = int(rows[lost[0]])
        unread = named.unread.get(row)
        raise FeishuVCTableError(
            f"source's sheet row {row} holds {int(named.values[lost[0]])} cells with a value, but the sheet reader "
            f"read {int(read_values[lost[0]])}"
            + _unread_cell(unread)
            + "; the table would not hold each of the sheet's values"
        )


def _unread_cell(reference: str | None) -> str:
    """What an error adds about a cell the sheet reader reads no value from though it holds one ('' for none)."""
    if reference is None:
        return ""
    return f': cell {reference} is an inline string (t="inlineStr") written with <v>, which it does not read'


def valued_per_row(cells: pa.Table, copy: bool) -> Any:
    """How many cells with a value each row of ``cells`` with a value holds (a numpy array, in order; the first row,
    a cut piece's copy, left out when ``copy``)."""
    rows = cells.slice(1) if copy else cells
    counts = np.zeros(rows.num_rows, np.int64)
    for column in rows.columns:
        counts += pc.is_valid(column).to_numpy(zero_copy_only=False)
    return counts[counts > 0]


def valued_sheet_rows(cells: pa.Table, first_row: int) -> Any:
    """The sheet rows (a numpy array, in order) of the rows of ``cells`` with a value, ``first_row`` the first's."""
    if cells.num_rows == 0 or any(column.null_count == 0 for column in cells.columns):
        return np.arange(first_row, first_row + cells.num_rows)
    valued: Any = None
    for column in cells.columns:
        valued = pc.is_valid(column) if valued is None else pc.or_(valued, pc.is_valid(column))
    return np.flatnonzero(valued.to_numpy(zero_copy_only=False)) + first_row


def valued_cells(cells: pa.Table, copy: bool) -> int:
    """How many cells of ``cells`` hold a value (the first row, a cut piece's copy, left out when ``copy``)."""
    rows = cells.slice(1) if copy else cells
    return sum(len(column) - column.null_count for column in rows.columns)


def rows_with_values(cells: pa.Table) -> int:
    """How many rows of ``cells`` have at least one cell with a value (the sheet reader leaves cells without one
    null)."""
    if cells.num_rows == 0 or any(column.null_count == 0 for column in cells.columns):
        return int(cells.num_rows)
    valued: Any = None
    for column in cells.columns:
        valued = pc.is_valid(column) if valued is None else pc.or_(valued, pc.is_valid(column))
    return int(pc.sum(valued).as_py() or 0)


def _rows_as_text(cells: pa.Table) -> list[list[str | None]]:
    columns = [column.to_pylist() for column in cells.columns]
    return [[None if value is None else str(value) for value in row] for row in zip(*columns, strict=True)]


def _trimmed(row: list[str | None]) -> list[str | None]:
    """``row`` without its trailing empty cells."""
    end = len(row)
    while end and row[end - 1] is None:
        end -= 1
    return row[:end]


def _without_blank_rows(data: pa.Table, first_row: int) -> tuple[pa.Table, Any]:
    """The data rows with at least one non-blank cell (spreadsheets often end with blank rows), and the sheet row
    number of each when some were dropped (None: row = index + ``first_row``)."""
    if data.num_rows == 0 or any(column.null_count == 0 and values.no_blank_text(column) for column in data.columns):
        return data, None  # some column is filled in every row: no row is blank
    keep: Any = None
    for column in data.columns:
        cell = pc.fill_null(values.present(column), False)
        keep = cell if keep is None else pc.or_(keep, cell)
    if pc.all(keep).as_py():
        return data, None
    return data.filter(keep), pc.add(pc.indices_nonzero(keep), first_row)


def typed_table(cells: pa.Table, export_type: str, timezone: str, schema: str) -> tuple[pa.Table, list[str]]:
    """All the cells as one typed table, and the warnings the columns gave."""
    builder = TableBuilder(cells, export_type, timezone, schema)
    chunks = [builder.convert(chunk, first) for chunk, first in builder.chunks(cells)]
    return pa.concat_tables(chunks), builder.warnings
