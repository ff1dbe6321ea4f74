"""How a downloaded file lands in each kind of store: whole, or not at all, and never twice.

- Object stores (S3, GCS, Azure Blob): the file is written straight to its key as a multipart upload, which no
  reader sees until it completes; a failure aborts the upload. No temporary object, no copy: a rename there is a
  copy plus a delete, not atomic, and a temporary key shows up in listings and bucket notifications. Without
  ``overwrite`` the upload completes only if the key is still free (S3's ``If-None-Match: *``, fsspec's ``"xb"``).
  A completion whose answer is lost is checked against the object's ETag, so a landed upload is never reported
  as failed.
- Every other store (local disk, ``memory://``, ...): bytes go to a hidden ``.<name>.<id>.part`` file beside the
  target, which is moved into place when complete. On a local disk, without ``overwrite``, the move is a hard link
  then an unlink: the link fails if the target exists, so of two writers to one path (a zombie try and its retry)
  exactly one lands and the other never replaces it. A later download into the same folder removes ``.part`` files
  once they are older than a day (a killed worker's leftovers).
- A killed process cannot abort its S3 upload. Each upload's id is handed to a journal as it begins and again (as
  None) when it is completed or aborted; the operators keep it in the task's state, so the next try of the same
  task instance aborts what a killed try left (:func:`abort_upload`, Airflow 3.3+).

Files are opened through the store's filesystem, not ``ObjectStoragePath.open``, so Airflow's hook-level lineage
never records a temporary name; the operators report the landed file themselves.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import logging
import os
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: Protocols of stores whose uploads appear whole when they complete (fsspec's s3fs, gcsfs, adlfs).
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl"})
#: Size of each part of an object-store upload (S3: 5 MiB at least, except the last).
UPLOAD_PART_BYTES = 8 * 2**20
#: Parts of one S3 upload in flight at once. An upload holds at most this many parts plus the one being filled:
#: ``(UPLOAD_PARTS_IN_FLIGHT + 1) * UPLOAD_PART_BYTES`` bytes (40 MiB); a download waits while that is full.
UPLOAD_PARTS_IN_FLIGHT = 4
UPLOAD_BYTES_HELD = (UPLOAD_PARTS_IN_FLIGHT + 1) * UPLOAD_PART_BYTES
#: The checksum every part of an S3 upload carries, declared when the upload is created (S3 verifies each part).
PART_CHECKSUM_ALGORITHM = "CRC32"
#: Stores whose writes only copy into memory or the page cache, never waiting on a network.
IN_MEMORY_WRITE_PROTOCOLS = frozenset({"file", "local", "memory"})
#: A ``.part`` file this much older than now belongs to no running download.
STALE_PART_SECONDS = 24 * 3600
PART_FILE = re.compile(r"^\..+\.[0-9a-f]{12}\.part$")

log = logging.getLogger(__name__)

#: Told ``(target, upload_id)`` when a multipart upload to ``target`` begins, and ``(target, None)`` once it is
#: completed or aborted: what is left open when a process is killed in between.
UploadJournal = Callable[["ObjectStoragePath", "str | None"], None]


def refuse_existing(target: ObjectStoragePath, overwrite: bool) -> None:
    if not overwrite and target.exists():
        raise already_exists(target)


def already_exists(target: ObjectStoragePath) -> FeishuVCConfigError:
    return FeishuVCConfigError(
        "destination", f"{target} already exists; pass overwrite=True to replace it, or choose another path"
    )


def _protocols(target: ObjectStoragePath) -> set[str]:
    protocols = target.fs.protocol
    return {protocols} if isinstance(protocols, str) else set(protocols)


def is_object_store(target: ObjectStoragePath) -> bool:
    return bool(_protocols(target) & OBJECT_STORE_PROTOCOLS)


def is_local(target: ObjectStoragePath) -> bool:
    return bool(_protocols(target) & {"file", "local"})


#: Why a file system may refuse a hard link although the target is free: then the check-and-rename stands alone.
NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK})


class Landing:
    """One file on its way into a store: ``open`` it, write, then ``finish`` (the file appears whole) or
    ``abandon`` (nothing appears)."""

    def __init__(self, target: ObjectStoragePath, overwrite: bool, journal: UploadJournal | None = None) -> None:
        self.target = target
        self.overwrite = overwrite
        self.journal = journal
        self.handle: IO[bytes] | None = None
        #: Whether a write may wait on a network: then a download writes from a second thread and reads meanwhile.
        self.writes_wait = not _protocols(target) & IN_MEMORY_WRITE_PROTOCOLS

    @staticmethod
    def for_target(target: ObjectStoragePath, overwrite: bool, journal: UploadJournal | None = None) -> Landing:
        return (ObjectLanding if is_object_store(target) else RenameLanding)(target, overwrite, journal)

    def open(self) -> IO[bytes]:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        raise NotImplementedError


class ObjectLanding(Landing):
    """Straight to the key as a multipart upload: completed on ``finish``, aborted on ``abandon``. On S3 (s3fs)
    several parts go up at once (:class:`ParallelS3Upload`); other stores upload through their fsspec file."""

    #: An fsspec file opened without autocommit, or a :class:`ParallelS3Upload`: either has commit and discard.
    handle: Any

    def open(self) -> Any:
        fs, path = self.target.fs, self.target.path
        if ParallelS3Upload.supports(fs):
            journal, target = self.journal, self.target
            self.handle = ParallelS3Upload(
                fs, path, self.overwrite, None if journal is None else lambda upload_id: journal(target, upload_id)
            )
            return self.handle
        options: dict[str, Any] = {"autocommit": False, "block_size": UPLOAD_PART_BYTES}
        try:
            self.handle = fs.open(path, "wb" if self.overwrite else "xb", **options)
        except (ValueError, NotImplementedError):  # a store without conditional create: the earlier check stands
            self.handle = fs.open(path, "wb", **options)
        return self.handle

    def finish(self) -> None:
        assert self.handle is not None
        self.handle.close()  # uploads the last part; nothing is visible yet
        try:
            self.handle.commit()  # the object appears, whole
        except FileExistsError:  # another writer took the key since the check: theirs stays
            raise already_exists(self.target) from None

    def abandon(self) -> None:
        if isinstance(self.handle, ParallelS3Upload):
            self.handle.discard()  # the parts in flight stop; nothing more is sent
            return
        if self.handle is None:
            return
        try:
            if not self.handle.closed:
                self.handle.close()
        finally:
            self.handle.discard()  # aborts the upload and its parts


class ParallelS3Upload:
    """A file-like multipart upload to one S3 key whose parts go up :data:`UPLOAD_PARTS_IN_FLIGHT` at a time on
    s3fs's own event loop, with the credentials, endpoint and extra arguments of the store's filesystem (so the DAG
    author still configures only an ``ObjectStoragePath`` and its connection).

    ``write`` blocks while that many parts are in flight; ``close`` sends the last part and waits for all;
    ``commit`` completes the upload, the object appearing whole (without ``overwrite`` only if the key is still free:
    ``If-None-Match: *``); ``discard`` stops the parts and aborts the upload, so that none is left. A file smaller
    than one part is one ``PutObject`` on ``commit``.
    """

    def __init__(
        self, fs: Any, path: str, overwrite: bool, journal: Callable[[str | None], None] | None = None
    ) -> None:
        self.fs = fs
        self.journal = journal
        self.bucket, self.key, _ = fs.split_path(path)
        self.condition: dict[str, str] = {} if overwrite else {"IfNoneMatch": "*"}
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: dict[int, dict[str, str]] = {}
        self.parts_started = 0
        self.in_flight: set[asyncio.Task[None]] = set()  # touched on s3fs's loop thread only
        self.unfinished = 0  # parts handed to the loop whose request has not ended yet
        self.finished = threading.Condition()
        self.slots = threading.BoundedSemaphore(UPLOAD_PARTS_IN_FLIGHT)
        self.failure: BaseException | None = None
        self.closed = False

    @staticmethod
    def supports(fs: Any) -> bool:
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        return bool(protocols & {"s3", "s3a"}) and hasattr(fs, "_call_s3") and getattr(fs, "loop", None) is not None

    def write(self, data: bytes) -> int:
        self._raise_failure()
        self.buffer += data
        while len(self.buffer) >= UPLOAD_PART_BYTES:
            part = bytes(memoryview(self.buffer)[:UPLOAD_PART_BYTES])
            del self.buffer[:UPLOAD_PART_BYTES]
            self._send(part)
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.upload_id is not None and self.buffer:
            self._send(bytes(self.buffer))  # the last part may be smaller than the others
            self.buffer.clear()
        self._wait_for_parts()
        self._raise_failure()

    def commit(self) -> None:
        if self.upload_id is None:
            self._call("put_object", Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer), **self.condition)
            return
        parts = [{"PartNumber": number, **self.parts[number]} for number in sorted(self.parts)]
        try:
            self._call("complete_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                       MultipartUpload={"Parts": parts}, **self.condition)  # fmt: skip
        except Exception as error:
            # S3 may have completed the upload and its answer been lost; the retry then finds no such upload (or,
            # without overwrite, the key taken): the object is ours if its ETag is the one these parts make.
            if not self._landed(parts):
                raise
            log.warning("The completion of the upload to s3://%s/%s failed (%s), but S3 had carried it out: the "
                        "object there is this upload's", self.bucket, self.key, error)  # fmt: skip
        self.upload_id = None
        self._tell_journal(None)

    def _landed(self, parts: list[dict[str, Any]]) -> bool:
        """Whether the object at the key is the one ``parts`` make: S3's ETag of a multipart object is the MD5 of its
        parts' ETags (as bytes), a dash and the number of parts."""
        digests = b"".join(bytes.fromhex(part["ETag"].strip('"')) for part in parts)
        expected = f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"'
        try:
            return bool(self._call("head_object", Bucket=self.bucket, Key=self.key)["ETag"] == expected)
        except (FileNotFoundError, ValueError):  # no object, or a part's ETag that is no MD5 (then not provable)
            return False

    def discard(self) -> None:
        self.closed = True
        self.fs.loop.call_soon_threadsafe(self._cancel_parts)
        # Until every part's request has really ended: S3 may complete a part still in flight after an abort,
        # which would leave that part stored (and billed) with no upload to list it under.
        self._wait_for_parts()
        if self.upload_id is not None:
            with contextlib.suppress(FileNotFoundError):  # s3fs's NoSuchUpload: completed or aborted already
                self._call("abort_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            self.upload_id = None
            self._tell_journal(None)

    def _tell_journal(self, upload_id: str | None) -> None:
        if self.journal is not None:
            self.journal(upload_id)

    def _send(self, part: bytes) -> None:
        if self.upload_id is None:
            # S3 refuses a part whose checksum is of another algorithm than the upload's, and then wants each
            # part's checksum again on completion: the object gets a composite CRC-32 of its parts.
            self.upload_id = self._call(
                "create_multipart_upload", Bucket=self.bucket, Key=self.key, ChecksumAlgorithm=PART_CHECKSUM_ALGORITHM
            )["UploadId"]
            self._tell_journal(self.upload_id)
        self.slots.acquire()  # at most UPLOAD_PARTS_IN_FLIGHT parts held beside the one being filled
        self.parts_started += 1
        # The part's CRC-32 (the checksum botocore would add) is computed here, beside the download, so that the
        # one event-loop thread sending every part spends its time sending.
        with self.finished:
            self.unfinished += 1
        self.fs.loop.call_soon_threadsafe(self._start_part, self.parts_started, part, part_checksum(part))

    def _start_part(self, number: int, part: bytes, checksum: str) -> None:  # on s3fs's loop
        sending = self.fs.loop.create_task(self._upload_part(number, part, checksum))
        self.in_flight.add(sending)
        sending.add_done_callback(self._part_done)

    def _cancel_parts(self) -> None:  # on s3fs's loop, after every part handed to it has started
        for sending in list(self.in_flight):
            sending.cancel()

    async def _upload_part(self, number: int, part: bytes, checksum: str) -> None:
        answer = await self.fs._call_s3("upload_part", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                        PartNumber=number, Body=part, ChecksumCRC32=checksum)  # fmt: skip
        self.parts[number] = {"ETag": answer["ETag"], "ChecksumCRC32": checksum}

    def _part_done(self, sending: asyncio.Task[None]) -> None:  # on s3fs's loop, once the request has ended
        self.in_flight.discard(sending)
        if not sending.cancelled() and sending.exception() is not None and self.failure is None:
            self.failure = sending.exception()
        self.slots.release()
        with self.finished:
            self.unfinished -= 1
            self.finished.notify_all()

    def _wait_for_parts(self) -> None:
        with self.finished:
            self.finished.wait_for(lambda: self.unfinished == 0)

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _call(self, method: str, **kwargs: Any) -> Any:
        return call_s3(self.fs, method, **kwargs)


def call_s3(fs: Any, method: str, **kwargs: Any) -> Any:
    """One S3 API call through s3fs's client, on its event loop, from any other thread; its answer."""
    return asyncio.run_coroutine_threadsafe(fs._call_s3(method, **kwargs), fs.loop).result()


def abort_upload(target: ObjectStoragePath, upload_id: str) -> bool:
    """Abort the multipart upload ``upload_id`` to ``target`` (S3), which a killed process left open, so that its
    parts are not stored (and billed) for ever. False when the store has no such upload (any more)."""
    fs = target.fs
    if not ParallelS3Upload.supports(fs):
        return False
    bucket, key, _ = fs.split_path(target.path)
    try:
        call_s3(fs, "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    except FileNotFoundError:  # s3fs's NoSuchUpload: completed, or aborted already
        return False
    return True


def part_checksum(part: bytes) -> str:
    """S3's ``ChecksumCRC32`` of one part: its CRC-32, big-endian, in base64."""
    return base64.b64encode(zlib.crc32(part).to_bytes(4, "big")).decode()


class RenameLanding(Landing):
    """A hidden ``.part`` file beside the target, renamed into place when complete."""

    def __init__(self, target: ObjectStoragePath, overwrite: bool, journal: UploadJournal | None = None) -> None:
        super().__init__(target, overwrite, journal)
        self.partial = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.part"

    def open(self) -> IO[bytes]:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(self.target.parent)
        self.handle = self.partial.fs.open(self.partial.path, "wb")
        return self.handle

    def finish(self) -> None:
        assert self.handle is not None
        self.handle.close()
        if not self.overwrite and is_local(self.target) and self._link_into_place():
            return
        refuse_existing(self.target, self.overwrite)
        self.partial.fs.mv(self.partial.path, self.target.path)

    def _link_into_place(self) -> bool:
        """Land the file without replacing anything: a hard link fails when the target exists, so a writer that
        took the path meanwhile keeps it. False when the file system has no hard links."""
        try:
            os.link(self.partial.path, self.target.path)
        except FileExistsError:
            raise already_exists(self.target) from None
        except OSError as error:
            if error.errno not in NO_HARD_LINKS:
                raise
            log.warning("%s has no hard links (%s): landing by check and rename", self.target.parent, error)
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partial.path)
        return True

    def abandon(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(Exception):
                self.handle.close()
        if self.partial.exists():
            self.partial.unlink()


def remove_stale_parts(folder: ObjectStoragePath, older_than: float = STALE_PART_SECONDS) -> list[str]:
    """Delete this provider's ``.part`` files in ``folder`` untouched for ``older_than`` seconds; return them."""
    removed: list[str] = []
    try:
        entries = folder.fs.ls(folder.path, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    cutoff = time.time() - older_than
    for entry in entries:
        name = str(entry.get("name", "")).rstrip("/").rsplit("/", 1)[-1]
        changed = _modified(entry)
        if entry.get("type") != "file" or not PART_FILE.match(name) or changed is None or changed > cutoff:
            continue
        with contextlib.suppress(FileNotFoundError):
            folder.fs.rm_file(entry["name"])
            removed.append(entry["name"])
            hours = (time.time() - changed) / 3600
            log.info("Removed %s, left %.0f h ago by a download that never finished", name, hours)
    return removed


def _modified(entry: dict[str, Any]) -> float | None:
    """Epoch seconds of an ``fs.ls`` entry's last change, whatever the store calls it."""
    for key in ("mtime", "created", "LastModified", "last_modified", "updated"):
        value = entry.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        timestamp = getattr(value, "timestamp", None)
        if callable(timestamp):
            return float(timestamp())
    return None
