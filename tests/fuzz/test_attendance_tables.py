"""The attendance table with generated meetings and per-meeting tables: whatever the meetings (topics, times,
empty meetings) and parts (rows, a column the contract does not know), the landed table is exactly the union of the
parts with each meeting's columns in front; and a meeting list with a bad row is refused naming ``meetings``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
from airflow_provider_feishu_vc.hooks.feishu_vc import as_storage_path
from airflow_provider_feishu_vc.operators.attendance_run import Meeting, MeetingExport
from airflow_provider_feishu_vc.operators.attendance_table import (
    MEETING_COLUMNS,
    IncrementalTable,
    meetings_of,
    merge_parts,
    participant_schema,
)
from tests.fuzz.conftest import fail, observe

UTC = dt.timezone.utc
numbers = st.integers(100_000_000, 999_999_999).map(str)
moments = st.integers(1_600_000_000, 1_900_000_000)
texts = st.none() | st.text(max_size=12)


@st.composite
def meetings_and_parts(draw: st.DrawFn) -> list[tuple[Meeting, pa.Table]]:
    chosen = draw(st.lists(numbers, min_size=0, max_size=6, unique=True))
    extra = draw(st.booleans())
    result = []
    for number in chosen:
        start = draw(moments)
        meeting = Meeting(number, draw(st.sampled_from([number, f"6{number}"])), draw(texts), start,
                          start + draw(st.integers(0, 86_400)))  # fmt: skip
        names = draw(st.lists(texts, max_size=5))
        columns = {
            "participant_name": pa.array(names, pa.string()),
            "join_time": pa.array([dt.datetime.fromtimestamp(start, UTC)] * len(names), pa.timestamp("us", tz="UTC")),
        }
        if extra and draw(st.booleans()):
            columns["column_30"] = pa.array([draw(texts) for _ in names], pa.string())
        result.append((meeting, pa.table(columns)))
    return result


def expected_rows(meeting: Meeting, part: pa.Table) -> list[dict[str, object]]:
    front = {"meeting_id": meeting.meeting_id, "meeting_no": meeting.meeting_no, "meeting_topic": meeting.topic,
             "meeting_start_time": dt.datetime.fromtimestamp(meeting.start, UTC),
             "meeting_end_time": dt.datetime.fromtimestamp(meeting.end, UTC)}  # fmt: skip
    return [{**front, **row} for row in part.to_pylist()]


@given(meetings_and_parts(), st.sampled_from(["parquet", "csv"]))
def test_the_table_is_the_union_of_its_parts(tmp_path_factory: object, cases: list, output_format: str) -> None:
    folder = Path(tmp_path_factory.mktemp("attendance"))  # type: ignore[attr-defined]
    parts = as_storage_path(str(folder / ".t.parts"))
    (folder / ".t.parts").mkdir()
    for meeting, part in cases:
        pq.write_table(part, folder / ".t.parts" / f"{meeting.meeting_no}.parquet")
    table = IncrementalTable(output_format)
    for meeting, _ in cases:
        table.add_file(str(folder / ".t.parts" / f"{meeting.meeting_no}.parquet"), meeting)
    landed = [MeetingExport(meeting, stage="landed") for meeting, _ in cases]
    target = as_storage_path(str(folder / f"t.{output_format}"))
    fits = table.holds({meeting.meeting_no for meeting, _ in cases})
    if fits:
        rows, schema = table.land(target, overwrite=False, witness=lambda rows, schema: None)
    else:  # a part with a column the contract does not know: merged again at the end
        table.discard()
        rows, schema = merge_parts(target, parts, landed, output_format, False, lambda rows, schema: None)
    observe("attendance table", None)
    wanted = [row for meeting, part in cases for row in expected_rows(meeting, part)]
    if output_format == "csv":
        read = pa_csv.read_csv(folder / "t.csv").num_rows if wanted else 0
        if rows != len(wanted) or read != len(wanted):
            fail("attendance table")
        assert rows == read == len(wanted)
        return
    got = pq.read_table(folder / "t.parquet")
    if got.schema.names[: len(MEETING_COLUMNS)] != list(MEETING_COLUMNS):
        fail("attendance table")
    assert got.schema.names[: len(MEETING_COLUMNS)] == list(MEETING_COLUMNS) and rows == got.num_rows
    assert got.schema.names[len(MEETING_COLUMNS) :][: len(participant_schema())] == participant_schema().names
    # every generated value is in its row, the columns it did not have are empty
    got_rows = [{key: value for key, value in row.items() if value is not None} for row in got.to_pylist()]
    want_rows = [{key: value for key, value in row.items() if value is not None} for row in wanted]
    if got_rows != want_rows:
        fail("attendance table")
    assert got_rows == want_rows and schema.names == got.schema.names


@given(st.lists(st.tuples(st.text(max_size=11), st.none() | moments), min_size=1, max_size=5))
def test_a_meeting_list_row_without_a_number_or_start_is_refused_naming_meetings(rows: list) -> None:
    table = pa.table({
        "meeting_id": pa.array([number for number, _ in rows], pa.string()),
        "meeting_start_time": pa.array(
            [None if start is None else dt.datetime.fromtimestamp(start, UTC) for _, start in rows],
            pa.timestamp("us", tz="UTC"),
        ),
    })  # fmt: skip
    valid = all(len(n.strip()) == 9 and n.strip().isdigit() and s is not None for n, s in rows)
    try:
        meetings = meetings_of(table)
    except FeishuVCConfigError as error:
        observe("attendance meeting list", error)
        assert not valid and error.field == "meetings"
        return
    observe("attendance meeting list")
    assert valid and [m.meeting_no for m in meetings] == list(dict.fromkeys(n.strip() for n, _ in rows))
