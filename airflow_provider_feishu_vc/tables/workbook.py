"""Getting a workbook's cells safely: whatever the source, checked as an xlsx before anything parses it, and read by
a child process under a memory limit (see ``_sheet_process.py``), so that no file takes the worker down.

Checks before parsing (from the zip's central directory, no decompression): it is a zip archive; no two parts share
a name; it has a workbook part; no part declares more than :data:`MAX_PART_BYTES` once decompressed, nor expands more
than :data:`MAX_COMPRESSION_RATIO` times (a zip bomb's signature; real sheets compress 5 to 30 times). A part that lies
about its size, or cells far outside the data, meet the helper's memory limit instead. The helper checks every
part's CRC-32 as it reads (``pieces.py``): calamine does not, and a flipped bit in a compressed sheet can read as
other rows.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from airflow_provider_feishu_vc.client.errors import FeishuVCTableError
from airflow_provider_feishu_vc.tables import pieces

MAX_PART_BYTES = 8 * 2**30
MAX_COMPRESSION_RATIO = 250
MAX_PARTS = 10_000
#: Address space a sheet reader may use by default: a million-row meeting list needs about a gigabyte.
DEFAULT_MEMORY_LIMIT = 4 * 2**30
DEFAULT_READ_TIMEOUT = 600.0
COPY_CHUNK = 8 * 2**20
#: How long the last sheet took to read, and to type and write (the benchmarks print it).
LAST_TIMINGS: dict[str, float] = {}


@contextmanager
def local_copy(source: Any, folder: str) -> Iterator[str]:
    """A local file path for ``source``: a path or a local ``ObjectStoragePath`` as it is; bytes, a binary file
    object or any other ``ObjectStoragePath`` copied into ``folder`` in chunks."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        path = os.path.join(folder, "export.xlsx")
        with open(path, "wb") as handle:
            handle.write(source)
        yield path
        return
    if isinstance(source, (str, os.PathLike)) and "://" not in os.fspath(source):
        yield os.fspath(source)
        return
    if hasattr(source, "read"):
        yield _copy(source, folder)
        return
    path = _as_storage_path(source)
    protocols = {path.fs.protocol} if isinstance(path.fs.protocol, str) else set(path.fs.protocol)
    if protocols & {"file", "local"}:
        yield path.path
        return
    with path.open("rb") as handle:
        yield _copy(handle, folder)


def _as_storage_path(source: Any) -> Any:
    from airflow.sdk import ObjectStoragePath

    return source if isinstance(source, ObjectStoragePath) else ObjectStoragePath(os.fspath(source))


def _copy(handle: IO[bytes], folder: str) -> str:
    path = os.path.join(folder, "export.xlsx")
    with open(path, "wb") as out:
        shutil.copyfileobj(handle, out, COPY_CHUNK)
    return path


def check_archive(path: str) -> None:
    """Refuse what is not an xlsx archive, or looks like a zip bomb, before any parser sees it."""
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError, RuntimeError) as error:
        # NotImplementedError: a zip version or compression no reader supports; RuntimeError: encrypted
        raise FeishuVCTableError(f"source is not an xlsx workbook (not a readable zip archive: {error})") from None
    if len(parts) > MAX_PARTS:
        raise FeishuVCTableError(f"source has {len(parts)} parts; an xlsx workbook has far fewer (at most {MAX_PARTS})")
    names = {part.filename for part in parts}
    if len(names) < len(parts):  # readers differ on which of two parts of one name counts
        twice = next(part.filename for part in parts if [p.filename for p in parts].count(part.filename) > 1)
        raise FeishuVCTableError(f"source has two parts named {twice}; an xlsx workbook names each part once")
    if "xl/workbook.xml" not in names:
        raise FeishuVCTableError("source is a zip archive but not an xlsx workbook (it has no xl/workbook.xml)")
    for part in parts:
        if part.file_size > MAX_PART_BYTES:
            raise FeishuVCTableError(
                f"source part {part.filename} declares {part.file_size} bytes once decompressed, more than the "
                f"{MAX_PART_BYTES} allowed"
            )
        if part.file_size > 2**20 and part.file_size > MAX_COMPRESSION_RATIO * max(part.compress_size, 1):
            raise FeishuVCTableError(
                f"source part {part.filename} expands {part.file_size // max(part.compress_size, 1)} times once "
                f"decompressed (a zip bomb?); real sheets expand far less than {MAX_COMPRESSION_RATIO} times"
            )


class SheetReader:
    """The sheet-reading helper process of this process (started on first use, shared by its threads, started anew
    after a file killed it). A helper that ends gives back its pipes, its stderr file and its ``atexit`` entry."""

    _instance: SheetReader | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        self._errors = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_feishu_vc.tables._sheet_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
        )
        self._owner = os.getpid()
        self._lock = threading.Lock()
        #: Whether a read that took too long, or was interrupted, killed this helper (then a read waiting for it is
        #: retried).
        self._timed_out = False
        atexit.register(self.close)

    @classmethod
    def shared(cls) -> SheetReader:
        with cls._guard:
            current = cls._instance
            if current is None or current._owner != os.getpid() or current._process.poll() is not None:
                if current is not None and current._owner == os.getpid():
                    with current._lock:  # once a read on it has said why it ended
                        current._discard()
                cls._instance = current = cls()
            return current

    def read(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request, wait for its answer at most ``request["timeout"]`` seconds (then the helper is
        killed: the next read starts a new one; so it is when the wait is interrupted, lest the next read take this
        answer for its own). A helper that had ended before the request was sent (another thread's read timed out,
        or its file killed it) is not this request's doing: a new helper reads it."""
        reader, restarts = self, 1
        while (answer := reader._read(request)) is None:
            if not reader._timed_out:  # it ended by itself: one new helper, not a loop of crashing ones
                if not restarts:
                    return {"ok": False, "error": "the sheet reader ended before it could read the sheet"}
                restarts -= 1
            reader = SheetReader.shared()
        return answer

    def _read(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to ``request``, or None when this helper had ended before the request was sent."""
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        with self._lock:
            if process.poll() is not None or process.stdin.closed:
                self._discard()
                return None
            try:
                process.stdin.write((json.dumps(request) + "\n").encode())
                process.stdin.flush()
            except (BrokenPipeError, OSError):
                return self._died()
            try:
                ready, _, _ = select.select([process.stdout], [], [], float(request["timeout"]))
                answer = process.stdout.readline() if ready else b""
            except BaseException:
                # interrupted while waiting (a task's time limit, Ctrl-C): the answer would be taken by the next
                # read, as if it were its own, so this helper goes and the next read starts a new one
                self._kill()
                raise
            if not ready:
                self._kill()
                return {"ok": False, "error": f"reading the sheet took longer than {request['timeout']} s"}
            if not answer:
                return self._died()
        return dict(json.loads(answer))

    def _kill(self) -> None:
        """End this helper while it reads: whatever it answers is no one's (the next read starts a new helper)."""
        self._process.kill()
        self._process.wait()
        self._timed_out = True
        self._discard()

    def _died(self) -> dict[str, Any]:
        """The helper ended while reading: a file that needed more memory than allowed, most likely."""
        self._process.wait()
        self._errors.seek(0)
        said = self._errors.read().decode("utf-8", "replace")
        self._discard()
        if "memory allocation" in said or "MemoryError" in said or self._process.returncode in (-6, -9):
            first = next((line for line in said.splitlines() if "memory allocation" in line), "")
            return {"ok": False, "error": f"the sheet needs more memory than allowed ({first or 'out of memory'})"}
        tail = " ".join(said.strip().splitlines()[-3:])[-500:]
        return {"ok": False, "error": f"the sheet reader ended with code {self._process.returncode}: {tail}"}

    def _discard(self) -> None:
        """Give back what an ended helper held: its pipes, its stderr file and its ``atexit`` entry."""
        atexit.unregister(self.close)
        for stream in (self._process.stdin, self._process.stdout, self._errors):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._process.stdin is not None:
                self._process.stdin.close()
            self._process.wait(timeout=5)
        with contextlib.suppress(Exception):
            self._errors.close()


def convert(
    source: Any,
    export_type: str,
    output: str,
    out: str,
    *,
    timezone: str,
    schema: str,
    sheet: int | str = 0,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    timeout: float = DEFAULT_READ_TIMEOUT,
) -> dict[str, Any]:
    """Read ``source``'s sheet as a typed table and write it to ``out`` as ``output`` (``arrow``, ``parquet``,
    ``csv``), in a child process under ``memory_limit`` bytes of address space; return ``rows``, ``schema`` (an
    Arrow schema) and ``warnings``. Temporary copies of the source are removed before this returns."""
    from airflow_provider_feishu_vc.tables.reader import check_options

    check_options(export_type, timezone, schema)
    folder = tempfile.mkdtemp(prefix="feishu-vc-table-")
    try:
        with local_copy(source, folder) as path:
            if not Path(path).is_file():
                raise FeishuVCTableError(f"source {path} does not exist or is not a file")
            check_archive(path)
            request = {
                "path": os.path.abspath(path), "sheet": sheet, "export_type": export_type, "timezone": timezone,
                "schema": schema, "output": output, "out": out, "memory_limit": memory_limit, "timeout": timeout,
                "piece_bytes": pieces.PIECE_BYTES,
            }  # fmt: skip
            answer = SheetReader.shared().read(request)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    LAST_TIMINGS.clear()
    LAST_TIMINGS.update(answer.get("seconds") or {})
    if not answer.get("ok"):
        if answer.get("table_error"):
            raise FeishuVCTableError(str(answer.get("error")))
        raise FeishuVCTableError(f"source could not be read: {answer.get('error')}")
    return {**answer, "schema": pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(answer["schema"])))}
