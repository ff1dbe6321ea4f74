"""The sheet-reading helper process shared by a worker's threads: a read that times out kills it, and then another
thread's read is read by a new helper (never reported as the other file's fault), and a killed helper leaves
nothing behind in the worker (no pipe, no temporary file, no ``atexit`` entry). A timeout of 0 s kills the helper
deterministically: it cannot answer before it has even read the request."""

from __future__ import annotations

import gc
import os
import select
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_feishu_vc.client.errors import FeishuVCTableError
from airflow_provider_feishu_vc.tables import convert_export, read_export
from airflow_provider_feishu_vc.tables.workbook import SheetReader
from tests.tables.workbooks import write


@pytest.fixture
def sheet(tmp_path: Path) -> Path:
    return write(tmp_path / "m.xlsx", ["会议ID", "参会人数量"], [["1", "3"], ["2", "4"]])


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_read_on_a_helper_another_reads_timeout_killed_gets_its_table_not_a_memory_error(
    sheet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = SheetReader.shared()  # this thread's read took the helper ...
    with pytest.raises(FeishuVCTableError, match="took longer than 0 s"):
        read_export(sheet, "meeting_list", timeout=0)  # ... then another thread's read timed out and killed it
    shared = SheetReader.shared.__func__  # type: ignore[attr-defined]
    handed_out: list[SheetReader] = []

    def first_the_killed_one(cls: type[SheetReader]) -> SheetReader:
        handed_out.append(taken if not handed_out else shared(cls))
        return handed_out[-1]

    monkeypatch.setattr(SheetReader, "shared", classmethod(first_the_killed_one))
    table = read_export(sheet, "meeting_list")
    assert table.column("number_of_participants").to_pylist() == [3, 4]
    assert handed_out[0] is taken


def test_threads_sharing_the_helper_each_get_their_own_outcome(sheet: Path) -> None:
    outcomes: dict[str, Any] = {}
    start = threading.Barrier(4)

    def run(name: str, timeout: float) -> None:
        start.wait()
        try:
            outcomes[name] = read_export(sheet, "meeting_list", timeout=timeout).num_rows
        except FeishuVCTableError as error:
            outcomes[name] = str(error)

    threads = [threading.Thread(target=run, args=(f"t{n}", 0 if n % 2 else 600)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes["t0"] == outcomes["t2"] == 2, outcomes
    for name in ("t1", "t3"):
        assert "took longer than 0 s" in outcomes[name], outcomes


def test_killed_helpers_leave_no_pipe_temporary_file_or_atexit_entry_behind(sheet: Path) -> None:
    assert read_export(sheet, "meeting_list").num_rows == 2  # a helper is up
    gc.collect()  # what earlier tests left for the collector is gone before counting
    descriptors = open_descriptors()
    killed: list[weakref.ref[SheetReader]] = []
    for _ in range(5):
        killed.append(weakref.ref(SheetReader.shared()))
        with pytest.raises(FeishuVCTableError, match="took longer"):
            read_export(sheet, "meeting_list", timeout=0)
        assert read_export(sheet, "meeting_list").num_rows == 2  # a new helper is up
    gc.collect()
    assert open_descriptors() == descriptors  # its pipes and its stderr file were closed
    # nothing holds a killed helper any more (an atexit entry would: atexit keeps what it will call)
    assert [ref() for ref in killed] == [None] * 5


class Interrupted(BaseException):
    """What a signal raises in a worker waiting for the helper (a task's time limit, Ctrl-C, a test's timeout)."""


def test_a_read_interrupted_while_waiting_leaves_no_answer_for_the_next_read_to_take(
    sheet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_select = select.select

    def answer_ready_then_interrupted(*args: Any) -> Any:
        real_select(*args)  # the helper has answered: the answer waits in the pipe ...
        raise Interrupted  # ... when a signal interrupts the read that asked for it

    monkeypatch.setattr(select, "select", answer_ready_then_interrupted)
    with pytest.raises(Interrupted):
        read_export(sheet, "meeting_list")
    monkeypatch.setattr(select, "select", real_select)
    three = write(tmp_path / "three.xlsx", ["会议ID", "参会人数量"], [["7", "1"], ["8", "2"], ["9", "3"]])
    rows, _ = convert_export(three, "meeting_list", tmp_path / "three.csv", "csv")
    assert rows == 3  # its own answer, not the interrupted read's (2 rows)
    assert read_export(three, "meeting_list").column("meeting_id").to_pylist() == ["7", "8", "9"]
    assert read_export(sheet, "meeting_list").column("number_of_participants").to_pylist() == [3, 4]
