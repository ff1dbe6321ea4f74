"""What the emulator's export workbooks hold: Feishu's headers and Feishu's value formats, from the API facts
(``shared/feishu-vc-api.md``, "What an export file holds"), written here on their own so that the emulator never
shares a misunderstanding with the provider's table reader.

- Headers: the export overview's documented lists (the default), the newer spellings seen in real files
  (``header_style="newer"``), or Lark's English labels (``header_style="english"``: Lark's English copy of the
  field list, spelled as it spells them, ``birate`` and ``Number of accept`` included; no real English file is
  known). English files also carry Lark's English values: yes / no, ``reserve success``, ``released``, ``display``,
  "The host ends the meeting" (a room's check-in status stays Chinese: Lark's pages give no word for 未签到).
- Values: times ``2022.07.21 11:01:40 (GMT+08:00)`` (the quality list's without an offset), durations ``01:00:00``
  (reservations ``1:00:00``), yes/no as 是 / 否 (English: yes / no), counts as text, quality figures with their
  units (``50kbps``, ``5ms``, ``2%``, CPU ``0.8%``), enumerations as Chinese words, ``-`` where Feishu has no value
  (an unreleased reservation's releaser and release time, an unchecked room's check-in time, a participant still in
  the meeting's leave time). Row 1 holds the headers; one sheet.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HEADER_STYLES = ("documented", "newer", "english")

#: Per kind and header style: (header, field) pairs in the file's order. The field says what the column holds.
_MEETING_DOCUMENTED = (
    ("会议ID", "meeting_id"), ("会议主题", "meeting_topic"), ("会议组织者", "organizer"), ("部门", "department"),
    ("用户ID", "user_id"), ("工号", "employee_id"), ("邮箱", "email"), ("手机", "mobile"),
    ("会议开始时间", "meeting_start_time"), ("会议结束时间", "meeting_end_time"), ("会议持续时间", "meeting_duration"),
    ("参会人数量", "number_of_participants"), ("音频", "audio"), ("视频", "video"), ("共享", "sharing"),
    ("录制", "recording"), ("电话", "telephone"),
)  # fmt: skip
_MEETING_NEWER = (
    ("会议 ID", "meeting_id"), ("外部会议", "is_external"), ("会议主题", "meeting_topic"), ("会议类型", "meeting_type"),
    ("组织者", "organizer"), ("组织者部门", "department"), ("用户ID", "user_id"), ("工号", "employee_id"),
    ("邮箱", "email"), ("手机", "mobile"), ("会议开始时间", "meeting_start_time"), ("会议结束时间", "meeting_end_time"),
    ("会议时长", "meeting_duration"), ("参会人数", "number_of_participants"), ("累计入会设备数", "number_of_devices"),
    ("音频", "audio"), ("视频", "video"), ("共享", "sharing"), ("录制", "recording"), ("电话", "telephone"),
)  # fmt: skip
_PARTICIPANT_DOCUMENTED = (
    ("参会人", "participant_name"), ("部门", "department"), ("用户ID", "user_id"), ("工号", "employee_id"),
    ("电话", "phone"), ("邮箱", "email"), ("设备", "device"), ("客户端版本", "app_version"), ("公网IP", "public_ip"),
    ("内网IP", "internal_ip"), ("代理服务", "use_rtc_proxy"), ("位置", "location"), ("网络类型", "network_type"),
    ("麦克风", "microphone"), ("扬声器", "speaker"), ("摄像头", "camera"), ("音频", "audio"), ("视频", "video"),
    ("共享", "sharing"), ("入会时间", "join_time"), ("离会时间", "leave_time"), ("参会时长", "time_in_meeting"),
    ("离会原因", "leave_reason"),
)  # fmt: skip
_QUALITY_DOCUMENTED = (
    ("时间", "time"),
    *((f"{medium}-{metric}（{direction}）", f"{medium_field}.{metric_field}.{direction_field}")
      for medium, medium_field in (("音频", "audio"), ("视频", "video"), ("共享屏幕", "screen_sharing"))
      for direction, direction_field in (("接收", "received"), ("发送", "sent"))  # five received, then five sent
      for metric, metric_field in (("码率", "bitrate"), ("延迟", "latency"), ("抖动", "jitter"),
                                   ("丢包平均", "packet_loss_avg"), ("丢包最大", "packet_loss_max"))),
    ("客户端最小 CPU 占用", "client_min_cpu_usage"), ("客户端平均 CPU 占用", "client_avg_cpu_usage"),
    ("客户端最大 CPU 占用", "client_max_cpu_usage"), ("系统最大 CPU 占用", "system_max_cpu_usage"),
)  # fmt: skip
_RESERVATION_DOCUMENTED = (
    ("会议室名称", "room_name"), ("会议主题", "event_title"), ("预定人", "reserver"),
    ("预定人所属部门", "department_of_reserver"), ("邀请人数", "guests_number"), ("接受人数", "accepted_number"),
    ("会议开始时间", "event_start_time"), ("会议结束时间", "event_end_time"), ("会议时长", "event_duration"),
    ("会议室预定状态", "reservation_status"), ("签到设备", "check_in_device"), ("会议室签到状态", "room_check_in_status"),
    ("会议室签到时间", "check_in_time"), ("释放人", "releasing_person"), ("释放时间", "releasing_time"),
)  # fmt: skip

#: Lark's English labels of each kind, in the documented order, spelled exactly as Lark's English field list spells
#: them (its case and typos included).
_LARK_ENGLISH: Mapping[str, tuple[str, ...]] = {
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
        *(f"{medium}-{metric}({direction})" for medium in ("audio", "video", "share-screen")
          for direction in ("receiver", "sender") for metric in ("birate", "lag", "jitter", "loss avg", "loss max")),
        "cpu min usage of client", "cpu avg usage of client", "cpu max usage of client", "cpu max usage of system",
    ),
    "resource_reservation_list": (
        "meeting room name", "meeting topic", "booker", "department of booker", "Number of invitees",
        "Number of accept", "meeting start time", "meeting end time", "meeting duration",
        "status of meeting room reservation", "check-in device", "check-in status of meeting room",
        "check-in time of meeting room", "releaser", "release time",
    ),
}  # fmt: skip
#: What Feishu writes where it has no value.
NO_VALUE = "-"

LAYOUTS: Mapping[str, Mapping[str, Sequence[tuple[str, str]]]] = {
    "meeting_list": {"documented": _MEETING_DOCUMENTED, "newer": _MEETING_NEWER},
    "participant_list": {
        "documented": _PARTICIPANT_DOCUMENTED,
        "newer": (("参会者", "participant_name"), *_PARTICIPANT_DOCUMENTED[1:]),
    },
    "participant_quality_list": {"documented": _QUALITY_DOCUMENTED},
    "resource_reservation_list": {"documented": _RESERVATION_DOCUMENTED},
}
SHEET_NAMES = {"meeting_list": "会议明细", "participant_list": "参会人明细", "participant_quality_list": "参会质量",
               "resource_reservation_list": "会议室预定明细"}  # fmt: skip

CHINA = dt.timezone(dt.timedelta(hours=8))


def layout(kind: str, style: str = "documented") -> list[tuple[str, str]]:
    """The (header, field) pairs of ``kind``'s file in ``style`` (kinds with no newer spellings keep the documented
    ones)."""
    if style not in HEADER_STYLES:
        raise ValueError(f"header_style is {style!r}; allowed: {', '.join(HEADER_STYLES)}")
    styles = LAYOUTS[kind]
    if style == "english":
        fields = [field for _, field in styles["documented"]]
        return list(zip(_LARK_ENGLISH[kind], fields, strict=True))
    return list(styles.get(style, styles["documented"]))


def headers(kind: str, style: str = "documented") -> list[str]:
    return [header for header, _ in layout(kind, style)]


# -- values, as Feishu writes them ------------------------------------------------------------------------------


def feishu_time(unix_seconds: int, with_offset: bool = True) -> str:
    moment = dt.datetime.fromtimestamp(unix_seconds, CHINA)
    text = moment.strftime("%Y.%m.%d %H:%M:%S")
    return f"{text} (GMT+08:00)" if with_offset else text


def feishu_duration(seconds: int, leading_zero: bool = True) -> str:
    hours, rest = divmod(seconds, 3600)
    return (
        f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}" if leading_zero else f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    )


def _number(seed: str, digits: int = 9) -> str:
    low = 10 ** (digits - 1)
    return str(int(hashlib.sha256(seed.encode()).hexdigest(), 16) % (9 * low) + low)


def _yes(flag: bool, english: bool) -> str:
    return ("yes" if flag else "no") if english else ("是" if flag else "否")


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


def rows(
    kind: str, body: Mapping[str, Any], count: int, meeting_every: int, style: str = "documented"
) -> Iterator[list[str]]:
    """``count`` rows for an export of ``kind`` in the file's ``style``; deterministic for the same request."""
    fields = [field for _, field in layout(kind, style)]
    english = style == "english"
    start = int(body.get("start_time") or body.get("meeting_start_time") or 0)
    values = _VALUES[kind]
    for index in range(count):
        record = values(index, start, body, meeting_every, english)
        yield [record.get(field, "") for field in fields]


@dataclass(frozen=True)
class ListedMeeting:
    """A meeting a meeting_list export holds: what a participant_list export of it must name, and its attendance."""

    meeting_no: str
    start: int
    end: int
    participants: int


def listed_meeting(index: int, start: int, body: Mapping[str, Any], every: int) -> ListedMeeting:
    """Row ``index`` of a meeting_list export of ``body`` (the one place its number, times and head count are made)."""
    begins = start + index * every
    length = 1800 + (index % 5) * 600
    meeting_no = str(body.get("meeting_no") or _number(str(begins)))
    return ListedMeeting(meeting_no, begins, begins + length, 3 + index % 9)


def _meeting(index: int, start: int, body: Mapping[str, Any], every: int, english: bool) -> dict[str, str]:
    listed = listed_meeting(index, start, body, every)
    begins, length, meeting_no = listed.start, listed.end - listed.start, listed.meeting_no
    return {
        "meeting_id": meeting_no, "is_external": _yes(index % 7 == 0, english),
        "meeting_topic": f"周例会 #{index + 1}", "meeting_type": "视频会议", "organizer": f"用户 {index % 7}",
        "department": "研发部", "user_id": f"ou_{_number(str(index), 12)}", "employee_id": _number(f"e{index}", 6),
        "email": f"user{index % 7}@example.com", "mobile": f"+86 138{_number(f'm{index}', 8)}",
        "meeting_start_time": feishu_time(begins), "meeting_end_time": feishu_time(begins + length),
        "meeting_duration": feishu_duration(length), "number_of_participants": str(listed.participants),
        "number_of_devices": str(4 + index % 9), "audio": _yes(True, english), "video": _yes(index % 2 == 0, english),
        "sharing": _yes(index % 3 == 0, english), "recording": _yes(index % 4 == 0, english),
        "telephone": _yes(False, english),
    }  # fmt: skip


def _participant(index: int, start: int, body: Mapping[str, Any], every: int, english: bool) -> dict[str, str]:
    joined = start + index * 30
    stayed = 600 + index * 17
    still_in = index % 5 == 4  # no leave time yet
    return {
        "participant_name": f"参会者 {index + 1}", "department": "研发部", "user_id": f"ou_{_number(str(index), 12)}",
        "employee_id": _number(f"e{index}", 6), "phone": f"021-{_number(f'p{index}', 6)}",
        "email": f"user{index}@example.com", "device": ("windows", "mac", "ios", "android")[index % 4],
        "app_version": "7.20.5", "public_ip": f"27.0.{index % 250}.183", "internal_ip": f"192.168.1.{index % 250}",
        "use_rtc_proxy": _yes(False, english), "location": "东莞", "network_type": "wifi",
        "microphone": "麦克风阵列 (Realtek(R) Audio)", "speaker": "扬声器 (Realtek(R) Audio)", "camera": "HD Camera",
        "audio": _yes(True, english), "video": _yes(index % 2 == 0, english), "sharing": _yes(False, english),
        "join_time": feishu_time(joined), "leave_time": NO_VALUE if still_in else feishu_time(joined + stayed),
        "time_in_meeting": feishu_duration(stayed), "leave_reason": NO_VALUE if still_in else ("The host ends the meeting" if english else "主持人结束会议"),
    }  # fmt: skip


def _quality(index: int, start: int, body: Mapping[str, Any], every: int, english: bool) -> dict[str, str]:
    minute = int(body.get("join_time") or start) // 60 * 60 + index * 60
    record = {"time": feishu_time(minute, with_offset=False)}
    for medium in ("audio", "video", "screen_sharing"):
        for direction in ("received", "sent"):
            record[f"{medium}.bitrate.{direction}"] = f"{40 + index % 30}kbps"
            record[f"{medium}.latency.{direction}"] = f"{5 + index % 40}ms"
            record[f"{medium}.jitter.{direction}"] = f"{index % 9}ms"
            record[f"{medium}.packet_loss_avg.{direction}"] = f"{(index % 30) / 10:g}%"  # 0.8%: decimal
            record[f"{medium}.packet_loss_max.{direction}"] = f"{index % 5}%"
    record.update(
        client_min_cpu_usage=f"{(index % 4) / 10:.1f}%", client_avg_cpu_usage=f"{0.8 + (index % 5) / 10:.1f}%",
        client_max_cpu_usage=f"{2.3 + index % 3:.1f}%", system_max_cpu_usage=f"{30 + index % 20}%",
    )  # fmt: skip
    return record


#: A reservation's status, by (English file, released); Lark's English words as its pages write them.
_RESERVATION_STATUS = {
    False: {False: "预定成功", True: "已释放（手动释放）"},
    True: {False: "reserve success", True: "released"},
}


def _reservation(index: int, start: int, body: Mapping[str, Any], every: int, english: bool) -> dict[str, str]:
    begins = start + index * 3600
    length = 3600 * (1 + index % 2)
    released = index % 3 == 2
    return {
        "room_name": f"会议室 {index + 1}", "event_title": f"评审会 {index + 1}", "reserver": f"用户 {index % 5}",
        "department_of_reserver": "研发部", "guests_number": str(4 + index % 6), "accepted_number": str(2 + index % 4),
        "event_start_time": feishu_time(begins), "event_end_time": feishu_time(begins + length),
        "event_duration": feishu_duration(length, leading_zero=False),
        "reservation_status": _RESERVATION_STATUS[english][released], "check_in_device": "display" if english else "签到板",
        "room_check_in_status": "未签到" if released else "已签到",
        "check_in_time": NO_VALUE if released else feishu_time(begins + 120),
        "releasing_person": f"用户 {index % 5}" if released else NO_VALUE,
        "releasing_time": feishu_time(begins + 600) if released else NO_VALUE,
    }  # fmt: skip


_VALUES: Mapping[str, Callable[[int, int, Mapping[str, Any], int, bool], dict[str, str]]] = {
    "meeting_list": _meeting,
    "participant_list": _participant,
    "participant_quality_list": _quality,
    "resource_reservation_list": _reservation,
}
