"""Writing a streamed download into its landing: from the reading thread when a write only copies into memory or
the page cache, from a second thread when a write may wait on a network (so that reading goes on meanwhile)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO

#: Bytes handed to the writer thread at once (one lock round trip per batch, not per network read), and between
#: two progress checks.
WRITE_BATCH_BYTES = 4 * 1024 * 1024
#: Batches waiting for the writer thread at most: memory stays flat whatever the file's size.
WRITE_QUEUE_BATCHES = 2
PROGRESS_LOG_INTERVAL = 5.0


class Progress:
    """Logs how far a download has come, at most every :data:`PROGRESS_LOG_INTERVAL` seconds."""

    def __init__(self, log_info: Callable[..., object], size: int | None) -> None:
        self.log_info, self.size = log_info, size
        self.started = self.last_log = time.monotonic()

    def __call__(self, received: int) -> None:
        now = time.monotonic()
        if now - self.last_log < PROGRESS_LOG_INTERVAL:
            return
        self.last_log = now
        share = f" ({100 * received / self.size:.0f}%)" if self.size else ""
        self.log_info("Downloaded %d bytes%s at %.1f MB/s", received, share, received / (now - self.started) / 1e6)


def write_chunks(handle: IO[bytes], chunks: Iterable[bytes], progress: Progress, *, in_thread: bool) -> int:
    """Write every chunk to ``handle``; return the bytes written. ``in_thread``: from a second thread."""
    if in_thread:
        return _write_from_thread(handle, chunks, progress)
    received = unreported = 0
    for chunk in chunks:
        handle.write(chunk)
        unreported += len(chunk)
        if unreported >= WRITE_BATCH_BYTES:
            received, unreported = received + unreported, 0
            progress(received)
    return received + unreported


def _write_from_thread(handle: IO[bytes], chunks: Iterable[bytes], progress: Progress) -> int:
    pending: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=WRITE_QUEUE_BATCHES)
    failures: list[BaseException] = []

    def write_all() -> None:
        while (batch := pending.get()) is not None:
            if failures:
                continue  # keep draining so that the reader never blocks on a full queue
            try:
                for chunk in batch:
                    handle.write(chunk)
            except BaseException as error:
                failures.append(error)

    received = 0
    writer = threading.Thread(target=write_all, name="feishu-vc-download-writer")
    writer.start()
    try:
        batch: list[bytes] = []
        batch_bytes = 0
        for chunk in chunks:
            batch.append(chunk)
            batch_bytes += len(chunk)
            if batch_bytes < WRITE_BATCH_BYTES:
                continue
            if failures:
                break
            pending.put(batch)
            received += batch_bytes
            batch, batch_bytes = [], 0
            progress(received)
        if batch and not failures:
            pending.put(batch)
            received += batch_bytes
    finally:
        pending.put(None)
        writer.join()
    if failures:
        raise failures[0]
    return received
