"""The column contract of each export kind: which headers Feishu (and Lark) write, what each column is called in a
typed table, and what type it has. Plain Python: the README's schema tables and the docs read it too, without
pyarrow (the emulator writes its workbooks from the API facts on its own).

Canonical names are Feishu's own field names in its JSON list APIs (``GET /open-apis/vc/v1/meeting_list``, ...), with
the unit in the name where the file writes one into every value (``_seconds``, ``_kbps``, ``_ms``, ``_pct``). A
header matches after NFKC normalisation (full-width brackets and letters become ASCII), trimming, dropping every
space and underscore, and ignoring case, so ``会议 ID``, ``会议ID`` and ``Meeting ID`` are one header.

Sources (``shared/feishu-vc-api.md``, "What an export file holds"): the export overview's field lists (the
*documented* headers), a public script reading real meeting-list files (the *newer* headers), the JSON list APIs'
labels and types, and Lark's English field list (:data:`LARK_ENGLISH_HEADERS`). Bump :data:`CONTRACT_VERSION` whenever a name or a type
changes: the version travels in every table's schema metadata.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

CONTRACT_VERSION = "1"


class ValueKind(str, Enum):
    """What a column's cells hold; :data:`ARROW_TYPE_NAMES` says what each becomes."""

    TEXT = "text"  # kept as written (identifiers, names, enumerations)
    TIME = "time"  # "2022.07.21 11:01:40 (GMT+08:00)", or without offset in the reader's time zone
    DURATION = "duration"  # "01:00:00", "1:00:00", "100:02:03" -> seconds
    BOOL = "bool"  # 是 / 否, yes / no
    COUNT = "count"  # "3" (counts are written as text)
    FIGURE = "figure"  # "50kbps", "5ms", "2%" -> the number, in the column's unit


#: The Arrow type of each kind, by name (the reader builds them; the README's tables print these).
ARROW_TYPE_NAMES: Mapping[ValueKind, str] = {
    ValueKind.TEXT: "string",
    ValueKind.TIME: "timestamp[us, tz=UTC]",
    ValueKind.DURATION: "int64",
    ValueKind.BOOL: "bool",
    ValueKind.COUNT: "int64",
    ValueKind.FIGURE: "double",
}


@dataclass(frozen=True)
class Column:
    """One column of an export: its canonical field name, its kind, the headers that name it, and (for figures)
    the unit its values carry."""

    field: str
    kind: ValueKind
    headers: tuple[str, ...]
    unit: str | None = None

    @property
    def name(self) -> str:
        """The column's name in a typed table: the field, with ``_seconds`` or the unit appended."""
        if self.kind is ValueKind.DURATION:
            return f"{self.field}_seconds"
        if self.kind is ValueKind.FIGURE and self.unit:
            return f"{self.field}_{self.unit}"
        return self.field


def header_key(header: object) -> str:
    """How headers are compared: NFKC, no whitespace, no underscores, case-insensitive."""
    text = unicodedata.normalize("NFKC", str(header if header is not None else ""))
    return "".join(ch for ch in text if not ch.isspace() and ch != "_").casefold()


def _column(field: str, kind: ValueKind, *headers: str, unit: str | None = None) -> Column:
    # The canonical name is always accepted as a header too (a file written by this provider's own tools).
    return Column(field, kind, (*headers, field), unit)


T, TIME, DUR, BOOL, COUNT, FIG = (
    ValueKind.TEXT, ValueKind.TIME, ValueKind.DURATION, ValueKind.BOOL, ValueKind.COUNT, ValueKind.FIGURE,
)  # fmt: skip

MEETING_LIST = (
    _column("meeting_id", T, "会议ID", "会议 ID", "meeting id", "meeting number"),
    _column("meeting_topic", T, "会议主题", "meeting topic", "topic"),
    _column("meeting_type", T, "会议类型", "meeting type"),
    _column("organizer", T, "会议组织者", "组织者", "meeting organizer", "organizer"),
    _column("department", T, "部门", "组织者部门", "department", "organizer department"),
    _column("user_id", T, "用户ID", "user id"),
    _column("employee_id", T, "工号", "employee id", "job number"),
    _column("email", T, "邮箱", "email"),
    _column("mobile", T, "手机", "mobile", "phone number"),
    _column("meeting_start_time", TIME, "会议开始时间", "meeting start time", "start time"),
    _column("meeting_end_time", TIME, "会议结束时间", "meeting end time", "end time"),
    _column("meeting_duration", DUR, "会议持续时间", "会议时长", "meeting duration", "duration"),
    _column("number_of_participants", COUNT, "参会人数量", "参会人数", "Number of participants"),
    _column("number_of_devices", COUNT, "累计入会设备数", "number of devices"),
    _column("audio", BOOL, "音频", "audio"),
    _column("video", BOOL, "视频", "video"),
    _column("sharing", BOOL, "共享", "sharing", "screen sharing", "share"),
    _column("recording", BOOL, "录制", "recording"),
    _column("telephone", BOOL, "电话", "telephone", "phone"),
    _column("is_external", BOOL, "外部会议", "external meeting", "external"),
)

PARTICIPANT_LIST = (
    _column("participant_name", T, "参会人", "参会者", "participant", "participant name"),
    _column("department", T, "部门", "department"),
    _column("user_id", T, "用户ID", "user id"),
    _column("meeting_room_id", T, "会议室ID", "meeting room id"),
    _column("employee_id", T, "工号", "employee id", "job number"),
    _column("phone", T, "电话", "phone", "phone number"),
    _column("email", T, "邮箱", "email"),
    _column("device", T, "设备", "device"),
    _column("app_version", T, "客户端版本", "app version", "client version"),
    _column("public_ip", T, "公网IP", "public ip", "public network ip"),
    _column("internal_ip", T, "内网IP", "internal ip", "internal network ip"),
    _column("use_rtc_proxy", BOOL, "代理服务", "proxy service", "use rtc proxy", "proxy"),
    _column("location", T, "位置", "location"),
    _column("network_type", T, "网络类型", "network type"),
    _column("protocol", T, "连接类型", "protocol", "connection type"),
    _column("microphone", T, "麦克风", "microphone"),
    _column("speaker", T, "扬声器", "speaker"),
    _column("camera", T, "摄像头", "camera"),
    _column("audio", BOOL, "音频", "audio"),
    _column("video", BOOL, "视频", "video"),
    _column("sharing", BOOL, "共享", "sharing", "screen sharing", "share"),
    _column("join_time", TIME, "入会时间", "join time"),
    _column("leave_time", TIME, "离会时间", "leave time"),
    _column("time_in_meeting", DUR, "参会时长", "time in meeting", "duration"),
    _column("leave_reason", T, "离会原因", "leave reason"),
)

#: The quality list: per medium and direction (the export's word, the JSON list API's name, Lark's English word).
QUALITY_MEDIA = (("音频", "audio", "audio"), ("视频", "video", "video"), ("共享屏幕", "screen_sharing", "share-screen"))
QUALITY_DIRECTIONS = (("接收", "received", "receiver"), ("发送", "sent", "sender"))
#: Per medium and direction: (the export's metric words, with variants; the JSON field; its unit; Lark's English
#: word, ``birate`` as Lark spells it).
QUALITY_METRICS = (
    (("码率",), "bitrate", "kbps", "birate"),
    (("延迟",), "latency", "ms", "lag"),
    (("抖动",), "jitter", "ms", "jitter"),
    (("丢包平均", "丢包-平均"), "packet_loss_avg", "pct", "loss avg"),
    (("丢包最大", "丢包-最大"), "packet_loss_max", "pct", "loss max"),
)


def _quality_columns() -> tuple[Column, ...]:
    columns = [_column("time", TIME, "时间", "time")]
    for medium_cn, medium, medium_en in QUALITY_MEDIA:
        for words, metric, unit, metric_en in QUALITY_METRICS:
            for direction_cn, direction, direction_en in QUALITY_DIRECTIONS:
                headers = [f"{medium_cn}-{word}（{direction_cn}）" for word in words]
                headers.append(f"{medium} {metric.replace('_', ' ')} ({direction})")
                headers.append(f"{medium_en}-{metric_en}({direction_en})")
                columns.append(_column(f"{medium}_{metric}_{direction}", FIG, *headers, unit=unit))
    columns += [
        _column(
            "client_min_cpu_usage",
            FIG,
            "客户端最小 CPU 占用",
            "client min cpu usage",
            "cpu min usage of client",
            unit="pct",
        ),
        _column(
            "client_avg_cpu_usage",
            FIG,
            "客户端平均 CPU 占用",
            "client avg cpu usage",
            "cpu avg usage of client",
            unit="pct",
        ),
        _column(
            "client_max_cpu_usage",
            FIG,
            "客户端最大 CPU 占用",
            "client max cpu usage",
            "cpu max usage of client",
            unit="pct",
        ),
        _column("system_avg_cpu_usage", FIG, "系统平均 CPU 占用", "system avg cpu usage", unit="pct"),
        _column(
            "system_max_cpu_usage",
            FIG,
            "系统最大 CPU 占用",
            "system max cpu usage",
            "cpu max usage of system",
            unit="pct",
        ),
    ]
    return tuple(columns)


PARTICIPANT_QUALITY_LIST = _quality_columns()

RESOURCE_RESERVATION_LIST = (
    _column("room_name", T, "会议室名称", "room name", "room", "meeting room name"),
    _column("event_title", T, "会议主题", "event title", "meeting topic"),
    _column("reserver", T, "预定人", "预订人", "reserver", "reserved by", "booker"),
    _column(
        "department_of_reserver",
        T,
        "预定人所属部门",
        "预订人所属部门",
        "department of reserver",
        "department of booker",
    ),
    _column("guests_number", COUNT, "邀请人数", "guests number", "number of guests", "Number of invitees"),
    _column("accepted_number", COUNT, "接受人数", "accepted number", "Number of accept"),
    _column("event_start_time", TIME, "会议开始时间", "event start time", "start time", "meeting start time"),
    _column("event_end_time", TIME, "会议结束时间", "event end time", "end time", "meeting end time"),
    _column("event_duration", DUR, "会议时长", "event duration", "duration", "meeting duration"),
    _column(
        "reservation_status",
        T,
        "会议室预定状态",
        "会议室预订状态",
        "reservation status",
        "status of meeting room reservation",
    ),
    _column("check_in_device", T, "签到设备", "check in device", "check-in device"),
    _column("room_check_in_status", T, "会议室签到状态", "room check in status", "check-in status of meeting room"),
    _column("check_in_time", TIME, "会议室签到时间", "check in time", "check-in time of meeting room"),
    _column("releasing_person", T, "释放人", "releasing person", "releaser"),
    _column("releasing_time", TIME, "释放时间", "releasing time", "release time"),
)

CONTRACTS: Mapping[str, tuple[Column, ...]] = {
    "meeting_list": MEETING_LIST,
    "participant_list": PARTICIPANT_LIST,
    "participant_quality_list": PARTICIPANT_QUALITY_LIST,
    "resource_reservation_list": RESOURCE_RESERVATION_LIST,
}

#: The headers of each kind as Feishu's export overview documents them, in its order (the emulator's default).
DOCUMENTED_HEADERS: Mapping[str, tuple[str, ...]] = {
    "meeting_list": (
        "会议ID", "会议主题", "会议组织者", "部门", "用户ID", "工号", "邮箱", "手机", "会议开始时间", "会议结束时间",
        "会议持续时间", "参会人数量", "音频", "视频", "共享", "录制", "电话",
    ),
    "participant_list": (
        "参会人", "部门", "用户ID", "工号", "电话", "邮箱", "设备", "客户端版本", "公网IP", "内网IP", "代理服务", "位置",
        "网络类型", "麦克风", "扬声器", "摄像头", "音频", "视频", "共享", "入会时间", "离会时间", "参会时长", "离会原因",
    ),
    "participant_quality_list": (
        "时间",
        *(f"{medium}-{words[0]}（{direction}）"  # per medium, the five received columns, then the five sent
          for medium, _, _ in QUALITY_MEDIA for direction, _, _ in QUALITY_DIRECTIONS for words, *_ in QUALITY_METRICS),
        "客户端最小 CPU 占用", "客户端平均 CPU 占用", "客户端最大 CPU 占用", "系统最大 CPU 占用",
    ),
    "resource_reservation_list": (
        "会议室名称", "会议主题", "预定人", "预定人所属部门", "邀请人数", "接受人数", "会议开始时间", "会议结束时间",
        "会议时长", "会议室预定状态", "签到设备", "会议室签到状态", "会议室签到时间", "释放人", "释放时间",
    ),
}  # fmt: skip

#: The newer spellings seen in real files (meeting list, and the participant list's first column); kinds with no
#: evidence of newer spellings keep the documented ones.
NEWER_HEADERS: Mapping[str, tuple[str, ...]] = {
    **DOCUMENTED_HEADERS,
    "meeting_list": (
        "会议 ID", "外部会议", "会议主题", "会议类型", "组织者", "组织者部门", "用户ID", "工号", "邮箱", "手机", "会议开始时间",
        "会议结束时间", "会议时长", "参会人数", "累计入会设备数", "音频", "视频", "共享", "录制", "电话",
    ),
    "participant_list": ("参会者", *DOCUMENTED_HEADERS["participant_list"][1:]),
}  # fmt: skip


#: The same columns as Lark's English field list labels them, in the documented order and spelled exactly as Lark
#: does (its case and typos: ``birate``, ``Number of accept``); no real English export file is known. Words that
#: name two columns in one kind's list (``phone`` / ``phone number``) map by their position here.
LARK_ENGLISH_HEADERS: Mapping[str, tuple[str, ...]] = {
    "meeting_list": (
        "meeting id", "meeting topic", "meeting organizer", "department", "user id", "job number", "email",
        "phone number", "meeting start time", "meeting end time", "meeting duration", "Number of participants",
        "audio", "video", "share", "recording", "phone",
    ),
    "participant_list": (
        "participant", "department", "user id", "job number", "phone number", "email", "device", "app version",
        "public network ip", "internal network ip", "proxy", "location", "network type", "microphone", "speaker",
        "camera", "audio", "video", "share", "join time", "leave time", "duration", "leave reason",
    ),
    "participant_quality_list": (
        "time",
        *(f"{medium}-{metric}({direction})"
          for _, _, medium in QUALITY_MEDIA for _, _, direction in QUALITY_DIRECTIONS for *_, metric in QUALITY_METRICS),
        "cpu min usage of client", "cpu avg usage of client", "cpu max usage of client", "cpu max usage of system",
    ),
    "resource_reservation_list": (
        "meeting room name", "meeting topic", "booker", "department of booker", "Number of invitees",
        "Number of accept", "meeting start time", "meeting end time", "meeting duration",
        "status of meeting room reservation", "check-in device", "check-in status of meeting room",
        "check-in time of meeting room", "releaser", "release time",
    ),
}  # fmt: skip


def english_headers(kind: str) -> tuple[str, ...]:
    """Lark's English headers for ``kind`` (:data:`LARK_ENGLISH_HEADERS`), in the documented columns' order."""
    return LARK_ENGLISH_HEADERS[kind]


def header_index(kind: str) -> dict[str, Column]:
    """Every accepted header of ``kind``, by :func:`header_key`."""
    index: dict[str, Column] = {}
    for column in CONTRACTS[kind]:
        for header in column.headers:
            index.setdefault(header_key(header), column)
    return index


def listed_headers(kind: str, column: Column) -> tuple[str, ...]:
    """The headers the schema tables list for ``column`` of ``kind``: all it accepts but its canonical name (every
    column accepts that), unless Lark's English list writes exactly that name (``audio``, ``email``, ``time``)."""
    lark = LARK_ENGLISH_HEADERS[kind]
    return tuple(dict.fromkeys(h for h in column.headers if h != column.field or h in lark))


def schema_markdown(kind: str) -> str:
    """``kind``'s schema as a Markdown table (canonical name, Arrow type, accepted headers): the README prints it,
    and a test keeps the two alike."""
    lines = ["| column | type | headers accepted |", "|---|---|---|"]
    for column in CONTRACTS[kind]:
        unit = f" ({column.unit})" if column.kind is ValueKind.FIGURE and column.unit else ""
        headers = ", ".join(f"`{header}`" for header in listed_headers(kind, column))
        lines.append(f"| `{column.name}` | {ARROW_TYPE_NAMES[column.kind]}{unit} | {headers} |")
    return "\n".join(lines)
