"""Every meeting's participants in one table, from one task: ``FeishuVCMeetingParticipantsOperator``."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator

from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError, FeishuVCConfigError, FeishuVCError
from airflow_provider_feishu_vc.compat import conf, mask_secret
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook, as_storage_path
from airflow_provider_feishu_vc.hooks.user_token_store import VariableUserTokenStore
from airflow_provider_feishu_vc.operators.attendance_run import (
    GONE_CODE,
    CountingClient,
    Manifest,
    Meeting,
    MeetingExport,
    ParticipantsPipeline,
    PollTiming,
    RunOutcome,
    added_calls,
    copy_whole,
    write_whole,
)
from airflow_provider_feishu_vc.operators.attendance_table import IncrementalTable, meetings_of, merge_parts
from airflow_provider_feishu_vc.operators.destinations import (
    LandsExportFiles,
    default_storage_base,
    lineage_name,
    schema_facet,
    task_instance_folder,
)
from airflow_provider_feishu_vc.operators.tries import (
    abort_left_upload,
    fail_on_bad_input,
    forget_landing,
    landed_by_earlier_try,
    landing_witness,
    request_fingerprint,
    upload_journal,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_feishu_vc.client.api import ExportTask
    from airflow_provider_feishu_vc.hooks.landing import LandingWitness

TABLE_FORMATS = ("parquet", "csv")
#: Where the meetings that could not be exported land beside the table (``allow_partial=True``).
UNEXPORTED_SUFFIX = ".unexported.json"


class ParticipantsHook(FeishuVCHook):
    """The hook, with a client that counts its calls by API (the run reports calls per exported meeting)."""

    def get_conn(self) -> CountingClient:
        if self._client is None:
            store = VariableUserTokenStore.for_config(self.config)
            self._client = CountingClient(self.config, on_secret=mask_secret, token_store=store)
        assert isinstance(self._client, CountingClient)
        return self._client


class FeishuVCMeetingParticipantsOperator(BaseOperator):
    """Land the participants of every meeting of a data interval as ONE typed table (Parquet or CSV).

    The task exports the interval's meeting list (or reads one given as ``meetings``), then the participant list of
    each meeting, and lands one table: the participant contract's columns after the meeting's ``meeting_id``,
    ``meeting_no``, ``meeting_topic``, ``meeting_start_time`` and ``meeting_end_time``. The table appears whole or
    not at all; the task emits an event on its asset outlet and reports OpenLineage datasets, as the export
    operators do. It returns ``{"uri", "format", "rows", "schema_fingerprint", "meetings", "landed_meetings",
    "unexported", "calls", "calls_per_exported_meeting", "seconds"}``.

    Creates, status queries and downloads run at once, each at its own API's pace (Feishu allows 100 a minute of
    each per app; the budgets are the provider's shared ones); an export is first asked about after the build
    time learned from those done so far. Per-meeting tables are landed as parts in a hidden folder beside the
    table (``.<name>.parts/``, with a ``manifest.json`` of every export id), so a retry creates no export twice
    and lands no part twice; the folder is removed once the table has landed. The log reports created / ready /
    landed of N, calls spent and the expected finish every ``progress_interval`` seconds and at the end.

    ``deferrable=True``: the worker creates every export, then ONE trigger waits for them all (no worker slot while
    Feishu builds the files), and the resumed task downloads them; polling in the worker (the default) also
    downloads while later exports are still being built.

    :param destination: The table's path or URI (templated). Default:
        ``<[feishu_vc] storage_base>/<dag_id>/<run_id>/<task_id>/participants.<format>``.
    :param output_format: ``parquet`` (default) or ``csv``.
    :param meetings: The meeting list to use instead of exporting one (templated): a URI of a meeting-list file
        (xlsx as Feishu writes it, or a typed ``.parquet``), or the XCom of an export operator (``{"uri", ...}``).
    :param start_time: Start of the meeting list's range (default: the data interval's start).
    :param end_time: End of the range (default: the data interval's end).
    :param meeting_status: The meeting list's ``meeting_status`` filter (Feishu's default: ended meetings).
    :param user_id_type: ``open_id`` (default), ``union_id`` or ``user_id``.
    :param allow_partial: Land the table without the meetings Feishu cannot export (121004 no such meeting,
        121005 no permission), listing them in ``<table>.unexported.json`` beside it; by default they fail the
        task (after every other meeting's part has landed, so a retry only asks about them).
    :param overwrite: Replace an existing table; by default an existing table fails the task.
    :param storage_conn_id: Connection of the destination's object store.
    :param table_timezone: Where a time written without an offset was local (default ``Asia/Shanghai``).
    :param table_schema: ``evolve`` (default) or ``freeze``, as for the export operators.
    :param poll_interval: Seconds to the first status query until a build time has been learned (default 5).
    :param max_poll_interval: Longest pause between status queries of one export (default 60).
    :param export_attempts: Exports per meeting (and of the meeting list, per try) at most, when Feishu reports them
        failed or gone (default 3).
    :param progress_interval: Seconds between progress lines in the log (default 30).
    :param timeout: Seconds a try may wait for Feishu (default 6 hours; each resumption after a deferral anew); then
        the try fails, and a retry resumes.
    :param deferrable: Wait for the exports in the triggerer (default ``[operators] default_deferrable``).
    :param feishu_vc_conn_id: The ``feishu_vc`` connection.
    """

    template_fields: Sequence[str] = ("destination", "meetings", "start_time", "end_time", "user_id_type")
    ui_color = "#3370ff"

    def __init__(
        self,
        *,
        destination: str | ObjectStoragePath | None = None,
        output_format: str = "parquet",
        meetings: Any = None,
        start_time: Any = None,
        end_time: Any = None,
        meeting_status: int | None = None,
        user_id_type: str | None = None,
        allow_partial: bool = False,
        overwrite: bool = False,
        storage_conn_id: str | None = None,
        table_timezone: str = "Asia/Shanghai",
        table_schema: str = "evolve",
        poll_interval: float = 5.0,
        max_poll_interval: float = 60.0,
        export_attempts: int = 3,
        progress_interval: float = 30.0,
        timeout: float | None = 6 * 3600.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        feishu_vc_conn_id: str = FeishuVCHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if output_format not in TABLE_FORMATS:
            raise FeishuVCConfigError("output_format", f"is {output_format!r}; allowed: {', '.join(TABLE_FORMATS)}")
        if table_schema not in ("evolve", "freeze"):
            raise FeishuVCConfigError("table_schema", f"is {table_schema!r}; allowed: evolve, freeze")
        for name, value in (("poll_interval", poll_interval), ("max_poll_interval", max_poll_interval),
                            ("progress_interval", progress_interval)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise FeishuVCConfigError(name, f"must be a positive number of seconds, not {value!r}")
        if isinstance(export_attempts, bool) or not isinstance(export_attempts, int) or export_attempts < 1:
            raise FeishuVCConfigError(
                "export_attempts", f"must be a whole number of at least 1, not {export_attempts!r}"
            )
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise FeishuVCConfigError("timeout", f"must be a positive number of seconds or None, not {timeout!r}")
        self.destination = destination
        self.output_format = output_format
        self.meetings = meetings
        self.start_time, self.end_time, self.meeting_status = start_time, end_time, meeting_status
        self.user_id_type = user_id_type
        self.allow_partial = allow_partial
        self.overwrite = overwrite
        self.storage_conn_id = storage_conn_id
        self.table_timezone, self.table_schema = table_timezone, table_schema
        self.poll_interval, self.max_poll_interval = float(poll_interval), float(max_poll_interval)
        self.export_attempts = export_attempts
        self.progress_interval = float(progress_interval)
        self.timeout = timeout
        self.deferrable = deferrable
        self._table: IncrementalTable | None = None
        #: The fingerprint of this try's request (``_request``): what an earlier try's landed table is checked by.
        self._landing_request: str | None = None
        self.feishu_vc_conn_id = feishu_vc_conn_id
        if not self.outlets:
            in_dag = self.has_dag()  # type: ignore[no-untyped-call,unused-ignore]  # not annotated in Airflow
            self.outlets = [LandsExportFiles.export_asset(self.dag_id if in_dag else "", self.task_id)]

    # -- where -----------------------------------------------------------------------------------------------

    def target(self, context: Context) -> ObjectStoragePath:
        destination = self.destination
        if destination is None:
            folder = task_instance_folder(context, self.dag_id, self.task_id)
            destination = f"{default_storage_base()}/{folder}/participants.{self.output_format}"
        return as_storage_path(destination, conn_id=self.storage_conn_id)

    def meeting_list_fields(self, context: Context) -> dict[str, Any]:
        fields: dict[str, Any] = {"start_time": self.start_time, "end_time": self.end_time}
        if fields["start_time"] is None or fields["end_time"] is None:
            start, end = context.get("data_interval_start"), context.get("data_interval_end")
            if start is None or end is None or start >= end:
                raise FeishuVCConfigError(
                    "start_time", f"is not given and the DAG run's data interval is empty ({start} to {end})"
                )
            fields["start_time"] = fields["start_time"] if fields["start_time"] is not None else start
            fields["end_time"] = fields["end_time"] if fields["end_time"] is not None else end
        if self.meeting_status is not None:
            fields["meeting_status"] = self.meeting_status
        return fields

    # -- the task --------------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_feishu_vc.hooks.landing import refuse_existing
        from airflow_provider_feishu_vc.tables import start_sheet_reader

        if self.meetings is None or not self.deferrable:  # this try reads a sheet: the meeting list, or the parts
            start_sheet_reader()  # it warms up while the meeting list is exported
        hook = ParticipantsHook(self.feishu_vc_conn_id)
        try:
            try:
                target = self.target(context)
                list_request = None
                if self.meetings is None:
                    list_request = hook.resolve_export("meeting_list", **self.meeting_list_fields(context))
                self._landing_request = self._request(target, list_request)
                earlier = landed_by_earlier_try(context, self._landing_request, self.storage_conn_id, self.log)
                if isinstance(earlier, dict) and earlier.get("unexported") and not self.allow_partial:
                    # allow_partial is no part of the request (changing it re-creates no export): checked here
                    raise _partial_table_refused(
                        earlier["unexported"], earlier.get("meetings"),
                        f" An earlier try landed {target} without them, when partial tables were allowed.",
                    )  # fmt: skip
                if isinstance(earlier, dict):
                    self.log.info("%s was landed by an earlier try of this same request: kept", target)
                    _remove(target.parent / f".{target.name}.parts")  # that try may have been lost before it could
                    _remove_partial_tables(target)
                    self._land_unexported(target, earlier.get("unexported") or [])  # lost before it could, too
                    return earlier
                refuse_existing(target, self.overwrite)
            except FeishuVCConfigError as error:
                fail_on_bad_input(error)
            parts = target.parent / f".{target.name}.parts"
            manifest = Manifest(parts, self._request(target, list_request))
            if manifest.load():
                self.log.info("Resuming from %s: %d exports kept by an earlier try", manifest.path,
                              len(manifest.exports))  # fmt: skip
                _remove_partial_tables(target)
            elif parts.exists():
                self.log.info("Removing %s: an earlier try's parts for another request", parts)
                _remove(parts)
            client = hook.get_conn()
            earlier_calls = manifest.earlier_calls()  # the run's calls so far: the earlier tries kept them
            manifest.count_calls = lambda: added_calls(client.spent(), earlier_calls)
            timing = self._timing()
            deadline = None if self.timeout is None else time.monotonic() + float(self.timeout)
            if manifest.meetings is None:
                manifest.meetings = self.read_meetings(hook, client, manifest, list_request, timing, deadline)
                manifest.save()
            self.log.info("%d meetings to export the participants of", len(manifest.meetings))
            pipeline = self._pipeline(
                hook, client, manifest, parts, timing, poll=not self.deferrable, deadline=deadline,
                earlier_calls=earlier_calls,
            )  # fmt: skip
            outcome = pipeline.run()
            waiting = pipeline.waiting()
            if waiting:  # deferrable: every export is created; one trigger waits for them all
                self.log.info("Deferring: one trigger waits for %d exports", len(waiting))
                from airflow_provider_feishu_vc.triggers.attendance import FeishuVCExportsTrigger

                manifest.spent = {"calls": outcome.calls, "seconds": outcome.seconds, "deferred_at": time.time()}
                manifest.save()
                self.defer(
                    trigger=FeishuVCExportsTrigger(
                        exports=waiting, feishu_vc_conn_id=self.feishu_vc_conn_id, poll_interval=self.poll_interval,
                        max_poll_interval=self.max_poll_interval, learned=timing.learned[-64:],
                        deadline=None if self.timeout is None else time.time() + float(self.timeout),
                        progress_interval=self.progress_interval,
                    ),
                    method_name="execute_complete",
                )  # fmt: skip
            return self.finish(context, hook, target, parts, outcome)
        finally:
            hook.close()
            self._drop_table()

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: download every export it saw done, export again those it saw fail."""
        from airflow_provider_feishu_vc.triggers.feishu_vc import SUCCESS

        if not isinstance(event, dict) or event.get("status") != SUCCESS:
            message = event.get("message") if isinstance(event, dict) else event
            raise FeishuVCError(f"Waiting for the participant exports failed: {message}")
        hook = ParticipantsHook(self.feishu_vc_conn_id)
        try:
            target = self.target(context)
            list_request = None
            if self.meetings is None:
                list_request = hook.resolve_export("meeting_list", **self.meeting_list_fields(context))
            parts = target.parent / f".{target.name}.parts"
            self._landing_request = self._request(target, list_request)
            manifest = Manifest(parts, self._landing_request)
            if not manifest.load() or manifest.meetings is None:
                raise FeishuVCError(f"the manifest {manifest.path} of the exports is gone; a retry starts afresh")
            spent = manifest.spent
            earlier = manifest.earlier_calls()
            earlier["status"] = earlier.get("status", 0) + int(event.get("polls") or 0)
            timing = self._timing()
            timing.learned.extend(float(seconds) for seconds in event.get("learned") or [])
            pipeline = self._pipeline(
                hook, hook.get_conn(), manifest, parts, timing, poll=True, done=dict(event.get("done") or {}),
                failed=dict(event.get("failed") or {}), earlier_calls=earlier,
                deadline=None if self.timeout is None else time.monotonic() + float(self.timeout),
            )  # fmt: skip
            outcome = pipeline.run()
            deferred_at = float(spent.get("deferred_at") or time.time())
            outcome.seconds = float(spent.get("seconds") or 0.0) + (time.time() - deferred_at)
            return self.finish(context, hook, target, parts, outcome)
        finally:
            hook.close()
            self._drop_table()

    def post_execute(self, context: Context, result: Any = None) -> None:
        """The task succeeded: drop the table it kept for later tries, so that clearing it lands anew."""
        forget_landing(context)
        super().post_execute(context, result)

    def _drop_table(self) -> None:
        """Discard the table being written when the try ends without landing it."""
        table, self._table = self._table, None
        if table is not None:
            table.discard()

    def _request(self, target: ObjectStoragePath, list_request: dict[str, Any] | None) -> str:
        """What tells this run's exports from another's: a retry of the same request resumes them."""
        return request_fingerprint(
            meeting_list=list_request, meetings=_source_text(self.meetings), user_id_type=self.user_id_type,
            target=str(target), output_format=self.output_format, timezone=self.table_timezone,
            schema=self.table_schema,
        )  # fmt: skip

    def _timing(self) -> PollTiming:
        return PollTiming(self.poll_interval, min(1.0, self.poll_interval), self.max_poll_interval)

    def _pipeline(
        self, hook: ParticipantsHook, client: CountingClient, manifest: Manifest, parts: ObjectStoragePath,
        timing: PollTiming, **options: Any,
    ) -> ParticipantsPipeline:  # fmt: skip
        landed_parts = self._landed_parts(parts)
        if options.get("poll", True):
            self._table = IncrementalTable(self.output_format)
            assert manifest.meetings is not None
            for meeting in manifest.meetings:
                if meeting.meeting_no in landed_parts:
                    with (parts / f"{meeting.meeting_no}.parquet").open("rb") as handle:
                        self._table.add_file(handle, meeting)
        return ParticipantsPipeline(
            client, manifest, landed_parts,
            lambda export, token: self._land_part(hook, parts, export, token),
            user_id_type=self.user_id_type, timing=timing, export_attempts=self.export_attempts,
            progress_every=self.progress_interval, log=self.log, **options,
        )  # fmt: skip

    def read_meetings(
        self,
        hook: ParticipantsHook,
        client: CountingClient,
        manifest: Manifest,
        list_request: dict[str, Any] | None,
        timing: PollTiming,
        deadline: float | None,
    ) -> list[Meeting]:
        """The meetings: from ``meetings``, or from a meeting_list export of the range (its id kept in the
        manifest, so that a retry waits for the same export)."""
        import pyarrow.parquet as pq

        from airflow_provider_feishu_vc.tables import read_export

        if list_request is None:
            source = self.meetings.get("uri") if isinstance(self.meetings, Mapping) else self.meetings
            if not source:
                raise FeishuVCConfigError("meetings", f"must be a URI or an export operator's XCom, not {source!r}")
            path = as_storage_path(source, conn_id=self.storage_conn_id)
            if path.name.endswith(".parquet"):
                with path.open("rb") as handle:
                    return meetings_of(pq.read_table(handle))
            return meetings_of(read_export(path, "meeting_list", timezone=self.table_timezone))
        from airflow_provider_feishu_vc.client.api import ExportStatus

        fields = {**list_request["body"]}
        creates, problem = 0, ""
        with tempfile.TemporaryDirectory(prefix="feishu-vc-meetings-") as folder:
            while True:
                if manifest.meeting_list_export is None:
                    if creates >= self.export_attempts:
                        raise FeishuVCError(f"the meeting list was exported {creates} times; the last {problem}")
                    creates += 1
                    manifest.meeting_list_export = client.create_export("meeting_list", **fields)
                    manifest.save()
                    self.log.info("Started the meeting list export %s", manifest.meeting_list_export)
                try:
                    task = self._wait_for_meeting_list(hook, manifest.meeting_list_export, timing, deadline)
                    if task.status is ExportStatus.DONE:
                        workbook = hook.download_export(str(task.file_token), f"{folder}/", into_folder=True)
                        return meetings_of(read_export(workbook.path, "meeting_list", timezone=self.table_timezone))
                    problem = f"failed ({task.fail_msg or 'no reason given'})"
                except FeishuVCAPIError as error:  # Feishu forgot the export, or its file expired: it never returns
                    if error.code != GONE_CODE:
                        raise
                    problem = f"is gone ({error})"
                self.log.warning("The meeting list export %s %s; exporting it again", manifest.meeting_list_export,
                                 problem)  # fmt: skip
                manifest.meeting_list_export = None
                manifest.save()

    @staticmethod
    def _wait_for_meeting_list(
        hook: ParticipantsHook, export_task_id: str, timing: PollTiming, deadline: float | None
    ) -> ExportTask:
        """The meeting list export's state once it is done or failed (learning its build time when done)."""
        from airflow_provider_feishu_vc.client.api import ExportStatus

        started, polls, last_processing = time.monotonic(), 0, 0.0
        time.sleep(timing.first())
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise FeishuVCError(f"the meeting list export {export_task_id} took too long")
            polls += 1
            task = hook.check_export(export_task_id)
            age = time.monotonic() - started
            if task is not None and task.status is not ExportStatus.PROCESSING:
                break
            last_processing = age
            time.sleep(timing.again(age))
        if task.status is ExportStatus.DONE:
            timing.learned.append((last_processing + age) / 2 if polls > 1 else age)
        return task

    @staticmethod
    def _landed_parts(parts: ObjectStoragePath) -> set[str]:
        if not parts.exists():
            return set()
        return {entry.name.removesuffix(".parquet") for entry in parts.iterdir() if entry.name.endswith(".parquet")}

    def _land_part(self, hook: ParticipantsHook, parts: ObjectStoragePath, export: MeetingExport, token: str) -> int:
        """Download one meeting's file, type it, and land it as ``<meeting_no>.parquet`` in the parts folder."""
        from airflow_provider_feishu_vc.tables import convert_export

        folder = tempfile.mkdtemp(prefix="feishu-vc-participants-")
        try:
            workbook = hook.download_export(token, f"{folder}/", into_folder=True)
            rows, _ = convert_export(workbook.path, "participant_list", f"{folder}/part.parquet", "parquet",
                                     timezone=self.table_timezone, schema=self.table_schema)  # fmt: skip
            copy_whole(f"{folder}/part.parquet", parts / f"{export.meeting.meeting_no}.parquet")
            if self._table is not None:
                self._table.add_file(f"{folder}/part.parquet", export.meeting)
            return rows
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # -- the table -------------------------------------------------------------------------------------------

    def finish(
        self, context: Context, hook: ParticipantsHook, target: ObjectStoragePath, parts: ObjectStoragePath,
        outcome: RunOutcome,
    ) -> dict[str, Any]:  # fmt: skip
        """Land the table (or fail, listing the meetings that could not be exported); announce it; clean up."""
        from airflow_provider_feishu_vc.hooks.landing import noting
        from airflow_provider_feishu_vc.tables import schema_fingerprint

        unexported = [_unexported(export) for export in outcome.exports if export.stage != "landed"]
        landed = [export for export in outcome.exports if export.stage == "landed"]
        if unexported and not self.allow_partial:
            raise _partial_table_refused(unexported, len(outcome.exports))
        recorded = landing_witness(context, self._landing_request) if self._landing_request else None

        def witness(rows: int, schema: pa.Schema) -> LandingWitness | None:
            """What a retry needs to keep this table if the try ends after it landed (the task's state)."""
            table = {
                "format": self.output_format, "rows": rows, "schema_fingerprint": schema_fingerprint(schema),
                "meetings": len(outcome.exports), "landed_meetings": len(landed), "unexported": unexported,
            }  # fmt: skip
            return noting(recorded, table=table)

        # A table over one part goes to S3 as a multipart upload: its id is kept per try, so that the next try
        # aborts what a killed one left open (its parts are billed until then).
        abort_left_upload(context, self.storage_conn_id, self.log)
        journal = upload_journal(context)
        table, self._table = self._table, None
        if table is not None and table.holds({export.meeting.meeting_no for export in landed}):
            rows, schema = table.land(target, self.overwrite, witness, journal)
        else:  # a part with columns the contract does not know: merge the parts again, in a schema for all
            if table is not None:
                table.discard()
            rows, schema = merge_parts(target, parts, landed, self.output_format, self.overwrite, witness, journal)
        self._land_unexported(target, unexported)
        total_calls = sum(outcome.calls.values())
        fingerprint = schema_fingerprint(schema)
        result: dict[str, Any] = {
            "uri": str(target), "format": self.output_format, "rows": rows,
            "schema_fingerprint": fingerprint, "meetings": len(outcome.exports),
            "landed_meetings": len(landed), "unexported": unexported, "calls": outcome.calls,
            "calls_per_exported_meeting": round(total_calls / len(landed), 3) if landed else None,
            "seconds": round(outcome.seconds, 3),
        }  # fmt: skip
        self.log.info("Landed %d participants of %d meetings at %s; %d calls, %s per exported meeting", rows,
                      len(landed), target, total_calls, result["calls_per_exported_meeting"])  # fmt: skip
        self._lineage = (hook.config.base_url, target, schema)
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = {
                    "uri": str(target), "format": self.output_format, "rows": rows,
                    "schema_fingerprint": fingerprint, "meetings": len(outcome.exports),
                }  # fmt: skip
        _remove(parts)
        return result

    def _land_unexported(self, target: ObjectStoragePath, unexported: list[dict[str, Any]]) -> None:
        """Land the list of the meetings that could not be exported beside the table (``allow_partial``)."""
        if unexported:
            side = target.parent / f"{target.name}{UNEXPORTED_SUFFIX}"
            write_whole(side, json.dumps(unexported, ensure_ascii=False, indent=1).encode())
            self.log.warning("%d meetings could not be exported; listed in %s", len(unexported), side)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: Feishu's meeting and participant exports as inputs, the table (with its schema) as output."""
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        lineage = getattr(self, "_lineage", None)
        if lineage is None:
            return OperatorLineage()
        api_origin, target, schema = lineage
        inputs = [Dataset(namespace=api_origin, name=f"open-apis/vc/v1/exports/{kind}")
                  for kind in ("meeting_list", "participant_list")]  # fmt: skip
        return OperatorLineage(
            inputs=inputs, outputs=[Dataset(*lineage_name(target), facets={"schema": schema_facet(schema)})]
        )


def _partial_table_refused(unexported: list[dict[str, Any]], meetings: Any, more: str = "") -> FeishuVCError:
    """The error of a table that lacks meetings Feishu could not export, while partial tables are not allowed."""
    listed = ", ".join(f"{item.get('meeting_no')} ({item.get('problem')})" for item in unexported[:20])
    return FeishuVCError(
        f"{len(unexported)} of {meetings} meetings could not be exported: {listed}"
        f"{' ...' if len(unexported) > 20 else ''}.{more} Pass allow_partial=True to land the table without them."
    )


def _source_text(meetings: Any) -> Any:
    if isinstance(meetings, Mapping):
        return meetings.get("uri")
    return None if meetings is None else str(meetings)


def _unexported(export: MeetingExport) -> dict[str, Any]:
    meeting = export.meeting
    return {"meeting_no": meeting.meeting_no, "meeting_topic": meeting.topic, "meeting_start_time": meeting.start,
            "meeting_end_time": meeting.end, "code": export.code, "problem": export.problem or export.stage,
            "export_task_id": export.export_task_id}  # fmt: skip


def _remove(folder: ObjectStoragePath) -> None:
    """Remove the parts folder (the table has landed: nothing in it is needed again)."""
    from airflow_provider_feishu_vc.operators.attendance_run import is_local

    if is_local(folder):
        shutil.rmtree(folder.path, ignore_errors=True)
    elif folder.exists():
        folder.fs.rm(folder.path, recursive=True)


def _remove_partial_tables(target: ObjectStoragePath) -> None:
    """Remove the hidden ``.<name>.<id>.part`` files of the table beside it: an earlier try of this same request
    was lost while it landed the table (a try that fails removes its own; a lost one cannot)."""
    import re

    from airflow_provider_feishu_vc.hooks.landing import is_object_store

    if is_object_store(target) or not target.parent.exists():  # an object store's upload shows nothing until done
        return
    partial = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{12}}\.part")
    for entry in target.parent.iterdir():
        if partial.fullmatch(entry.name):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
