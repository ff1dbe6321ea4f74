"""The helper process that reads sheets: ``python -m airflow_provider_feishu_vc.tables._sheet_process``.

calamine (under fastexcel) allocates a sheet's whole cell range up front, so one cell far outside the data
(``XFD1048576``) asks for hundreds of gigabytes, and Rust aborts the process when an allocation fails. A worker
must not die of a bad file, so sheets are read here, in a process of their own, under an address-space limit set
for each read: a file that needs more kills this helper, the worker reports it and starts a new helper for the
next file. The helper reads the cells, types them (``reader.py``) and writes the result where it was asked: an
Arrow IPC file (for ``read_export``), or the Parquet or CSV file itself, typing the next chunk of rows while it
writes the last. It stays up between reads, warm, until its worker closes its stdin.

Protocol: one JSON request per line on stdin, one JSON answer per line on stdout (``ok``, ``rows``, ``schema``
(hex of the Arrow schema), ``warnings``; else ``error`` and ``table_error``).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any


def address_space() -> int:
    """This process's virtual memory size, in bytes."""
    with open("/proc/self/statm") as statm:
        import os

        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def memory_limit(extra: int) -> Any:
    """Allow ``extra`` bytes of address space beyond what this process holds now, for the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        limit = address_space() + extra
    except OSError:  # no /proc (not Linux): no limit to set
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def convert(request: dict[str, Any]) -> dict[str, Any]:
    """Read the sheet's cells, type them chunk by chunk, write them out."""
    import fastexcel
    import pyarrow as pa

    from airflow_provider_feishu_vc.tables.reader import TableBuilder
    from airflow_provider_feishu_vc.tables.writers import open_writer

    started = time.perf_counter()
    with memory_limit(int(request["memory_limit"])):
        batch = fastexcel.read_excel(request["path"]).load_sheet(
            request["sheet"], header_row=None, dtypes="string", skip_whitespace_tail_rows=True, eager=True
        )
        read = time.perf_counter()
        cells = pa.Table.from_batches([batch])
        del batch
        builder = TableBuilder(cells, request["export_type"], request["timezone"], request["schema"])
        rows = 0
        with open_writer(request["output"], request["out"], builder.schema) as write, ThreadPoolExecutor(1) as pool:
            chunks = builder.chunks(cells)
            chunk, first = next(chunks)
            pending = pool.submit(builder.convert, chunk, first)
            for chunk, first in chunks:  # type the next chunk while this one is written
                typed = pending.result()
                pending = pool.submit(builder.convert, chunk, first)
                write(typed)
                rows += typed.num_rows
            typed = pending.result()
            write(typed)
            rows += typed.num_rows
    seconds = {"read": read - started, "typed_and_written": time.perf_counter() - read}
    schema = builder.schema.serialize().to_pybytes().hex()
    return {"rows": rows, "schema": schema, "warnings": builder.warnings, "seconds": seconds}


def serve(request: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_feishu_vc.client.errors import FeishuVCError

    try:
        return {"ok": True, **convert(request)}
    except FeishuVCError as error:
        return {"ok": False, "error": str(error), "table_error": True}
    except MemoryError:
        return {"ok": False, "error": "the sheet needs more memory than allowed"}
    except Exception as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}


def warm_up() -> None:
    """Type one row of each kind, once: what pyarrow loads on first use (its pandas shim, compute kernels, the time
    zone database) is loaded before the first real file."""
    import pyarrow as pa

    from airflow_provider_feishu_vc.tables.contract import CONTRACTS
    from airflow_provider_feishu_vc.tables.reader import TableBuilder

    for kind, columns in CONTRACTS.items():
        header = [column.headers[0] for column in columns]
        cells = pa.table({f"c{i}": pa.array([h, None], pa.string()) for i, h in enumerate(header)})
        builder = TableBuilder(cells, kind, "Asia/Shanghai", "evolve")
        for chunk, first in builder.chunks(cells):
            builder.convert(chunk, first)


def main() -> None:
    warm_up()
    for line in sys.stdin:
        if line.strip():
            sys.stdout.write(json.dumps(serve(json.loads(line))) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
