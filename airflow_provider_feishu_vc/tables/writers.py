"""Typed tables to Parquet or CSV, written into any binary file handle (a landing's, so that the file appears whole
or not at all), and the fingerprint that tells one schema from another."""

from __future__ import annotations

import hashlib
import json
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

#: Parquet's compression: zstd packs Feishu's repetitive text well and decodes fast everywhere.
PARQUET_COMPRESSION = "zstd"


def schema_fingerprint(schema: pa.Schema) -> str:
    """A short fingerprint of the columns' names and types (order included), the same in every process."""
    described = [[field.name, str(field.type)] for field in schema]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:16]


def write_parquet(table: pa.Table, handle: IO[bytes]) -> None:
    pq.write_table(table, handle, compression=PARQUET_COMPRESSION)


def write_csv(table: pa.Table, handle: IO[bytes]) -> None:
    """UTF-8, RFC 4180 (CRLF line ends, quotes where needed), the canonical names in the header row, times as
    ISO-8601 in UTC (``2022-07-21T03:01:40Z``), booleans as ``true`` / ``false``, nulls as empty fields."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):  # whole seconds, as Feishu writes them
            seconds = pc.cast(column, pa.timestamp("s", tz="UTC"), safe=False)
            column = pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ")
        columns.append(column)
    as_text = pa.Table.from_arrays(columns, names=table.schema.names)
    options = pa_csv.WriteOptions(include_header=True, eol="\r\n", quoting_style="needed")
    pa_csv.write_csv(as_text, handle, write_options=options)


WRITERS = {"parquet": write_parquet, "csv": write_csv}
