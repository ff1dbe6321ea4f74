"""Registers fsspec's in-memory filesystem as ``memory://`` for ObjectStoragePath (DAG tests, benchmarks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsspec.implementations.memory import MemoryFileSystem

schemes = ["memory"]


def get_fs(conn_id: str | None, storage_options: dict[str, Any] | None = None) -> MemoryFileSystem:
    from fsspec.implementations.memory import MemoryFileSystem

    return MemoryFileSystem(**(storage_options or {}))
