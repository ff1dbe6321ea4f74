"""S3 uploads with several parts in flight, on s3fs's own event loop and with its credentials, endpoint and extra
arguments (so a DAG author still configures only an ``ObjectStoragePath`` and its connection); and the abort of an
upload that a killed process left open. How an upload fits the landing rules is :mod:`.landing`'s.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import threading
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: Size of each part of an object-store upload (S3: 5 MiB at least, except the last).
UPLOAD_PART_BYTES = 8 * 2**20
#: Parts of one S3 upload in flight at once. An upload holds at most this many parts plus the one being filled:
#: ``(UPLOAD_PARTS_IN_FLIGHT + 1) * UPLOAD_PART_BYTES`` bytes (40 MiB); a download waits while that is full.
UPLOAD_PARTS_IN_FLIGHT = 4
UPLOAD_BYTES_HELD = (UPLOAD_PARTS_IN_FLIGHT + 1) * UPLOAD_PART_BYTES
#: The checksum every part of an S3 upload carries, declared when the upload is created (S3 verifies each part).
PART_CHECKSUM_ALGORITHM = "CRC32"

log = logging.getLogger(__name__)


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
