"""Rows the emulator puts in its export workbooks: the documented column counts, plausible values."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

MEETING_LIST_COLUMNS = (
    "Meeting number", "Topic", "Organizer", "Department", "Start time", "End time", "Duration",
    "Participants", "Meeting type", "Meeting status", "Audio", "Video", "Screen sharing", "Recording",
    "Phone dial-in", "Organizer user ID", "Meeting ID",
)  # fmt: skip
PARTICIPANT_LIST_COLUMNS = (
    "Participant", "User ID", "Department", "Employee ID", "Phone", "Email", "Device", "App version",
    "Public IP", "Internal IP", "Network", "Location", "Join time", "Leave time", "Duration", "Role",
    "Audio", "Video", "Screen sharing", "Recording", "Leave reason", "Meeting number", "Topic",
)  # fmt: skip
PARTICIPANT_QUALITY_COLUMNS = (
    "Time", "Participant", "User ID", "Device", "Network", "Public IP", "Location",
    *(f"{medium} {direction} {metric}"
      for medium in ("Audio", "Video", "Screen share")
      for direction in ("send", "receive")
      for metric in ("bitrate", "latency", "jitter", "loss")),
    "CPU app", "CPU system", "Memory app", "Memory system",
)  # fmt: skip
RESOURCE_RESERVATION_COLUMNS = (
    "Room", "Room level", "Capacity", "Location", "Topic", "Reserved by", "Department", "Start time",
    "End time", "Duration", "Status", "Check-in", "Released", "Meeting number", "Repeat",
)  # fmt: skip

COLUMNS: Mapping[str, Sequence[str]] = {
    "meeting_list": MEETING_LIST_COLUMNS,
    "participant_list": PARTICIPANT_LIST_COLUMNS,
    "participant_quality_list": PARTICIPANT_QUALITY_COLUMNS,
    "resource_reservation_list": RESOURCE_RESERVATION_COLUMNS,
}
SHEET_NAMES = {
    "meeting_list": "Meetings",
    "participant_list": "Participants",
    "participant_quality_list": "Quality",
    "resource_reservation_list": "Reservations",
}

CHINA = dt.timezone(dt.timedelta(hours=8))


def _clock(unix_seconds: int) -> str:
    return dt.datetime.fromtimestamp(unix_seconds, CHINA).strftime("%Y-%m-%d %H:%M:%S")


def _number(seed: str) -> str:
    return str(int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 900_000_000 + 100_000_000)


def row_count(kind: str, body: Mapping[str, Any], meeting_every: int) -> int:
    """How many data rows an export holds: one meeting every ``meeting_every`` seconds of the range, etc."""
    if kind == "meeting_list":
        if body.get("meeting_no"):
            return 1
        return max(0, (int(body["end_time"]) - int(body["start_time"])) // meeting_every)
    if kind == "participant_list":
        return 1 if body.get("user_id") or body.get("room_id") else 5
    if kind == "participant_quality_list":
        return max(1, (int(body["meeting_end_time"]) - int(body["join_time"])) // 60)
    return 3 if body.get("room_ids") and not body.get("is_exclude") else 8


def rows(kind: str, body: Mapping[str, Any], count: int, meeting_every: int) -> Iterator[list[object]]:
    """``count`` rows for an export of ``kind``; deterministic for the same request."""
    width = len(COLUMNS[kind])
    start = int(body.get("start_time") or body.get("meeting_start_time") or 0)
    for index in range(count):
        begins = start + index * (meeting_every if kind == "meeting_list" else 60)
        if kind == "meeting_list":
            number = body.get("meeting_no") or _number(f"{begins}")
            row: list[object] = [
                number, f"Weekly sync #{index + 1}", f"User {index % 7}", "R&D", _clock(begins),
                _clock(begins + 1800), "00:30:00", 3 + index % 9, "Video meeting", "Ended",
                "Yes", "Yes", "No", "No", "No", f"ou_{_number(str(index))}", f"69{_number(number)}",
            ]  # fmt: skip
        else:
            row = [f"{COLUMNS[kind][col]} {index + 1}" for col in range(width)]
            row[0] = _clock(begins) if kind == "participant_quality_list" else row[0]
        yield row[:width]
