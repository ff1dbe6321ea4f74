"""The checks made when a DAG file is parsed never refuse a task that could run: whatever its templates render to,
a run of a refused task would refuse it too, with the same validators (generated kinds, literal fields, and which of
them are templates)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
from airflow_provider_feishu_vc.client.exports import EXPORT_KINDS, build_export_body, validate_user_id_type
from airflow_provider_feishu_vc.operators.feishu_vc import INTERVAL_DEFAULTED_KINDS, FeishuVCCreateExportOperator
from tests.fuzz.checks import boundary
from tests.fuzz.test_user_input import field_values

EVERY_FIELD = sorted({name for kind in EXPORT_KINDS.values() for name in kind.fields})
INTERVAL = (
    dt.datetime(2026, 11, 22, 16, tzinfo=dt.timezone.utc),
    dt.datetime(2026, 11, 23, 16, tzinfo=dt.timezone.utc),
)


def run_time_body(kind: str, rendered: dict[str, Any], user_id_type: str | None) -> None:
    """What a run checks, once every template is rendered: the operator's data-interval default, then the client."""
    fields = {name: value for name, value in rendered.items() if value is not None}
    if kind in INTERVAL_DEFAULTED_KINDS and not {"start_time", "end_time"} <= fields.keys():
        fields.setdefault("start_time", INTERVAL[0])
        fields.setdefault("end_time", INTERVAL[1])
    export_kind, _ = build_export_body(kind, fields)
    validate_user_id_type(export_kind, user_id_type)


@given(
    st.sampled_from([*EXPORT_KINDS, "meetings"]),
    st.dictionaries(st.sampled_from(EVERY_FIELD), field_values, max_size=6),
    st.sets(st.sampled_from(EVERY_FIELD), max_size=3),
    st.data(),
    st.none() | st.sampled_from(["open_id", "union_id", "email"]),
)
def test_a_parse_time_refusal_is_one_every_run_would_make(
    kind: str, literal: dict[str, Any], templated: set[str], data: st.DataObject, user_id_type: str | None
) -> None:
    arguments = {**literal, **{name: "{{ params.%s }}" % name for name in templated}}  # noqa: UP031
    with boundary("users: parse-time checks"):
        try:
            FeishuVCCreateExportOperator(task_id="t", export_type=kind, user_id_type=user_id_type, **arguments)
        except FeishuVCConfigError:
            rendered = {**literal, **{name: data.draw(st.none() | field_values, label=name) for name in templated}}
            with pytest.raises(FeishuVCConfigError):  # whatever the templates render to
                run_time_body(kind, rendered, user_id_type)
            raise
