"""Typed tables from Feishu VC export files: Parquet and CSV a warehouse loads, one schema per export kind.

Needs the ``tables`` extra (``pip install "airflow-provider-feishu-vc[tables]"``: fastexcel, a Rust xlsx reader that
returns Arrow, pyarrow, and numpy for the row count). Without it, the functions below raise Airflow's
optional-feature error naming the extra; the rest of the provider never imports them.

- :func:`read_export` (``source``: a path, an ``ObjectStoragePath``, bytes or a binary file object) returns a
  ``pyarrow.Table`` typed by the kind's column contract (:mod:`.contract`): times as ``timestamp[us, UTC]``,
  durations as ``<field>_seconds``, yes/no as booleans, counts as ``int64``, figures with their unit in the name;
  every field's original header in its metadata under ``header``.
- :func:`write_table` writes one as Parquet or CSV into a binary file handle; :func:`schema_fingerprint` names a
  schema in 16 hex digits.
"""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_feishu_vc.tables.contract import CONTRACT_VERSION, CONTRACTS, Column, ValueKind

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

#: The output formats a typed table can be written in.
TABLE_FORMATS = ("parquet", "csv")
#: The pip extra that brings what typed tables need.
EXTRA = "tables"

__all__ = [
    "CONTRACTS",
    "CONTRACT_VERSION",
    "TABLE_FORMATS",
    "Column",
    "ValueKind",
    "convert_export",
    "read_export",
    "require_tables_extra",
    "schema_fingerprint",
    "start_sheet_reader",
    "write_table",
]


def require_tables_extra() -> None:
    """Raise Airflow's optional-feature error, naming the extra, unless fastexcel, pyarrow and numpy are installed."""
    from importlib.util import find_spec

    missing = [name for name in ("fastexcel", "pyarrow", "numpy") if find_spec(name) is None]
    if missing:
        from airflow_provider_feishu_vc.compat import AirflowOptionalProviderFeatureException

        raise AirflowOptionalProviderFeatureException(
            f"Typed tables need {', '.join(missing)}: install the provider with its '{EXTRA}' extra, "
            f'pip install "airflow-provider-feishu-vc[{EXTRA}]"'
        )


def start_sheet_reader() -> None:
    """Start this process's sheet reader now: it warms up in the background (a few seconds), so that the first
    file read later does not wait for it. Reading starts it anyway; this only moves the wait off the first read."""
    require_tables_extra()
    from airflow_provider_feishu_vc.tables import workbook

    workbook.SheetReader.shared()


def read_export(
    source: Any,
    export_type: str,
    *,
    timezone: str = "Asia/Shanghai",
    schema: str = "evolve",
    sheet: int | str = 0,
    memory_limit: int | None = None,
    timeout: float | None = None,
) -> pa.Table:
    """Read a Feishu VC export file as a typed ``pyarrow.Table``.

    :param source: The xlsx file: a local path, an ``ObjectStoragePath`` (any store), bytes, or a binary file object.
    :param export_type: ``meeting_list``, ``participant_list``, ``participant_quality_list`` or
        ``resource_reservation_list``: which column contract applies.
    :param timezone: Where a time written without an offset (the quality list's) was local; default Feishu's
        ``Asia/Shanghai``. Times with an offset use their own.
    :param schema: ``"evolve"`` (default): a column the contract does not know is kept as text, named
        ``column_<n>`` by its position, with a warning; ``"freeze"``: such a column is an error.
    :param sheet: The sheet to read (index or name); Feishu's files have one.
    :param memory_limit: Bytes of address space the sheet's reader may use (default 4 GiB); a file that needs more
        (a cell far outside the data) is an error, never a dead worker.
    :param timeout: Seconds the sheet's reader may take (default 600).
    :raises FeishuVCTableError: the file is not an xlsx workbook, a cell does not parse for its column (the message
        names the column, its header, the sheet row and the value), or an unknown column under ``"freeze"``.
    """
    require_tables_extra()
    import tempfile

    import pyarrow as pa

    from airflow_provider_feishu_vc.tables import workbook

    limits = _limits(memory_limit, timeout)
    with tempfile.TemporaryDirectory(prefix="feishu-vc-table-") as folder:
        out = f"{folder}/table.arrow"
        answer = workbook.convert(source, export_type, "arrow", out, timezone=timezone, schema=schema, sheet=sheet,
                                  **limits)  # fmt: skip
        _log_warnings(answer["warnings"])
        return pa.ipc.open_file(pa.memory_map(out)).read_all()


def convert_export(
    source: Any,
    export_type: str,
    destination: str | os.PathLike[str] | ObjectStoragePath,
    output_format: str,
    *,
    timezone: str = "Asia/Shanghai",
    schema: str = "evolve",
    sheet: int | str = 0,
    memory_limit: int | None = None,
    timeout: float | None = None,
) -> tuple[int, pa.Schema]:
    """Write a Feishu VC export file to ``destination`` (a local path or any ``ObjectStoragePath``) as a typed
    ``parquet`` or ``csv`` table, with no table held in this process (the sheet's reader writes it); return its row
    count and schema. The arguments are :func:`read_export`'s.

    The table lands whole or not at all: it is written beside a local destination under a hidden ``.part`` name
    and renamed into place once complete (elsewhere, written locally and then landed as the operators land files),
    so an error leaves nothing at ``destination`` and a file already there as it was; a finished table replaces it.
    """
    require_tables_extra()
    from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
    from airflow_provider_feishu_vc.tables import workbook
    from airflow_provider_feishu_vc.tables.writers import land_converted

    if output_format not in TABLE_FORMATS:
        raise FeishuVCConfigError("output_format", f"is {output_format!r}; allowed: {', '.join(TABLE_FORMATS)}")
    limits = _limits(memory_limit, timeout)
    answer = land_converted(destination, lambda path: workbook.convert(
        source, export_type, output_format, path, timezone=timezone, schema=schema, sheet=sheet, **limits
    ))  # fmt: skip
    _log_warnings(answer["warnings"])
    return int(answer["rows"]), answer["schema"]


def _limits(memory_limit: int | None, timeout: float | None) -> dict[str, Any]:
    from airflow_provider_feishu_vc.tables import workbook

    return {
        "memory_limit": workbook.DEFAULT_MEMORY_LIMIT if memory_limit is None else memory_limit,
        "timeout": workbook.DEFAULT_READ_TIMEOUT if timeout is None else timeout,
    }


def _log_warnings(warnings: list[str]) -> None:
    import logging

    for warning in warnings:
        logging.getLogger("airflow_provider_feishu_vc.tables.reader").warning("%s", warning)


def write_table(table: pa.Table, handle: IO[bytes], output_format: str) -> None:
    """Write ``table`` into ``handle`` as ``parquet`` (zstd) or ``csv`` (UTF-8, RFC 4180, times ISO-8601 UTC)."""
    require_tables_extra()
    from airflow_provider_feishu_vc.tables.writers import WRITERS

    WRITERS[output_format](table, handle)


def schema_fingerprint(schema: pa.Schema) -> str:
    """16 hex digits naming the columns' names and types, the same in every process."""
    require_tables_extra()
    from airflow_provider_feishu_vc.tables.writers import schema_fingerprint as fingerprint

    return fingerprint(schema)
