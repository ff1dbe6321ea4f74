"""The helper process that reads sheets: ``python -m airflow_provider_feishu_vc.tables._sheet_process``.

calamine (under fastexcel) allocates a sheet's whole cell range up front, so one cell far outside the data
(``XFD1048576``) asks for hundreds of gigabytes, and Rust aborts the process when an allocation fails. A worker
must not die of a bad file: each read runs in a child forked from this small, single-threaded helper, under an
address-space limit, and writes the sheet's cells as an Arrow IPC file. A child that dies is a bad file, reported
as such; the helper goes on.

Protocol: one JSON request per line on stdin (``path``, ``sheet``, ``out``, ``memory_limit``, ``timeout``), one
JSON answer per line on stdout (``ok``; else ``error``).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time
from typing import Any


def _read_in_child(request: dict[str, Any]) -> None:
    """In the forked child: read the sheet's cells as text, write them as Arrow IPC, exit."""
    import fastexcel
    import pyarrow as pa

    limit = int(request["memory_limit"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    reader = fastexcel.read_excel(request["path"])
    sheet = reader.load_sheet(request["sheet"], header_row=None, dtypes="string", skip_whitespace_tail_rows=True)
    table = sheet.to_arrow()
    with pa.OSFile(request["out"], "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write(table)


def _serve(request: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryFile(mode="w+b") as errors:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 0
            try:
                os.dup2(errors.fileno(), 2)
                _read_in_child(request)
            except BaseException as error:
                os.write(2, f"{type(error).__name__}: {error}".encode("utf-8", "replace")[:2000])
                code = 3
            os._exit(code)
        deadline = time.monotonic() + float(request["timeout"])
        while True:
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return {"ok": False, "error": f"reading the sheet took longer than {request['timeout']} s"}
            time.sleep(0.005)
        errors.seek(0)
        said = errors.read().decode("utf-8", "replace").strip()
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return {"ok": True}
    if os.WIFSIGNALED(status):
        first = next((line for line in said.splitlines() if "memory allocation" in line), "")
        reason = first or f"the reader was ended by signal {os.WTERMSIG(status)}"
        return {"ok": False, "error": f"the sheet needs more memory than allowed ({reason})", "memory": True}
    return {"ok": False, "error": said.splitlines()[-1] if said else "the reader failed"}


def main() -> None:
    import fastexcel  # noqa: F401  (loaded once here, so every child starts with it)
    import pyarrow  # noqa: F401

    for line in sys.stdin:
        if not line.strip():
            continue
        answer = _serve(json.loads(line))
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
