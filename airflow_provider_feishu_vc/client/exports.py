"""The four Feishu VC export kinds, their fields, and the validation done before anything is sent."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError

USER_ID_TYPES = ("open_id", "union_id", "user_id")
EXPORT_TASK_ID_PATTERN = re.compile(r"[0-9]{1,32}")
EXPORTS_PATH = "/open-apis/vc/v1/exports"
DOWNLOAD_PATH = f"{EXPORTS_PATH}/download"

# Earliest and latest accepted unix seconds: 2000-01-01 .. 2100-01-01. Anything else is a unit mistake.
_MIN_UNIX_SECONDS = 946_684_800
_MAX_UNIX_SECONDS = 4_102_444_800
#: Unix seconds or a whole number as a user may type it: ASCII digits only (``str.isdigit`` also takes ``⑦``, ``²``
#: and ``٣``, which ``int`` and ``float`` refuse or read as other numbers).
_ASCII_INTEGER = re.compile(r"-?[0-9]+")


class FieldType(Enum):
    TIME = "a datetime, an ISO-8601 string or unix seconds"
    STRING = "a string"
    INT = "an integer"
    BOOL = "a boolean"
    STRING_LIST = "a list of strings"


@dataclass(frozen=True)
class ExportField:
    type: FieldType
    required: bool = False
    choices: tuple[int, ...] = ()


@dataclass(frozen=True)
class ExportKind:
    """One create endpoint: its fields and the rules across fields."""

    name: str
    fields: Mapping[str, ExportField]
    time_range: tuple[str, str]
    at_most_one_of: tuple[str, ...] = ()
    exactly_one_of: tuple[str, ...] = ()
    accepts_user_id_type: bool = True

    @property
    def path(self) -> str:
        return f"{EXPORTS_PATH}/{self.name}"


_TIME_REQUIRED = ExportField(FieldType.TIME, required=True)
_STRING = ExportField(FieldType.STRING)
_MEETING_STATUS = ExportField(FieldType.INT, choices=(1, 2, 3))

EXPORT_KINDS: Mapping[str, ExportKind] = {
    kind.name: kind
    for kind in (
        ExportKind(
            name="meeting_list",
            fields={
                "start_time": _TIME_REQUIRED,
                "end_time": _TIME_REQUIRED,
                "meeting_status": _MEETING_STATUS,
                "meeting_no": _STRING,
                "user_id": _STRING,
                "room_id": _STRING,
                "meeting_type": ExportField(FieldType.INT, choices=(1, 2, 3)),
            },
            time_range=("start_time", "end_time"),
            at_most_one_of=("meeting_no", "user_id", "room_id", "meeting_type"),
        ),
        ExportKind(
            name="participant_list",
            fields={
                "meeting_start_time": _TIME_REQUIRED,
                "meeting_end_time": _TIME_REQUIRED,
                "meeting_status": _MEETING_STATUS,
                "meeting_no": ExportField(FieldType.STRING, required=True),
                "user_id": _STRING,
                "room_id": _STRING,
            },
            time_range=("meeting_start_time", "meeting_end_time"),
            at_most_one_of=("user_id", "room_id"),
        ),
        ExportKind(
            name="participant_quality_list",
            fields={
                "meeting_start_time": _TIME_REQUIRED,
                "meeting_end_time": _TIME_REQUIRED,
                "meeting_no": ExportField(FieldType.STRING, required=True),
                "join_time": _TIME_REQUIRED,
                "user_id": _STRING,
                "room_id": _STRING,
            },
            time_range=("meeting_start_time", "meeting_end_time"),
            exactly_one_of=("user_id", "room_id"),
        ),
        ExportKind(
            name="resource_reservation_list",
            fields={
                "room_level_id": ExportField(FieldType.STRING, required=True),
                "need_topic": ExportField(FieldType.BOOL),
                "start_time": _TIME_REQUIRED,
                "end_time": _TIME_REQUIRED,
                "room_ids": ExportField(FieldType.STRING_LIST),
                "is_exclude": ExportField(FieldType.BOOL),
            },
            time_range=("start_time", "end_time"),
            accepts_user_id_type=False,
        ),
    )
}


def get_export_kind(export_type: str) -> ExportKind:
    try:
        return EXPORT_KINDS[export_type]
    except (KeyError, TypeError):
        raise FeishuVCConfigError("export_type", f"is {export_type!r}; allowed: {', '.join(EXPORT_KINDS)}") from None


def validate_export_task_id(export_task_id: Any) -> str:
    """Return the id if it is a numeric string; it goes into a URL path, so nothing else may pass."""
    if isinstance(export_task_id, int) and not isinstance(export_task_id, bool) and export_task_id >= 0:
        export_task_id = str(export_task_id)
    if not isinstance(export_task_id, str) or not EXPORT_TASK_ID_PATTERN.fullmatch(export_task_id):
        raise FeishuVCConfigError(
            "export_task_id", f"is {export_task_id!r}; it must be the numeric string returned by a create export call"
        )
    return export_task_id


def validate_file_token(file_token: Any) -> str:
    if not isinstance(file_token, str) or not file_token.strip():
        raise FeishuVCConfigError(
            "file_token", f"is {file_token!r}; it must be the non-empty file_token of a done export"
        )
    return file_token


def to_unix_seconds(field_name: str, value: Any) -> int:
    """Accept datetimes (aware, or naive meaning UTC), dates, ISO strings and unix seconds; return unix seconds."""
    seconds: float
    if isinstance(value, bool):
        raise FeishuVCConfigError(field_name, f"must be {FieldType.TIME.value}, got a boolean")
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        seconds = moment.timestamp()
    elif isinstance(value, dt.date):
        seconds = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc).timestamp()
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and _ASCII_INTEGER.fullmatch(value.strip()):
        seconds = float(value.strip())
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise FeishuVCConfigError(
                field_name, f"is {value!r}; must be {FieldType.TIME.value} (e.g. 2026-11-24T00:00:00+08:00)"
            ) from None
        return to_unix_seconds(field_name, parsed)
    else:
        raise FeishuVCConfigError(field_name, f"must be {FieldType.TIME.value}, got {type(value).__name__}")
    if not _MIN_UNIX_SECONDS <= seconds <= _MAX_UNIX_SECONDS:
        raise FeishuVCConfigError(
            field_name, f"is {value!r}; must be a time between 2000-01-01 and 2100-01-01 (unix seconds, not ms)"
        )
    return int(seconds)


def _encode(field_name: str, spec: ExportField, value: Any) -> Any:
    kind = spec.type
    if kind is FieldType.TIME:
        return str(to_unix_seconds(field_name, value))
    if kind is FieldType.STRING:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise FeishuVCConfigError(field_name, f"must be {kind.value}, got {value!r}")
        return value
    if kind is FieldType.INT:
        if isinstance(value, str) and _ASCII_INTEGER.fullmatch(value) and not value.startswith("-"):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise FeishuVCConfigError(field_name, f"must be {kind.value}, got {value!r}")
        if spec.choices and value not in spec.choices:
            allowed = ", ".join(map(str, spec.choices))
            raise FeishuVCConfigError(field_name, f"is {value}; allowed: {allowed}")
        return value
    if kind is FieldType.BOOL:
        if not isinstance(value, bool):
            raise FeishuVCConfigError(field_name, f"must be {kind.value}, got {value!r}")
        return value
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Iterable)
        or not all(isinstance(item, str) and item for item in value)
    ):
        raise FeishuVCConfigError(field_name, f"must be {kind.value}, got {value!r}")
    return list(value)


def build_export_body(
    export_type: str, fields: Mapping[str, Any], pending: Collection[str] = ()
) -> tuple[ExportKind, dict[str, Any]]:
    """Validate ``fields`` for ``export_type`` and return the JSON body Feishu expects (times as strings).

    ``pending`` names fields whose values are known only later (templated, or defaulted at run time): their values
    and the rules that need them are left for then; everything else is checked now. That is how an operator checks
    a DAG file's literal arguments when the file is parsed (the body it returns then lacks the pending fields)."""
    kind = get_export_kind(export_type)
    given = {name: value for name, value in fields.items() if value is not None and name not in pending}
    unknown = sorted(set(given) - set(kind.fields))
    if unknown:
        raise FeishuVCConfigError(unknown[0], f"is not a field of {kind.name}; allowed: {', '.join(kind.fields)}")
    missing = [
        name for name, spec in kind.fields.items() if spec.required and name not in given and name not in pending
    ]
    if missing:
        raise FeishuVCConfigError(missing[0], f"is required for {kind.name}")
    body = {name: _encode(name, kind.fields[name], value) for name, value in given.items()}

    if kind.at_most_one_of:
        chosen = [name for name in kind.at_most_one_of if name in body]
        if len(chosen) > 1:
            raise FeishuVCConfigError(
                chosen[1],
                f"cannot be combined with {chosen[0]}: {kind.name} takes at most one of "
                f"{', '.join(kind.at_most_one_of)}",
            )
    if kind.exactly_one_of and not set(kind.exactly_one_of) & set(pending):
        chosen = [name for name in kind.exactly_one_of if name in body]
        if len(chosen) != 1:
            raise FeishuVCConfigError(
                " / ".join(kind.exactly_one_of), f"{kind.name} needs exactly one of them, got {len(chosen)}"
            )

    start_name, end_name = kind.time_range
    if start_name not in body or end_name not in body:
        return kind, body  # one of them is pending
    start, end = int(body[start_name]), int(body[end_name])
    if end <= start:
        raise FeishuVCConfigError(end_name, f"({_when(end)}) must be after {start_name} ({_when(start)})")
    # No longest range: the export APIs document none (the 1-year / 1-day limits belong to the synchronous
    # queries). A range Feishu refuses comes back as its own 121003 with the field and log_id.
    return kind, body


def _when(unix_seconds: int) -> str:
    """Unix seconds as ISO-8601 in UTC, as a message shows them."""
    return dt.datetime.fromtimestamp(unix_seconds, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def validate_user_id_type(kind: ExportKind, user_id_type: str | None) -> str | None:
    if user_id_type is None:
        return None
    if not kind.accepts_user_id_type:
        raise FeishuVCConfigError("user_id_type", f"is not accepted by {kind.name}")
    if user_id_type not in USER_ID_TYPES:
        raise FeishuVCConfigError("user_id_type", f"is {user_id_type!r}; allowed: {', '.join(USER_ID_TYPES)}")
    return user_id_type
