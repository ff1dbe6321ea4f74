"""What Feishu refuses, written from the API facts: error answers, and each export kind's field rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EXPORT_KINDS = ("meeting_list", "participant_list", "participant_quality_list", "resource_reservation_list")
USER_ID_TYPES = ("open_id", "union_id", "user_id")
DAY = 86_400


class FeishuError(Exception):
    """An error answer in Feishu's envelope."""

    def __init__(self, http_status: int, code: int, msg: str, **error: Any) -> None:
        super().__init__(msg)
        self.http_status, self.code, self.msg, self.error = http_status, code, msg, error


class OAuthError(FeishuError):
    """An error of the v2 OAuth token endpoint, in its own shape: ``code``, ``error``, ``error_description`` and no
    ``msg``."""

    def __init__(self, http_status: int, code: int, error: str, description: str) -> None:
        super().__init__(http_status, code, description)
        self.oauth_error = error


#: The v2 OAuth endpoint's refusals of a refresh token (shared/feishu-vc-api.md).
REFRESH_TOKEN_INVALID = (400, 20026, "invalid_grant", "The refresh token passed is invalid")
REFRESH_TOKEN_EXPIRED = (400, 20037, "invalid_grant", "The refresh token passed has expired")
REFRESH_TOKEN_USED = (400, 20064, "invalid_grant", "The refresh token has been used or revoked")


class RateLimited(FeishuError):
    def __init__(self, reset: float | None) -> None:
        super().__init__(429, 99991400, "request trigger frequency limit")
        self.reset = reset


def param_error(field_name: str, description: str) -> FeishuError:
    return FeishuError(
        400, 121003, f"param error: {field_name} {description}",
        field_violations=[{"field": field_name, "description": description}],
    )  # fmt: skip


# What each kind accepts, from the API facts: name -> (type, required).
FIELDS: dict[str, dict[str, tuple[type, bool]]] = {
    "meeting_list": {
        "start_time": (str, True), "end_time": (str, True), "meeting_status": (int, False),
        "meeting_no": (str, False), "user_id": (str, False), "room_id": (str, False), "meeting_type": (int, False),
    },
    "participant_list": {
        "meeting_start_time": (str, True), "meeting_end_time": (str, True), "meeting_status": (int, False),
        "meeting_no": (str, True), "user_id": (str, False), "room_id": (str, False),
    },
    "participant_quality_list": {
        "meeting_start_time": (str, True), "meeting_end_time": (str, True), "meeting_no": (str, True),
        "join_time": (str, True), "user_id": (str, False), "room_id": (str, False),
    },
    "resource_reservation_list": {
        "room_level_id": (str, True), "need_topic": (bool, False), "start_time": (str, True),
        "end_time": (str, True), "room_ids": (list, False), "is_exclude": (bool, False),
    },
}  # fmt: skip
TIME_FIELDS = ("start_time", "end_time", "meeting_start_time", "meeting_end_time", "join_time")


def check_user_id_type(kind: str, user_id_type: str | None) -> None:
    """The first three kinds document ``user_id_type``; reservations have no query parameters, so one sent
    there is ignored (as any unknown query parameter), not refused."""
    if user_id_type is not None and kind != "resource_reservation_list" and user_id_type not in USER_ID_TYPES:
        raise param_error("user_id_type", "must be open_id, union_id or user_id")


def check_export(kind: str, body: Mapping[str, Any]) -> None:
    """Refuse a create request the way Feishu does (121003 naming the field), for the documented rules only."""
    fields = FIELDS[kind]
    for name, value in body.items():
        if name not in fields:
            continue  # Feishu ignores unknown JSON fields
        expected, _ = fields[name]
        # Feishu's reference types times as strings, while the official SDK sends them as integers: take both.
        if name in TIME_FIELDS and type(value) is int:
            continue
        if type(value) is not expected:
            raise param_error(name, f"must be of type {expected.__name__}")
    for name, (_, required) in fields.items():
        if required and name not in body:
            raise param_error(name, "is required")
    for name in TIME_FIELDS:
        if name in body and not str(body[name]).isdigit():
            raise param_error(name, "must be unix seconds")
    if "meeting_no" in body and not (len(body["meeting_no"]) == 9 and body["meeting_no"].isdigit()):
        raise param_error("meeting_no", "must be a 9-digit meeting number")
    if kind == "meeting_list":
        filters = [name for name in ("meeting_no", "user_id", "room_id", "meeting_type") if name in body]
        if len(filters) > 1:
            raise param_error(filters[1], "only one filter among meeting_no, user_id, room_id, meeting_type")
    if kind == "participant_list" and "user_id" in body and "room_id" in body:
        raise param_error("room_id", "user_id and room_id cannot both be set")
    if kind == "participant_quality_list" and ("user_id" in body) == ("room_id" in body):
        raise param_error("user_id", "exactly one of user_id and room_id is required")
    # Nothing more: the export APIs document no longest range and no refusal of future times (those are the
    # synchronous queries' rules), so the emulator refuses neither.
