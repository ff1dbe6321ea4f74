"""Rules for downloaded files: the name Feishu suggests, made safe, and the completeness check."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from airflow_provider_feishu_vc.client.errors import FeishuVCDownloadError

#: The longest file name kept, in UTF-8 bytes: stores allow 255 bytes a name (a CJK character takes 3), and the
#: hidden ``.<name>.<id>.part`` name beside it needs 19 more.
MAX_FILENAME_BYTES = 200
_EXTENDED_NAME = re.compile(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", re.IGNORECASE)
_PLAIN_NAME = re.compile(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]+))', re.IGNORECASE)
_UNSAFE_CHARACTERS = re.compile(r'[\\/:*?"<>|]')


def filename_from_content_disposition(header: str | None) -> str | None:
    """The file name in a ``Content-Disposition`` header (RFC 6266 / 5987), raw: not yet made safe."""
    if not header:
        return None
    extended = _EXTENDED_NAME.search(header)
    if extended:
        charset = extended.group(1).strip() or "utf-8"
        try:
            return unquote(extended.group(2).strip().strip('"'), encoding=charset, errors="strict")
        except (LookupError, UnicodeDecodeError):
            pass
    plain = _PLAIN_NAME.search(header)
    if plain:
        name = plain.group(1) if plain.group(1) is not None else plain.group(2).strip()
        return unquote(name)  # servers percent-encode non-ASCII names in the plain form too (the SDK decodes it)
    return None


def safe_filename(name: str | None, fallback: str) -> str:
    """A file name that stays inside its folder: no path parts, no control characters, at most
    :data:`MAX_FILENAME_BYTES` bytes in UTF-8 (cut between characters, the extension kept)."""
    if not name:
        return fallback
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_CHARACTERS.sub("_", name).strip(" .")
    if not name:
        return fallback
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        stem, dot, suffix = name.rpartition(".")
        if not (dot and stem and 0 < len(suffix.encode("utf-8")) <= 10):
            stem, suffix = name, ""
        room = MAX_FILENAME_BYTES - (len(suffix.encode("utf-8")) + 1 if suffix else 0)
        stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(" .")
        name = f"{stem}.{suffix}" if suffix else stem
        if not stem:
            return fallback
    return name


@dataclass(frozen=True)
class FileInfo:
    """What the download's headers say about the file."""

    filename: str | None
    size: int | None
    content_type: str | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> FileInfo:
        try:
            size: int | None = int(headers.get("content-length", ""))
        except ValueError:
            size = None
        if size is not None and size < 0:
            size = None  # a length that lies this way says nothing
        return cls(
            filename=filename_from_content_disposition(headers.get("content-disposition")),
            size=size,
            content_type=headers.get("content-type"),
        )


def check_complete(info: FileInfo, received: int) -> None:
    """Refuse a download that is empty or whose byte count differs from ``Content-Length``."""
    if received == 0:
        raise FeishuVCDownloadError("Feishu sent an empty file (0 bytes); nothing was written to the destination")
    if info.size is not None and received != info.size:
        raise FeishuVCDownloadError(
            f"the download delivered {received} bytes but Content-Length announced {info.size}; "
            "nothing was written to the destination"
        )
