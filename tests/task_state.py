"""Airflow 3.3's task state store as a task sees it (``context["task_state_store"]``: ``get`` / ``set`` /
``delete``, kept across the tries of one task instance), for tests that run tries by hand: :class:`TaskState` in
memory, :class:`FileTaskState` in a JSON file that tries in other processes share (a child script imports it with
the repository on its ``PYTHONPATH``: :data:`REPO`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: The repository's root: a child process that imports this module needs it on its ``PYTHONPATH``.
REPO = str(Path(__file__).resolve().parent.parent)


class TaskState:
    """The store in memory, kept across the tries a test runs in one process."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values: dict[str, Any] = dict(values or {})

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class FileTaskState:
    """The store in a JSON file that every try reads, written whole by an atomic rename (a try killed mid-write
    leaves the last whole state)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path) as handle:
                kept: dict[str, Any] = json.load(handle)
                return kept
        except FileNotFoundError:
            return {}

    def _write(self, kept: dict[str, Any]) -> None:
        with open(f"{self.path}.tmp", "w") as handle:
            json.dump(kept, handle)
        os.replace(f"{self.path}.tmp", self.path)

    def get(self, key: str, default: Any = None) -> Any:
        return self._read().get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self._write({**self._read(), key: value})

    def delete(self, key: str) -> None:
        kept = self._read()
        kept.pop(key, None)
        self._write(kept)


def child_environment() -> dict[str, str]:
    """The environment of a child script that imports this module."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}


def task_context(state: TaskState, run_id: str = "manual__1") -> dict[str, Any]:
    """A task's context as the operators read it outside a DAG run: the state store, the run, outlet events."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"task_state_store": state, "run_id": run_id, "outlet_events": OutletEventAccessors(), "map_index": -1}
