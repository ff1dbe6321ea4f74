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
- Just before a file becomes visible (the move, the completion, the ``PutObject``), a witness, if given, is told
  where and what: the size and SHA-256 of its bytes, or on S3 the size and the ETag the upload makes. The operators
  keep that in the task's state, so that a retry after a try that failed or was killed once the file landed knows
  the file there for its own (:func:`holds`) instead of failing on "already exists".
- A killed process cannot abort its S3 upload. Each upload's id is handed to a journal as it begins and again (as
  None) when it is completed or aborted; the operators keep it in the task's state, so the next try of the same
  task instance aborts what a killed try left (:func:`.s3_upload.abort_upload`, Airflow 3.3+).

Files are opened through the store's filesystem, not ``ObjectStoragePath.open``, so Airflow's hook-level lineage
never records a temporary name; the operators report the landed file themselves.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
from airflow_provider_feishu_vc.hooks.s3_upload import UPLOAD_PART_BYTES, ParallelS3Upload, call_s3

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: Protocols of stores whose uploads appear whole when they complete (fsspec's s3fs, gcsfs, adlfs).
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl"})
#: Stores whose writes only copy into memory or the page cache, never waiting on a network.
IN_MEMORY_WRITE_PROTOCOLS = frozenset({"file", "local", "memory"})
#: A ``.part`` file this much older than now belongs to no running download.
STALE_PART_SECONDS = 24 * 3600
PART_FILE = re.compile(r"^\..+\.[0-9a-f]{12}\.part$")

log = logging.getLogger(__name__)

#: Told ``(target, upload_id)`` when a multipart upload to ``target`` begins, and ``(target, None)`` once it is
#: completed or aborted: what is left open when a process is killed in between.
UploadJournal = Callable[["ObjectStoragePath", "str | None"], None]
#: Told ``(target, note)`` just before a file becomes visible at ``target``; ``note["identity"]`` is what proves
#: later that the file there is this one (:func:`holds`).
LandingWitness = Callable[["ObjectStoragePath", dict[str, Any]], None]
#: Bytes read at once when a file's SHA-256 is computed.
HASH_READ_BYTES = 4 * 2**20


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

    def __init__(
        self,
        target: ObjectStoragePath,
        overwrite: bool,
        journal: UploadJournal | None = None,
        witness: LandingWitness | None = None,
    ) -> None:
        self.target = target
        self.overwrite = overwrite
        self.journal = journal
        self.witness = witness
        self.handle: IO[bytes] | None = None
        #: Whether a write may wait on a network: then a download writes from a second thread and reads meanwhile.
        self.writes_wait = not _protocols(target) & IN_MEMORY_WRITE_PROTOCOLS

    @staticmethod
    def for_target(
        target: ObjectStoragePath,
        overwrite: bool,
        journal: UploadJournal | None = None,
        witness: LandingWitness | None = None,
    ) -> Landing:
        return (ObjectLanding if is_object_store(target) else RenameLanding)(target, overwrite, journal, witness)

    def open(self) -> IO[bytes]:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        raise NotImplementedError

    def land_file(self, source: str) -> None:
        """Copy the finished local file ``source`` to the target: whole, or nothing appears there."""
        from airflow_provider_feishu_vc.hooks.writing import WRITE_BATCH_BYTES

        try:
            with open(source, "rb") as finished:
                shutil.copyfileobj(finished, self.open(), WRITE_BATCH_BYTES)
            self.finish()
        except BaseException:
            self.abandon()
            raise


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
        if self.witness is not None and isinstance(self.handle, ParallelS3Upload):
            self.witness(self.target, {"identity": self.handle.identity()})
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


class RenameLanding(Landing):
    """A hidden ``.part`` file beside the target, renamed into place when complete."""

    @functools.cached_property
    def partial(self) -> ObjectStoragePath:
        """This landing's own ``.part`` file (a random suffix: landings at one target never share one)."""
        return self.target.parent / f".{self.target.name}.{uuid.uuid4().hex[:12]}.part"

    def open(self) -> IO[bytes]:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(self.target.parent)
        self.handle = self.partial.fs.open(self.partial.path, "wb")
        return self.handle

    def finish(self) -> None:
        assert self.handle is not None
        self.handle.close()
        if self.witness is not None:
            self.witness(self.target, {"identity": content_identity(self.partial)})
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


def noting(witness: LandingWitness | None, **more: Any) -> LandingWitness | None:
    """``witness``, told ``more`` in each note besides."""
    if witness is None:
        return None
    tell = witness

    def note_more(target: ObjectStoragePath, note: dict[str, Any]) -> None:
        tell(target, {**note, **more})

    return note_more


def content_identity(path: ObjectStoragePath) -> dict[str, Any]:
    """What identifies a stored file: on a local disk its size, device, inode and modification time (kept by the
    rename or hard link that lands it; any later write or replacement changes them), elsewhere its size and the
    SHA-256 of its bytes. A local file is never read back: that would cost a large download a second pass."""
    if is_local(path):
        status = os.stat(path.path)
        return {"size": status.st_size, "device": status.st_dev, "inode": status.st_ino,
                "mtime_ns": status.st_mtime_ns}  # fmt: skip
    digest, size = hashlib.sha256(), 0
    with path.fs.open(path.path, "rb") as handle:
        while chunk := handle.read(HASH_READ_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def holds(target: ObjectStoragePath, identity: Any) -> bool:
    """Whether the file at ``target`` is the one ``identity`` (a witness's) describes: the same size and, on S3,
    the same ETag, on a local disk the same inode and modification time, or else the same SHA-256 of its bytes.
    False when there is no file, or nothing proves it."""
    if not isinstance(identity, dict) or not isinstance(identity.get("size"), int):
        return False
    etag, sha256 = identity.get("etag"), identity.get("sha256")
    try:
        if ParallelS3Upload.supports(target.fs):
            bucket, key, _ = target.fs.split_path(target.path)
            head = call_s3(target.fs, "head_object", Bucket=bucket, Key=key)  # S3 itself, not s3fs's listing cache
            if head.get("ContentLength") != identity["size"]:
                return False
            if isinstance(etag, str) and head.get("ETag") == etag:
                return True
        elif is_local(target):
            return "inode" in identity and content_identity(target) == identity
        elif target.fs.size(target.path) != identity["size"]:
            return False
        return isinstance(sha256, str) and content_identity(target)["sha256"] == sha256
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False


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
