"""An export's cells to a typed ``pyarrow.Table``: headers matched to the kind's column contract, every cell parsed
for its column's type, bad cells named, unknown columns kept (or refused).

This runs in the sheet reader's child process (``_sheet_process.py``): the cells never cross a process boundary as
text, and writing a Parquet or CSV file needs no table in the worker at all. Conversion works on chunks of rows,
so that a table can be written while the next chunk is parsed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError, FeishuVCTableError
from airflow_provider_feishu_vc.tables import values
from airflow_provider_feishu_vc.tables.contract import (
    CONTRACT_VERSION,
    CONTRACTS,
    Column,
    ValueKind,
    header_index,
    header_key,
)

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class SheetColumn:
    """A column of the sheet: its position (0-based), header as written, name in the table, and its contract
    column (None: not in the contract, kept as text)."""

    position: int
    header: str
    name: str
    column: Column | None


def column_letters(position: int) -> str:
    """Spreadsheet letters of a 0-based column position: 0 -> A, 26 -> AA."""
    letters, number = "", position + 1
    while number:
        number, remainder = divmod(number - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


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

    def __init__(self, cells: pa.Table, export_type: str, timezone: str, schema: str) -> None:
        if cells.num_rows == 0:
            raise FeishuVCTableError("source's sheet is empty: no header row")
        self.export_type, self.timezone = export_type, timezone
        self.warnings: list[str] = []
        headers = [None if value is None else str(value) for value in cells.slice(0, 1).to_pylist()[0].values()]
        self.layout = self._layout(headers, cells.slice(1), schema)
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
        self, cells: pa.Table, rows_per_chunk: int = 65_536, *, first_row: int = 2
    ) -> Iterator[tuple[pa.Table, int]]:
        """The data rows (the first row of ``cells`` holds the headers; ``first_row`` is the sheet row of the next)
        in slices, each with the sheet row of its first row."""
        data = cells.slice(1)
        for start in range(0, max(data.num_rows, 1), rows_per_chunk):
            yield data.slice(start, rows_per_chunk), first_row + start

    def has_data_outside(self, cells: pa.Table) -> bool:
        """Whether a later piece of the sheet (its first row a copy of the headers) has data in a column this
        layout left out: one with neither a header nor data in the first piece."""
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
