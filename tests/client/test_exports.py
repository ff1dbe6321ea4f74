"""Export fields are validated before anything is sent, with messages naming the field."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest

from airflow_provider_feishu_vc.client import api
from airflow_provider_feishu_vc.client.budget import AppBudgets
from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
from airflow_provider_feishu_vc.client.exports import (
    EXPORT_KINDS,
    build_export_body,
    to_unix_seconds,
    validate_export_task_id,
)
from airflow_provider_feishu_vc.client.protocol import HttpRequest, RetryPolicy
from tests.client.scripted import first_request

START = dt.datetime(2026, 11, 24, tzinfo=dt.timezone.utc)
END = START + dt.timedelta(days=1)
START_S, END_S = str(int(START.timestamp())), str(int(END.timestamp()))


def test_every_documented_kind_is_known() -> None:
    assert set(EXPORT_KINDS) == {
        "meeting_list",
        "participant_list",
        "participant_quality_list",
        "resource_reservation_list",
    }


@pytest.mark.parametrize(
    "value",
    [
        START,
        pendulum.datetime(2026, 11, 24, 8, tz="Asia/Shanghai"),
        "2026-11-24T00:00:00Z",
        "2026-11-24T08:00:00+08:00",
        int(START.timestamp()),
        START_S,
        float(START.timestamp()),
    ],
)
def test_times_become_unix_second_strings(value: object) -> None:
    _, body = build_export_body("meeting_list", {"start_time": value, "end_time": END})
    assert body["start_time"] == START_S
    assert body["end_time"] == END_S


def test_naive_datetimes_mean_utc() -> None:
    assert to_unix_seconds("start_time", dt.datetime(2026, 11, 24)) == int(START.timestamp())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (START.timestamp() * 1000, "between 2000-01-01 and 2100-01-01"),
        ("yesterday", "ISO-8601"),
        (True, "got a boolean"),
        ([1], "got list"),
    ],
)
def test_bad_times_name_the_field(value: object, message: str) -> None:
    with pytest.raises(FeishuVCConfigError) as raised:
        build_export_body("meeting_list", {"start_time": value, "end_time": END})
    assert raised.value.field == "start_time"
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("export_type", "fields", "field", "message"),
    [
        ("meeting_lists", {}, "export_type", "allowed: meeting_list, participant_list"),
        ("meeting_list", {"end_time": END}, "start_time", "required for meeting_list"),
        ("meeting_list", {"start_time": END, "end_time": START}, "end_time", "must be after start_time"),
        ("meeting_list", {"start_time": START, "end_time": START}, "end_time", "must be after start_time"),
        (
            "meeting_list",
            {"start_time": START, "end_time": END, "meeting_no": "123456789", "user_id": "ou_1"},
            "user_id",
            "at most one of",
        ),
        ("meeting_list", {"start_time": START, "end_time": END, "meeting_status": 4}, "meeting_status", "allowed"),
        ("meeting_list", {"start_time": START, "end_time": END, "meeting_type": "video"}, "meeting_type", "integer"),
        ("meeting_list", {"start_time": START, "end_time": END, "topic": "x"}, "topic", "not a field of meeting_list"),
        (
            "participant_list",
            {"meeting_start_time": START, "meeting_end_time": END},
            "meeting_no",
            "required for participant_list",
        ),
        (
            "participant_list",
            {"meeting_start_time": START, "meeting_end_time": END, "meeting_no": "1", "user_id": "u", "room_id": "r"},
            "room_id",
            "at most one of",
        ),
        (
            "participant_quality_list",
            {"meeting_start_time": START, "meeting_end_time": END, "meeting_no": "1", "join_time": START},
            "user_id / room_id",
            "exactly one",
        ),
        (
            "resource_reservation_list",
            {"room_level_id": "omb_1", "start_time": START, "end_time": END, "room_ids": "omm_1"},
            "room_ids",
            "list of strings",
        ),
        (
            "resource_reservation_list",
            {"room_level_id": "omb_1", "start_time": START, "end_time": END, "need_topic": "yes"},
            "need_topic",
            "boolean",
        ),
    ],
)
def test_bad_export_fields_name_the_field(export_type: str, fields: dict, field: str, message: str) -> None:
    with pytest.raises(FeishuVCConfigError) as raised:
        build_export_body(export_type, fields)
    assert raised.value.field == field
    assert message in str(raised.value)


def test_valid_bodies_for_every_kind() -> None:
    _, quality = build_export_body(
        "participant_quality_list",
        {"meeting_start_time": START, "meeting_end_time": END, "meeting_no": 123456789, "join_time": START,
         "room_id": "omm_1"},
    )  # fmt: skip
    assert quality == {
        "meeting_start_time": START_S,
        "meeting_end_time": END_S,
        "meeting_no": "123456789",
        "join_time": START_S,
        "room_id": "omm_1",
    }
    _, rooms = build_export_body(
        "resource_reservation_list",
        {"room_level_id": "omb_1", "start_time": START, "end_time": END, "room_ids": ("omm_1",), "is_exclude": True},
    )
    assert rooms["room_ids"] == ["omm_1"] and rooms["is_exclude"] is True


def create_export_request(export_type: str, fields: dict[str, object], user_id_type: str | None) -> HttpRequest:
    return first_request(api.create_export(export_type, fields, user_id_type, RetryPolicy(), AppBudgets(100)))


def test_user_id_type_goes_to_the_query() -> None:
    request = create_export_request("meeting_list", {"start_time": START, "end_time": END}, "union_id")
    assert request.params == (("user_id_type", "union_id"),)
    assert request.path == "/open-apis/vc/v1/exports/meeting_list"
    with pytest.raises(FeishuVCConfigError, match="user_id_type"):
        create_export_request("meeting_list", {"start_time": START, "end_time": END}, "email")
    with pytest.raises(FeishuVCConfigError, match="user_id_type: is not accepted by resource_reservation_list"):
        create_export_request(
            "resource_reservation_list", {"room_level_id": "x", "start_time": START, "end_time": END}, "open_id"
        )


@pytest.mark.parametrize(
    "bad", ["", "abc", "123/../auth", "../../auth/v3/tenant_access_token", "%2e%2e", "1?x=1", "12 3", None, -5, 1.5]
)
def test_export_task_id_must_be_numeric(bad: object) -> None:
    with pytest.raises(FeishuVCConfigError) as raised:
        first_request(api.get_export(bad, RetryPolicy(), AppBudgets(100)))
    assert raised.value.field == "export_task_id"


def test_numeric_export_task_ids_pass() -> None:
    assert validate_export_task_id("7111325589855797267") == "7111325589855797267"
    assert validate_export_task_id(42) == "42"


def test_long_ranges_are_sent_as_given_feishu_documents_no_limit() -> None:
    """The 1-year / 1-day limits are the synchronous queries' rules, not the exports': Feishu's answer decides."""
    _, year = build_export_body("meeting_list", {"start_time": START - dt.timedelta(days=400), "end_time": END})
    assert int(year["end_time"]) - int(year["start_time"]) == 401 * 86_400
    _, week = build_export_body(
        "resource_reservation_list", {"room_level_id": "omb_1", "start_time": START, "end_time": END + dt.timedelta(6)}
    )
    assert int(week["end_time"]) - int(week["start_time"]) == 7 * 86_400


def test_a_list_field_given_a_single_value_is_refused_by_name() -> None:
    # Found by tests/fuzz/test_parse_time.py: a datetime for room_ids was a TypeError, not a typed error.
    fields = {"room_level_id": "omb_1", "start_time": 1795363200, "end_time": 1795449600, "room_ids": dt.datetime.now()}
    with pytest.raises(FeishuVCConfigError, match="room_ids: must be a list of strings"):
        build_export_body("resource_reservation_list", fields)
