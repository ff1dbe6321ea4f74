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
#: The checksum every part of an S3 upload carries, declared when the upload is created (S3 verifies each part),
#: unless the client computes checksums only where an operation requires them (``request_checksum_calculation``
#: ``"when_required"``, for S3-compatible stores without flexible checksums).
PART_CHECKSUM_ALGORITHM = "CRC32"

log = logging.getLogger(__name__)


class IncompleteUploadError(OSError):
    """A multipart upload some of whose parts never arrived (a part's request cancelled without an error): it is
    aborted, never completed with a hole."""


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
        self.checksums = False  # whether parts carry a CRC-32 (the client's setting, read when the upload begins)
        self.size = 0

    @staticmethod
    def supports(fs: Any) -> bool:
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        return bool(protocols & {"s3", "s3a"}) and hasattr(fs, "_call_s3") and getattr(fs, "loop", None) is not None

    def write(self, data: bytes) -> int:
        self._raise_failure()
        self.buffer += data
        self.size += len(data)
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
            self._put_once(bytes(self.buffer))
            return
        missing = sorted(set(range(1, self.parts_started + 1)) - self.parts.keys())
        if missing:  # a part whose request was cancelled records no failure, and S3 would complete without it
            raise IncompleteUploadError(
                f"parts {missing} of the upload to s3://{self.bucket}/{self.key} never arrived: not completing it"
            )
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

    def _put_once(self, body: bytes) -> None:
        """One ``PutObject`` (without overwrite, only if the key is free). botocore retries a PUT whose answer was
        lost; when S3 had carried out the first, the retry finds the key taken (412): the object there is ours if
        it holds exactly these bytes."""
        try:
            self._call("put_object", Bucket=self.bucket, Key=self.key, Body=body, **self.condition)
        except FileExistsError as error:
            if not self._holds(body):
                raise
            log.warning("The upload to s3://%s/%s was refused (%s), but S3 had carried out an earlier send of it: "
                        "the object there is this upload's", self.bucket, self.key, error)  # fmt: skip

    def _holds(self, body: bytes) -> bool:
        """Whether the object at the key holds exactly ``body``: its size and MD5 ETag, or (an encrypted object's
        ETag is no MD5) its bytes, read back (``body`` is smaller than one part)."""
        try:
            head = self._call("head_object", Bucket=self.bucket, Key=self.key)
        except FileNotFoundError:
            return False
        if head.get("ContentLength") != len(body):
            return False
        if head.get("ETag") == f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"':
            return True
        stored = self._call("get_object", Bucket=self.bucket, Key=self.key)
        return bool(asyncio.run_coroutine_threadsafe(read_body(stored["Body"]), self.fs.loop).result() == body)

    def _landed(self, parts: list[dict[str, Any]]) -> bool:
        """Whether the object at the key is the one ``parts`` make (:func:`multipart_etag`)."""
        try:
            expected = multipart_etag(parts)
            return bool(self._call("head_object", Bucket=self.bucket, Key=self.key)["ETag"] == expected)
        except (FileNotFoundError, ValueError):  # no object, or a part's ETag that is no MD5 (then not provable)
            return False

    def identity(self) -> dict[str, Any]:
        """What tells this upload's object from any other once it landed, known before it lands (after ``close``):
        its size and the ETag S3 will give it; for one ``PutObject`` also its bytes' SHA-256 (an encrypted object's
        ETag is no MD5). Without an ETag (a part's that is no MD5) the size alone proves nothing."""
        if self.upload_id is None:
            body = bytes(self.buffer)
            return {"size": len(body), "etag": f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"',
                    "sha256": hashlib.sha256(body).hexdigest()}  # fmt: skip
        try:
            return {"size": self.size, "etag": multipart_etag([self.parts[n] for n in sorted(self.parts)])}
        except ValueError:
            return {"size": self.size}

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
            self.checksums = flexible_checksums(self.fs)
            algorithm = {"ChecksumAlgorithm": PART_CHECKSUM_ALGORITHM} if self.checksums else {}
            self.upload_id = self._call("create_multipart_upload", Bucket=self.bucket, Key=self.key, **algorithm)[
                "UploadId"
            ]
            self._tell_journal(self.upload_id)
        self.slots.acquire()  # at most UPLOAD_PARTS_IN_FLIGHT parts held beside the one being filled
        self.parts_started += 1
        # The part's CRC-32 (the checksum botocore would add) is computed here, beside the download, so that the
        # one event-loop thread sending every part spends its time sending.
        with self.finished:
            self.unfinished += 1
        checksum = part_checksum(part) if self.checksums else None
        self.fs.loop.call_soon_threadsafe(self._start_part, self.parts_started, part, checksum)

    def _start_part(self, number: int, part: bytes, checksum: str | None) -> None:  # on s3fs's loop
        sending = self.fs.loop.create_task(self._upload_part(number, part, checksum))
        self.in_flight.add(sending)
        sending.add_done_callback(self._part_done)

    def _cancel_parts(self) -> None:  # on s3fs's loop, after every part handed to it has started
        for sending in list(self.in_flight):
            sending.cancel()

    async def _upload_part(self, number: int, part: bytes, checksum: str | None) -> None:
        declared = {} if checksum is None else {"ChecksumCRC32": checksum}
        answer = await self.fs._call_s3("upload_part", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                        PartNumber=number, Body=part, **declared)  # fmt: skip
        self.parts[number] = {"ETag": answer["ETag"], **declared}

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


def multipart_etag(parts: list[dict[str, Any]]) -> str:
    """S3's ETag of a multipart object: the MD5 of its parts' ETags (as bytes), a dash and the number of parts.
    ValueError when a part's ETag is no MD5."""
    digests = b"".join(bytes.fromhex(part["ETag"].strip('"')) for part in parts)
    return f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"'


async def read_body(stream: Any) -> bytes:
    """The bytes of an object's body as aiobotocore answers it."""
    async with stream:
        return bytes(await stream.read())


def flexible_checksums(fs: Any) -> bool:
    """Whether the store's client adds checksums where an operation supports them (botocore's default), rather
    than only where one requires them (``request_checksum_calculation="when_required"``, set in the connection's
    ``config_kwargs`` or ``AWS_REQUEST_CHECKSUM_CALCULATION``): then no upload may declare one either."""
    client = getattr(fs, "s3", None)
    if client is None:
        asyncio.run_coroutine_threadsafe(fs.set_session(), fs.loop).result()
        client = fs.s3
    setting = getattr(getattr(getattr(client, "meta", None), "config", None), "request_checksum_calculation", None)
    return str(setting).lower() != "when_required"


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
