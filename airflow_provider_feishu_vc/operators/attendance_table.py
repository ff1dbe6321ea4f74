"""The attendance table of ``FeishuVCMeetingParticipantsOperator``: each meeting's columns in front of its participant
rows, written while the parts land (:class:`IncrementalTable`) or merged from them at the end (:func:`merge_parts`),
and the meetings a typed meeting-list table names (:func:`meetings_of`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
from airflow_provider_feishu_vc.operators.attendance_run import Meeting, MeetingExport

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_feishu_vc.hooks.landing import LandingWitness, UploadJournal

#: The meeting's columns in front of every participant row: what the meeting list says of it.
MEETING_COLUMNS = ("meeting_id", "meeting_no", "meeting_topic", "meeting_start_time", "meeting_end_time")


class IncrementalTable:
    """The table, written while the parts land (one at a time, in landing order), in the contract's schema; a part
    with other columns stops it (the parts are then merged at the end in a schema that holds them all)."""

    def __init__(self, output_format: str) -> None:
        import threading

        import pyarrow as pa

        from airflow_provider_feishu_vc.tables.writers import open_writer

        self.schema = pa.schema([*meeting_fields(), *participant_schema()])
        self.folder = tempfile.mkdtemp(prefix="feishu-vc-participants-")
        self.path = f"{self.folder}/table.{output_format}"
        self._writing = open_writer(output_format, self.path, self.schema)
        self._write = self._writing.__enter__()
        self._closed = False
        self.rows = 0
        self.fits = True
        self.meetings: set[str] = set()
        self._lock = threading.Lock()

    def add_file(self, source: Any, meeting: Meeting) -> None:
        """Append one meeting's part (a local path or an open binary file)."""
        import pyarrow.parquet as pq

        part = pq.read_table(source)
        with self._lock:
            if not self.fits or self._closed or meeting.meeting_no in self.meetings:
                return
            if not set(part.column_names) <= set(self.schema.names):
                self.fits = False
                return
            self._write(with_meeting(part, meeting, self.schema))
            self.rows += part.num_rows
            self.meetings.add(meeting.meeting_no)

    def holds(self, meeting_numbers: set[str]) -> bool:
        return self.fits and self.meetings == meeting_numbers

    def _close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._writing.__exit__(None, None, None)

    def land(
        self, target: ObjectStoragePath, overwrite: bool, witness: Callable[[int, pa.Schema], LandingWitness | None],
        journal: UploadJournal | None = None,
    ) -> tuple[int, pa.Schema]:  # fmt: skip
        """Close the file and land it at ``target``, whole or not at all (``witness`` told just before it shows,
        ``journal`` of an S3 upload's id while it is open)."""
        from airflow_provider_feishu_vc.hooks.landing import Landing

        try:
            self._close()
            Landing.for_target(target, overwrite, journal, witness(self.rows, self.schema)).land_file(self.path)
        finally:
            self.discard()
        return self.rows, self.schema

    def discard(self) -> None:
        try:
            self._close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def merge_parts(
    target: ObjectStoragePath, parts: ObjectStoragePath, landed: list[MeetingExport], output_format: str,
    overwrite: bool, witness: Callable[[int, pa.Schema], LandingWitness | None],
    journal: UploadJournal | None = None,
) -> tuple[int, pa.Schema]:  # fmt: skip
    """Stream every part, with its meeting's columns in front, into one file, and land it whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_provider_feishu_vc.hooks.landing import Landing
    from airflow_provider_feishu_vc.tables.writers import open_writer

    participant_schemas = []
    for export in landed:
        with (parts / f"{export.meeting.meeting_no}.parquet").open("rb") as handle:
            participant_schemas.append(pq.read_schema(handle))
    schema = pa.unify_schemas([participant_schema(), *participant_schemas])
    schema = pa.schema([*meeting_fields(), *schema])
    rows = 0
    with tempfile.TemporaryDirectory(prefix="feishu-vc-participants-") as folder:
        merged = f"{folder}/table.{output_format}"
        with open_writer(output_format, merged, schema) as write:
            for export in landed:
                with (parts / f"{export.meeting.meeting_no}.parquet").open("rb") as handle:
                    part = pq.read_table(handle)
                table = with_meeting(part, export.meeting, schema)
                write(table)
                rows += table.num_rows
        Landing.for_target(target, overwrite, journal, witness(rows, schema)).land_file(merged)
    return rows, schema


def participant_schema() -> pa.Schema:
    """The participant contract's columns as a typed table has them (what an empty day's table holds)."""
    import pyarrow as pa

    from airflow_provider_feishu_vc.tables.contract import CONTRACTS
    from airflow_provider_feishu_vc.tables.reader import ARROW_TYPES

    return pa.schema([pa.field(column.name, ARROW_TYPES[column.kind]) for column in CONTRACTS["participant_list"]])


def meeting_fields() -> list[pa.Field]:
    import pyarrow as pa

    time_type = pa.timestamp("us", tz="UTC")
    return [pa.field("meeting_id", pa.string()), pa.field("meeting_no", pa.string()),
            pa.field("meeting_topic", pa.string()), pa.field("meeting_start_time", time_type),
            pa.field("meeting_end_time", time_type)]  # fmt: skip


def with_meeting(part: pa.Table, meeting: Meeting, schema: pa.Schema) -> pa.Table:
    """One meeting's participants in ``schema``: the meeting's values in front, missing columns as nulls."""
    import pyarrow as pa

    rows = part.num_rows
    values = {"meeting_id": meeting.meeting_id, "meeting_no": meeting.meeting_no, "meeting_topic": meeting.topic,
              "meeting_start_time": meeting.start * 1_000_000, "meeting_end_time": meeting.end * 1_000_000}  # fmt: skip
    columns = []
    for schema_field in schema:
        if schema_field.name in values:
            columns.append(pa.array([values[schema_field.name]] * rows, type=schema_field.type))
        elif schema_field.name in part.column_names:
            columns.append(part.column(schema_field.name).cast(schema_field.type))
        else:
            columns.append(pa.nulls(rows, type=schema_field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def meetings_of(table: pa.Table) -> list[Meeting]:
    """The meetings of a typed meeting-list table: their numbers (``meeting_no``, else ``meeting_id``), topics
    and times; a row without a usable number or start time is an error naming the row."""
    names = table.column_names
    number_column = "meeting_no" if "meeting_no" in names else "meeting_id"
    for needed in (number_column, "meeting_start_time"):
        if needed not in names:
            raise FeishuVCConfigError("meetings", f"the meeting list has no {needed} column (it has {names})")
    meetings, seen = [], set()
    for index, row in enumerate(table.to_pylist()):
        number = str(row.get(number_column) or "").strip()
        start, end = _seconds(row.get("meeting_start_time")), _seconds(row.get("meeting_end_time"))
        if not (len(number) == 9 and number.isdigit()) or start is None:
            raise FeishuVCConfigError(
                "meetings", f"row {index + 1} of the meeting list has no 9-digit meeting number and start time: {row}"
            )
        if number in seen:
            continue
        seen.add(number)
        meeting_id = str(row.get("meeting_id") or number)
        meetings.append(Meeting(number, meeting_id, row.get("meeting_topic"), start, end if end else start))
    return meetings


def _seconds(value: Any) -> int | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return int(value.timestamp())
    return int(value)
