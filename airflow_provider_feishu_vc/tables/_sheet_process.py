"""The helper process that reads sheets: ``python -m airflow_provider_feishu_vc.tables._sheet_process``.

calamine (under fastexcel) allocates a sheet's whole cell range up front, so one cell far outside the data
(``XFD1048576``) asks for hundreds of gigabytes, and Rust aborts the process when an allocation fails. A worker
must not die of a bad file, so sheets are read here, in a process of their own, under an address-space limit set
for each read: a file that needs more kills this helper, the worker reports it and starts a new helper for the
next file. The helper reads the cells a piece of the sheet at a time (``pieces.py``), types them (``reader.py``)
and writes the result where it was asked: an Arrow IPC file (for ``read_export``), or the Parquet or CSV file
itself: one thread cuts the next piece while two read pieces and one types the next chunk of rows, in order.
It stays up between reads, warm, until its worker closes its stdin.

Protocol: one JSON request per line on stdin, one JSON answer per line on stdout (``ok``, ``rows``, ``schema``
(hex of the Arrow schema), ``warnings``; else ``error`` and ``table_error``).
"""

from __future__ import annotations

import dataclasses
import json
import resource
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_provider_feishu_vc.tables.pieces import Piece
    from airflow_provider_feishu_vc.tables.reader import TableBuilder


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
    """Read the sheet's cells piece by piece (see ``pieces.py``), type them chunk by chunk, write them out; read it
    whole instead when a piece meets something that reading it alone could get wrong."""
    from airflow_provider_feishu_vc.tables.pieces import PIECE_BYTES, WholeSheetNeeded, pieces, whole

    path, sheet = request["path"], request["sheet"]
    with memory_limit(int(request["memory_limit"])):
        try:
            return _convert(request, pieces(path, sheet, int(request.get("piece_bytes") or PIECE_BYTES)))
        except WholeSheetNeeded:
            return _convert(request, iter([whole(path, sheet)]))


#: Pieces read at once, one thread each (calamine releases the GIL while it parses).
READS_AT_ONCE = 2
#: Rows typed at once, and written as one Parquet row group (so a sheet read whole is typed in chunks too).
ROWS_PER_CHUNK = 65_536


class PieceReads:
    """The sheet's pieces, cut by one thread and read by up to :data:`READS_AT_ONCE` others, handed out in order as
    Arrow tables of text cells with the sheet row of their first row. Bounded: at most one piece cut ahead."""

    def __init__(self, stack: ExitStack, sheet_pieces: Iterator[Piece], path: str) -> None:
        self.cutter = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="cut"))
        self.readers = stack.enter_context(ThreadPoolExecutor(READS_AT_ONCE, thread_name_prefix="read"))
        #: Counts a cut piece's row and cell elements while it is read (numpy, like calamine, lets go of the GIL).
        self.counter = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="count"))
        self.sheet_pieces, self.path = sheet_pieces, path
        self.upcoming: Future[Piece | None] | None = self.cutter.submit(next, sheet_pieces, None)
        self.reads: deque[Future[tuple[pa.Table, Piece]]] = deque()
        self.seconds_reading = 0.0
        #: CPU time the counter thread spent counting (what the run-time count costs; benchmarks report it).
        self.seconds_counting = 0.0

    def __iter__(self) -> Iterator[tuple[pa.Table, Piece]]:
        self.top_up(wait=True)
        while self.reads:
            read = self.reads[0]
            while not read.done():  # start the next read as soon as its piece is cut
                cutting = self.upcoming if self.upcoming is not None and len(self.reads) < READS_AT_ONCE else None
                awaited: list[Future[Any]] = [read] if cutting is None else [read, cutting]
                wait(awaited, return_when=FIRST_COMPLETED)
                self.top_up()
            self.reads.popleft()
            cells, piece = read.result()
            self.top_up(wait=not self.reads)
            yield cells, piece

    def top_up(self, wait: bool = False) -> None:
        """Start reading the pieces cut so far while fewer than :data:`READS_AT_ONCE` are being read (``wait``:
        wait for the next piece to be cut)."""
        while self.upcoming is not None and len(self.reads) < READS_AT_ONCE and (wait or self.upcoming.done()):
            piece = self.upcoming.result()
            if piece is None:
                self.upcoming = None
                return
            self.upcoming = self.cutter.submit(next, self.sheet_pieces, None)
            self.reads.append(self.readers.submit(self._read, piece))
            wait = False

    def _counted(self, piece: Piece) -> Piece:
        """``counting.counted(piece)``, its CPU time added to :attr:`seconds_counting` (one counter thread)."""
        from airflow_provider_feishu_vc.tables.counting import counted

        began = time.thread_time()
        try:
            return counted(piece)
        finally:
            self.seconds_counting += time.thread_time() - began

    def _read(self, piece: Piece) -> tuple[pa.Table, Piece]:
        """The piece's cells, and the piece (a sheet read whole: with its rows counted, when they can be)."""
        import fastexcel
        import pyarrow as pa

        from airflow_provider_feishu_vc.client.errors import FeishuVCTableError
        from airflow_provider_feishu_vc.tables.counting import check_whole, numbered, own_rows

        # calamine does not check CRC-32, nor say when two rows fall on one: for a sheet read whole, check the file
        # and count the sheet's rows beside the read (cut pieces: CRC checked as they are cut, counted beside the read)
        checked = self.cutter.submit(check_whole, self.path, piece.sheet) if piece.whole else None
        counting = None if piece.whole else self.counter.submit(self._counted, piece)
        began = time.perf_counter()
        try:
            batch = fastexcel.read_excel(piece.source).load_sheet(
                piece.sheet, header_row=None, dtypes="string", skip_whitespace_tail_rows=True, eager=True
            )
        except Exception:
            if checked is not None and (damaged := checked.result()[0]):  # what broke the read, said plainly
                raise FeishuVCTableError(f"source is a damaged xlsx workbook: {damaged}") from None
            if not piece.whole:
                own_rows(piece)  # a comment or CDATA cut in two by the piece's end: WholeSheetNeeded, read whole
            raise
        self.seconds_reading += time.perf_counter() - began
        if checked is not None:
            damaged, rows, cell_elements = checked.result()
            if damaged:
                raise FeishuVCTableError(f"source is a damaged xlsx workbook: {damaged}")
            if rows is not None:
                piece = dataclasses.replace(numbered(piece, rows), cells=cell_elements)
        return pa.Table.from_batches([batch]), piece if counting is None else counting.result()


def _convert(request: dict[str, Any], sheet_pieces: Iterator[Piece]) -> dict[str, Any]:

    from airflow_provider_feishu_vc.tables.writers import open_writer

    started, cpu_started = time.perf_counter(), time.process_time()
    builder: TableBuilder | None = None
    gathered = RowsGathered()
    rows = 0
    with ExitStack() as stack:
        reads = PieceReads(stack, sheet_pieces, request["path"])
        typist = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="type"))
        pending: Future[pa.Table] | None = None

        def type_gathered() -> None:  # the next chunk is typed while the last one is written
            nonlocal pending, rows
            assert builder is not None
            typed = pending.result() if pending is not None else None
            pending = typist.submit(builder.convert, *gathered.take())
            if typed is not None:
                write(typed)
                rows += typed.num_rows

        for cells, piece in reads:
            if builder is None:
                builder = _builder(cells, piece, request)
                write = stack.enter_context(open_writer(request["output"], request["out"], builder.schema))
                gathered.width = cells.num_columns
            data, first_row = builder.data_of(cells, piece)
            del cells
            if not gathered.follows(first_row):
                type_gathered()
            gathered.add(data, first_row)
            del data
            while gathered.rows >= ROWS_PER_CHUNK:
                type_gathered()
            reads.top_up()
        assert builder is not None, "pieces() yields at least the whole sheet"
        while gathered.rows or pending is None:  # the rest, or the empty table of a sheet with a header alone
            type_gathered()
        typed = pending.result() if pending is not None else None
        if typed is not None:
            write(typed)
            rows += typed.num_rows
    seconds = {
        "read": reads.seconds_reading,
        "total": time.perf_counter() - started,
        "cpu": time.process_time() - cpu_started,  # every thread of this process
        "counting_cpu": reads.seconds_counting,
    }
    schema = builder.schema.serialize().to_pybytes().hex()
    return {"rows": rows, "schema": schema, "warnings": builder.warnings, "seconds": seconds}


def _builder(cells: pa.Table, piece: Piece, request: dict[str, Any]) -> TableBuilder:
    """The table's builder, from the sheet's first piece. A cut first piece holds the sheet's first rows when its rows
    are written in order; when its header is not found (a row written out of order may have left it), the sheet is
    read whole, and its error, if any, is the whole sheet's."""
    from airflow_provider_feishu_vc.client.errors import FeishuVCTableError
    from airflow_provider_feishu_vc.tables.pieces import WholeSheetNeeded
    from airflow_provider_feishu_vc.tables.reader import TableBuilder

    try:
        return TableBuilder(cells, request["export_type"], request["timezone"], request["schema"], piece.first_row)
    except FeishuVCTableError:
        if piece.whole:
            raise
        raise WholeSheetNeeded("the first piece has no header of the kind asked for") from None


class RowsGathered:
    """Data rows of consecutive pieces, gathered into one chunk of about :data:`ROWS_PER_CHUNK` rows: a chunk is typed
    at once and lands as one Parquet row group, however small the pieces."""

    def __init__(self) -> None:
        self.width = 0
        self.tables: list[pa.Table] = []
        self.first_row = 0
        self.rows = 0

    def follows(self, first_row: int) -> bool:
        """Whether rows starting at sheet row ``first_row`` continue the gathered ones (or none are gathered)."""
        return not self.tables or first_row == self.first_row + self.rows

    def add(self, data: pa.Table, first_row: int) -> None:
        import pyarrow as pa

        if not self.tables:
            self.first_row = first_row
        # every piece as wide as the first: a later one may lack trailing empty columns or have empty extra ones
        columns = [data.column(i) if i < data.num_columns else pa.nulls(data.num_rows, pa.string())
                   for i in range(self.width)]  # fmt: skip
        self.tables.append(pa.Table.from_arrays(columns, names=[f"c{i}" for i in range(self.width)]))
        self.rows += data.num_rows

    def take(self) -> tuple[pa.Table, int]:
        """Up to :data:`ROWS_PER_CHUNK` of the gathered rows, with the sheet row of the first; the rest stay."""
        import pyarrow as pa

        gathered = pa.concat_tables(self.tables)
        taken, rest = gathered.slice(0, ROWS_PER_CHUNK), gathered.slice(ROWS_PER_CHUNK)
        first_row = self.first_row
        self.tables, self.first_row, self.rows = (
            ([rest] if rest.num_rows else []),
            first_row + taken.num_rows,
            rest.num_rows,
        )
        return taken, first_row


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
