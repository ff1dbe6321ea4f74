"""An export file to a typed ``pyarrow.Table``: headers matched to the kind's column contract, every cell parsed for
its column's type, bad cells named, unknown columns kept (or refused)."""

from __future__ import annotations

import logging
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
from airflow_provider_feishu_vc.tables.workbook import DEFAULT_MEMORY_LIMIT, DEFAULT_READ_TIMEOUT, workbook_cells

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


@dataclass(frozen=True)
class SheetColumn:
    """A column of the sheet: its position (0-based), header as written, and what it became."""

    position: int
    header: str
    name: str
    column: Column | None  # None: not in the contract, kept as text


def column_letters(position: int) -> str:
    """Spreadsheet letters of a 0-based column position: 0 -> A, 26 -> AA."""
    letters, number = "", position + 1
    while number:
        number, remainder = divmod(number - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def read_export(
    source: Any,
    export_type: str,
    *,
    timezone: str = DEFAULT_TIMEZONE,
    schema: str = "evolve",
    sheet: int | str = 0,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    timeout: float = DEFAULT_READ_TIMEOUT,
) -> pa.Table:
    """Read an export file as a typed table (see :mod:`airflow_provider_feishu_vc.tables`)."""
    contract = _contract(export_type)
    if schema not in SCHEMA_MODES:
        raise FeishuVCConfigError("schema", f"is {schema!r}; allowed: {', '.join(SCHEMA_MODES)}")
    _check_timezone(timezone)
    with workbook_cells(source, sheet, memory_limit=memory_limit, timeout=timeout) as cells:
        return _typed(cells, export_type, contract, timezone, schema)


def _contract(export_type: str) -> tuple[Column, ...]:
    try:
        return CONTRACTS[export_type]
    except (KeyError, TypeError):
        raise FeishuVCConfigError("export_type", f"is {export_type!r}; allowed: {', '.join(CONTRACTS)}") from None


def _check_timezone(timezone: str) -> None:
    try:
        pc.assume_timezone(pa.array([0], pa.timestamp("us")), timezone=timezone)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as error:
        raise FeishuVCConfigError("timezone", f"is {timezone!r}, not a time zone name such as Asia/Shanghai") from error


def _typed(cells: pa.Table, export_type: str, contract: tuple[Column, ...], timezone: str, schema: str) -> pa.Table:
    if cells.num_rows == 0:
        raise FeishuVCTableError("source's sheet is empty: no header row")
    headers = [None if value is None else str(value) for value in cells.slice(0, 1).to_pylist()[0].values()]
    data, positions = _without_blank_rows(cells.slice(1))
    layout = _layout(headers, data, export_type, schema)
    fields, arrays = [], []
    found = {entry.column.field: entry for entry in layout if entry.column and entry.name == entry.column.name}
    for column in contract:
        entry = found.get(column.field)
        if entry is None:  # a column this file does not have: null, so that the kind keeps one schema
            arrays.append(pa.nulls(data.num_rows, ARROW_TYPES[column.kind]))
            fields.append(_field(column.name, ARROW_TYPES[column.kind], header=""))
            continue
        arrays.append(_parsed(column, entry, data.column(entry.position), positions, timezone))
        fields.append(_field(column.name, ARROW_TYPES[column.kind], header=entry.header))
    for entry in layout:
        if entry.column is None or entry.name != entry.column.name:  # unknown, or a second column of one field
            raw = data.column(entry.position)
            if entry.column is not None:
                arrays.append(_parsed(entry.column, entry, raw, positions, timezone))
                fields.append(_field(entry.name, ARROW_TYPES[entry.column.kind], header=entry.header))
            else:
                arrays.append(values.parse(_TEXT, raw, timezone))
                fields.append(_field(entry.name, pa.string(), header=entry.header))
    metadata = {"feishu_vc.export_type": export_type, "feishu_vc.contract": CONTRACT_VERSION}
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


_TEXT = Column("text", ValueKind.TEXT, ())


def _field(name: str, type_: pa.DataType, *, header: str) -> pa.Field:
    return pa.field(name, type_, nullable=True, metadata={"header": header})


def _without_blank_rows(data: pa.Table) -> tuple[pa.Table, Any]:
    """The data rows with at least one non-blank cell (spreadsheets often end with blank rows), and the sheet row
    number (1-based) of each when some were dropped (None: row = index + 2)."""
    keep: Any = None
    for column in data.columns:
        cell = pc.fill_null(values.present(column), False)
        keep = cell if keep is None else pc.or_(keep, cell)
    if keep is None or pc.all(keep).as_py():
        return data, None
    return data.filter(keep), pc.add(pc.indices_nonzero(keep), 2)


def _layout(headers: list[str | None], data: pa.Table, export_type: str, schema: str) -> list[SheetColumn]:
    index = header_index(export_type)
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
                    f"source has a column {export_type} does not know: {text!r} (sheet column "
                    f"{column_letters(position)}); schema='freeze' allows only the contract's columns"
                )
            name = f"column_{position + 1}"
            log.warning(
                "Column %s (%r) of this %s export is not in the contract: kept as text, named %s",
                column_letters(position), text, export_type, name,
            )  # fmt: skip
            layout.append(SheetColumn(position, header or "", name, None))
            continue
        taken[column.field] = taken.get(column.field, 0) + 1
        name = column.name if taken[column.field] == 1 else f"{column.name}_{taken[column.field]}"
        if name != column.name:
            log.warning("Column %s (%r) names %s again: kept as %s", column_letters(position), text, column.field, name)
        layout.append(SheetColumn(position, header or "", name, column))
    return layout


def _parsed(column: Column, entry: SheetColumn, raw: Any, positions: Any, timezone: str) -> Any:
    typed = values.parse(column, raw, timezone)
    bad = values.first_bad_cell(raw, typed)
    if bad is not None:
        row = (bad + 2) if positions is None else int(positions[bad].as_py())
        cell = f"{column_letters(entry.position)}{row}"
        raise FeishuVCTableError(
            f"column {entry.name} (header {entry.header!r}), sheet row {row} (cell {cell}): {raw[bad].as_py()!r} is "
            f"not {DESCRIBED.get(column.kind, 'valid')}"
        )
    return typed
