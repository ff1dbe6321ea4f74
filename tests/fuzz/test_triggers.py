"""What triggers carry, generated: the kwargs a triggerer re-creates a trigger from (round-tripped, corrupted, and an
older release's), and the events a resumed task receives."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError, FeishuVCError
from airflow_provider_feishu_vc.triggers.feishu_vc import EVENT_STATUSES, FeishuVCExportTrigger, read_event
from tests.fuzz.checks import boundary
from tests.fuzz.strategies import json_values

numbers = (
    st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**64), 2**64) | st.text(max_size=8) | json_values
)


@given(
    st.text("0123456789", min_size=1, max_size=20),
    st.text(max_size=20),
    st.floats(0.01, 1e6),
    st.none() | st.floats(0, 4e9),
)
def test_a_trigger_survives_its_own_serialisation(
    export_task_id: str, conn_id: str, poll: float, deadline: float | None
) -> None:
    with boundary("triggers: serialised kwargs round trip"):
        trigger = FeishuVCExportTrigger(export_task_id, conn_id or "feishu_vc_default", poll, deadline)
        path, kwargs = trigger.serialize()
        again = FeishuVCExportTrigger(**kwargs)
        assert path.endswith("FeishuVCExportTrigger") and again.serialize() == (path, kwargs)
        assert all(isinstance(v, (str, float, type(None))) for v in kwargs.values())  # plain values only


@given(st.fixed_dictionaries({}, optional={
    "export_task_id": st.text(max_size=25) | json_values,
    "feishu_vc_conn_id": st.text(max_size=20) | json_values,
    "poll_interval": numbers,
    "deadline": numbers,
    "timeout": numbers,  # a key no release had
}))  # fmt: skip
def test_corrupted_kwargs_make_a_trigger_or_an_error_naming_the_field(kwargs: dict) -> None:
    with boundary("triggers: corrupted kwargs", allowed=(FeishuVCConfigError,)):
        trigger = FeishuVCExportTrigger(**kwargs)
        assert trigger.export_task_id.isdigit()
        assert math.isfinite(trigger.poll_interval) and trigger.poll_interval > 0
        assert trigger.deadline is None or math.isfinite(trigger.deadline)


def test_a_trigger_from_release_0_1_0_kwargs_still_runs() -> None:
    """What release 0.1.0 stored in the trigger table: the same four plain values."""
    stored = {"export_task_id": "7111325589855797267", "feishu_vc_conn_id": "feishu_vc_default", "poll_interval": 10.0,
              "deadline": 1795000000.5}  # fmt: skip
    assert FeishuVCExportTrigger(**stored).serialize()[1] == stored


@given(json_values | st.fixed_dictionaries({}, optional={
    "status": st.sampled_from(EVENT_STATUSES) | json_values,
    "export_task_id": json_values,
    "message": json_values,
    "file_token": st.text(max_size=20) | json_values,
}))  # fmt: skip
def test_any_event_is_an_outcome_or_an_error_naming_the_export(event: object) -> None:
    with boundary("triggers: events", allowed=(FeishuVCError,)):
        outcome = read_event(event, "7111")
        assert outcome.status in EVENT_STATUSES and isinstance(outcome.message, str)
        if outcome.status == "success":
            assert isinstance(outcome.file_token, str) and outcome.file_token
