"""Operators that start Feishu VC exports and download the finished files into the DAG's storage."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator

from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError, FeishuVCConfigError, FeishuVCError
from airflow_provider_feishu_vc.client.exports import (
    EXPORT_KINDS,
    build_export_body,
    get_export_kind,
    validate_file_token,
    validate_user_id_type,
)
from airflow_provider_feishu_vc.compat import conf
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.operators.destinations import Landed, LandsExportFiles
from airflow_provider_feishu_vc.operators.tries import (
    EXPORT_GONE_CODE,
    EarlierExport,
    fail_on_bad_input,
    forget,
    remember,
    request_fingerprint,
    reusable_export,
)

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_feishu_vc.client.api import ExportTask


#: Kinds whose query range defaults to the DAG run's data interval (start_time / end_time).
INTERVAL_DEFAULTED_KINDS = ("meeting_list", "resource_reservation_list")
#: Every export field of every kind, by Feishu's name, in the order the kinds list them.
EXPORT_FIELDS = tuple(dict.fromkeys(name for kind in EXPORT_KINDS.values() for name in kind.fields))
#: How long FeishuVCExportOperator waits for an export by default: Feishu's exports take seconds to minutes, and a
#: wait with no bound would retry a network that stays down (DNS, TLS, a proxy) for ever.
DEFAULT_EXPORT_TIMEOUT = timedelta(hours=6)


#: What starts a Jinja template in a string: such a value is known only when the task's fields are rendered.
JINJA_MARKS = ("{{", "{%", "{#")


def is_literal(value: Any) -> bool:
    """Whether an operator argument is final as written in the DAG file: no template, no XCom, nothing resolved
    at run time (only such values can be checked when the file is parsed)."""
    if isinstance(value, str):
        return not any(mark in value for mark in JINJA_MARKS)
    if isinstance(value, (list, tuple)):
        return all(is_literal(item) for item in value)
    return value is None or isinstance(value, (bool, int, float, date))


def check_when_built(task_id: str, check: Any, *args: Any) -> Any:
    """Run one of the client's validators on literal arguments as the operator is built (the DAG file is parsed):
    a mistake stops the file from loading, naming the field and the task, instead of failing its first run."""
    try:
        return check(*args)
    except FeishuVCConfigError as error:
        raise FeishuVCConfigError(error.field, f"{error.problem} (task {task_id!r})") from None


class FeishuVCCreateExportOperator(BaseOperator):
    """Start a Feishu VC export and return its ``export_task_id`` (XCom).

    Fields are Feishu's own names; each is validated before anything is sent. Times may be datetimes, pendulum
    values, ISO-8601 strings or unix seconds. For ``meeting_list`` and ``resource_reservation_list``,
    ``start_time`` / ``end_time`` default to the DAG run's data interval, so a ``@daily`` DAG exports exactly its day.

    :param export_type: ``meeting_list``, ``participant_list``, ``participant_quality_list`` or
        ``resource_reservation_list`` (templated).
    :param start_time: Range start (meeting_list, resource_reservation_list). Default: data interval start.
    :param end_time: Range end (meeting_list, resource_reservation_list). Default: data interval end.
    :param meeting_status: 1 in progress, 2 ended (Feishu's default), 3 upcoming (meeting_list, participant_list).
    :param meeting_no: 9-digit meeting number (filter for meeting_list; required for the participant kinds).
    :param user_id: A user (``ou_...``): a filter, or the participant for participant_quality_list.
    :param room_id: A room device (``omm_...``): a filter, or the participant for participant_quality_list.
    :param meeting_type: 1 all, 2 video meetings, 3 local screen casts (meeting_list).
    :param meeting_start_time: The meeting's start (participant kinds; to the minute for quality).
    :param meeting_end_time: The meeting's end (participant kinds).
    :param join_time: When the participant joined (participant_quality_list).
    :param room_level_id: Room level to export (resource_reservation_list, required).
    :param need_topic: Include meeting topics (resource_reservation_list).
    :param room_ids: Rooms to export, or to leave out with ``is_exclude`` (resource_reservation_list).
    :param is_exclude: Export the rooms *not* in ``room_ids`` (resource_reservation_list).
    :param user_id_type: ``open_id`` (default), ``union_id`` or ``user_id`` (not for resource_reservation_list).
    :param feishu_vc_conn_id: The ``feishu_vc`` connection.
    """

    template_fields: Sequence[str] = ("export_type", *EXPORT_FIELDS, "user_id_type")
    ui_color = "#3370ff"

    def __init__(
        self,
        *,
        export_type: str,
        start_time: Any = None,
        end_time: Any = None,
        meeting_status: int | None = None,
        meeting_no: str | None = None,
        user_id: str | None = None,
        room_id: str | None = None,
        meeting_type: int | None = None,
        meeting_start_time: Any = None,
        meeting_end_time: Any = None,
        join_time: Any = None,
        room_level_id: str | None = None,
        need_topic: bool | None = None,
        room_ids: list[str] | None = None,
        is_exclude: bool | None = None,
        user_id_type: str | None = None,
        feishu_vc_conn_id: str = FeishuVCHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.export_type = export_type
        self.start_time, self.end_time = start_time, end_time
        self.meeting_status, self.meeting_no, self.meeting_type = meeting_status, meeting_no, meeting_type
        self.user_id, self.room_id = user_id, room_id
        self.meeting_start_time, self.meeting_end_time, self.join_time = meeting_start_time, meeting_end_time, join_time
        self.room_level_id, self.need_topic, self.room_ids, self.is_exclude = (
            room_level_id, need_topic, room_ids, is_exclude,
        )  # fmt: skip
        self.user_id_type = user_id_type
        self.feishu_vc_conn_id = feishu_vc_conn_id
        self.check_literal_fields()

    def check_literal_fields(self) -> None:
        """Check every export argument given as a literal now, with the same validators a run uses; a templated
        one (or an XCom) is checked when rendered, before anything is sent. A range that defaults to the data
        interval is left for the run."""
        if not is_literal(self.export_type):
            return
        fields = {name: getattr(self, name) for name in EXPORT_FIELDS if getattr(self, name) is not None}
        pending = {name for name, value in fields.items() if not is_literal(value)}
        if self.export_type in INTERVAL_DEFAULTED_KINDS:
            pending |= {"start_time", "end_time"} - fields.keys()
        kind, _ = check_when_built(self.task_id, build_export_body, self.export_type, fields, pending)
        if is_literal(self.user_id_type):
            check_when_built(self.task_id, validate_user_id_type, kind, self.user_id_type)

    def export_fields(self, context: Context) -> dict[str, Any]:
        """The fields to send: the ones given, plus the data interval where the kind has a range."""
        fields = {name: getattr(self, name) for name in EXPORT_FIELDS if getattr(self, name) is not None}
        if self.export_type not in INTERVAL_DEFAULTED_KINDS or {"start_time", "end_time"} <= fields.keys():
            return fields
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if start is None or end is None or start >= end:
            missing = "start_time" if "start_time" not in fields else "end_time"
            raise FeishuVCConfigError(
                missing,
                f"is not given and the DAG run's data interval is empty ({start} to {end}). Pass start_time and "
                "end_time, or schedule the DAG with a timetable that has data intervals, e.g. "
                'CronDataIntervalTimetable("@daily", timezone=...) (Airflow 3\'s plain "@daily" has none unless '
                "[scheduler] create_cron_data_intervals is on). Import it from airflow.sdk (Airflow 3.2+), "
                "airflow.timetables.interval (3.1), or airflow_provider_feishu_vc.compat (either).",
            )
        fields.setdefault("start_time", start)
        fields.setdefault("end_time", end)
        return fields

    def execute(self, context: Context) -> str:
        hook = FeishuVCHook(self.feishu_vc_conn_id)
        try:
            fields, request = self.resolved_request(context, hook)
            resumed = reusable_export(hook, context, request, self.log)
            return (
                resumed[0].export_task_id if resumed is not None else self.start_export(context, hook, fields, request)
            )
        finally:
            hook.close()

    def post_execute(self, context: Context, result: Any = None) -> None:
        """The task succeeded: drop its state, so that clearing it starts a new export (Airflow 3.3 keeps task state
        across clears)."""
        forget(context)

    def resolved_request(self, context: Context, hook: FeishuVCHook, **more: Any) -> tuple[dict[str, Any], str]:
        """The fields to send, validated, and the fingerprint of the request (with ``more``, e.g. the destination)
        that tells a retry of the same request from a changed one."""
        try:
            fields = self.export_fields(context)
            resolved = hook.resolve_export(self.export_type, user_id_type=self.user_id_type, **fields)
        except FeishuVCConfigError as error:
            fail_on_bad_input(error)
        return fields, request_fingerprint(**resolved, **more)

    def start_export(self, context: Context, hook: FeishuVCHook, fields: dict[str, Any], request: str) -> str:
        """Create the export and remember it, with its request, for later tries of this task instance."""
        try:
            export_task_id = hook.create_export(self.export_type, user_id_type=self.user_id_type, **fields)
        except FeishuVCConfigError as error:
            fail_on_bad_input(error)
        remember(context, EarlierExport(export_task_id, request))
        self.log.info("Started Feishu %s export %s with %s", self.export_type, export_task_id, fields)
        return export_task_id


class FeishuVCDownloadExportOperator(LandsExportFiles, BaseOperator):
    """Download a finished Feishu VC export into storage, as Feishu's xlsx or as a typed table (Parquet, CSV);
    return the file's URI (XCom), or for a table ``{"uri", "format", "rows", "schema_fingerprint"}``.

    The file streams in constant memory and appears whole or not at all: straight to its key as one multipart
    upload on an object store, beside the target and moved into place elsewhere, checked against
    ``Content-Length``; a failed or killed download never leaves a partial file. The task emits an event on its
    asset outlet with the file's URI (and a table's format, rows and schema fingerprint) in the event's ``extra``,
    so downstream DAGs can be scheduled on new exports.

    :param file_token: The done export's ``file_token`` (templated), or the sensor's whole XCom value
        ``{"export_task_id", "file_token"}``.
    :param export_task_id: The export's id (templated), used for the fallback file name ``<id>.xlsx``.
    :param destination: An ``ObjectStoragePath`` or URI (``file://``, ``s3://``, ``memory://``...; templated).
        A folder (a string ending in ``/``, ``into_folder=True``, or an existing local folder) receives the file
        under Feishu's name, made safe. Default: ``<[feishu_vc] storage_base>/<dag_id>/<run_id>/``.
    :param storage_conn_id: Airflow connection for the destination's object store (as ObjectStoragePath takes it).
    :param overwrite: Replace an existing file; by default an existing file fails the task.
    :param into_folder: Take ``destination`` as a folder (True) or as the file itself (False), whatever it looks
        like: an ``ObjectStoragePath`` cannot end in ``/``, and an object store's prefix is no folder until it
        holds an object.
    :param output_format: ``xlsx`` (default: the file as Feishu made it), ``parquet`` or ``csv`` (a typed table,
        one schema per export kind; needs the ``tables`` extra). A table in a folder is named after Feishu's file,
        with the format's extension.
    :param export_type: The export's kind (templated), needed for ``parquet`` and ``csv``: it picks the column
        contract.
    :param table_timezone: Where a time written without an offset was local (the quality list's; default
        ``Asia/Shanghai``), for ``parquet`` and ``csv``.
    :param table_schema: ``evolve`` (default: a column the contract does not know is kept as text, with a warning)
        or ``freeze`` (such a column fails the task), for ``parquet`` and ``csv``.
    :param feishu_vc_conn_id: The ``feishu_vc`` connection.
    """

    template_fields: Sequence[str] = ("file_token", "destination", "export_task_id", "export_type")
    ui_color = "#3370ff"

    def __init__(
        self,
        *,
        file_token: str | Mapping[str, str],
        destination: str | ObjectStoragePath | None = None,
        export_task_id: str | None = None,
        storage_conn_id: str | None = None,
        overwrite: bool = False,
        into_folder: bool | None = None,
        output_format: str = "xlsx",
        export_type: str | None = None,
        table_timezone: str = "Asia/Shanghai",
        table_schema: str = "evolve",
        feishu_vc_conn_id: str = FeishuVCHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.file_token = file_token
        self.export_task_id = export_task_id
        self.export_type = export_type
        self.feishu_vc_conn_id = feishu_vc_conn_id
        self.take_destination(
            destination, storage_conn_id, overwrite, into_folder, output_format, table_timezone, table_schema
        )
        if isinstance(file_token, str) and is_literal(file_token):
            check_when_built(self.task_id, validate_file_token, file_token)
        if export_type is not None and is_literal(export_type):
            check_when_built(self.task_id, get_export_kind, export_type)
        elif export_type is None and output_format != "xlsx":
            raise FeishuVCConfigError(
                "export_type", f"is needed to read the file as a typed table (output_format={output_format!r}); "
                f"allowed: {', '.join(EXPORT_KINDS)} (task {self.task_id!r})",
            )  # fmt: skip

    def execute(self, context: Context) -> Landed:
        file_token, export_task_id = self.file_token, self.export_task_id
        if isinstance(file_token, Mapping):
            export_task_id = export_task_id or file_token.get("export_task_id")
            file_token = file_token.get("file_token", "")
        hook = FeishuVCHook(self.feishu_vc_conn_id)
        try:
            return self.land(context, hook, str(file_token), export_task_id, self.export_type)
        finally:
            hook.close()


class FeishuVCExportOperator(LandsExportFiles, FeishuVCCreateExportOperator):
    """Create a Feishu VC export, wait for it, and download its file into storage, in one task; return the
    file's URI (XCom) and announce it on the task's asset, as the download operator does.

    The wait defers to the triggerer (the sensor's trigger, sharing the triggerer's connection pool, token and
    rate budget) or polls in the worker; the download runs in the worker when the task resumes. A retry of the same
    request (same fields and destination) resumes the export an earlier try started (Airflow 3.3+, kept in the
    task's state store): a processing or done export is waited for and downloaded again, and a file an earlier try
    already landed is not fetched twice; a failed export, one Feishu no longer knows, or one whose file is gone
    (121004) is created anew. The state is dropped when the task succeeds, so clearing it exports again. Before
    Airflow 3.3 every try starts a new export.

    Takes every export field of :class:`FeishuVCCreateExportOperator` (same names, checks and data-interval
    defaults) and:

    :param destination: Where the file lands, as for :class:`FeishuVCDownloadExportOperator` (templated; default
        ``<[feishu_vc] storage_base>/<dag_id>/<run_id>/``, under Feishu's file name).
    :param storage_conn_id: Airflow connection for the destination's object store.
    :param overwrite: Replace an existing file; by default an existing file fails the task.
    :param into_folder: Take ``destination`` as a folder (True) or as the file itself (False).
    :param output_format: ``xlsx`` (default), ``parquet`` or ``csv``, as for
        :class:`FeishuVCDownloadExportOperator` (tables need the ``tables`` extra).
    :param table_timezone: For ``parquet`` / ``csv``: where a time without an offset was local (default
        ``Asia/Shanghai``).
    :param table_schema: For ``parquet`` / ``csv``: ``evolve`` (default) or ``freeze``.
    :param deferrable: Wait in the triggerer instead of a worker slot. Defaults to Airflow's
        ``[operators] default_deferrable``.
    :param poll_interval: Seconds between status checks.
    :param timeout: How long to wait for the export in all (seconds or ``timedelta``; default 6 hours; None waits
        for ever). A timed-out wait fails the try; a retry resumes the same export.
    """

    template_fields: Sequence[str] = (*FeishuVCCreateExportOperator.template_fields, "destination")

    def __init__(
        self,
        *,
        destination: str | ObjectStoragePath | None = None,
        storage_conn_id: str | None = None,
        overwrite: bool = False,
        into_folder: bool | None = None,
        output_format: str = "xlsx",
        table_timezone: str = "Asia/Shanghai",
        table_schema: str = "evolve",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        timeout: float | timedelta | None = DEFAULT_EXPORT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.take_destination(
            destination, storage_conn_id, overwrite, into_folder, output_format, table_timezone, table_schema
        )
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if self.poll_interval <= 0:
            raise FeishuVCConfigError("poll_interval", f"must be a positive number of seconds, not {poll_interval!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise FeishuVCConfigError("timeout", f"must be a positive number of seconds or None, not {timeout!r}")

    def execute(self, context: Context) -> Landed:  # type: ignore[override]  # the landed file, not the export id
        from airflow_provider_feishu_vc.client.api import ExportStatus

        hook = FeishuVCHook(self.feishu_vc_conn_id)
        try:
            fields, request = self.resolved_request(context, hook, **self.destination_parts(context))
            resumed = reusable_export(hook, context, request, self.log)
            task: ExportTask | None
            if resumed is not None:
                # A file an earlier try landed for it is taken in land(), once proven the very one (not merely
                # present at the URI: it may have been replaced since).
                earlier, task = resumed
                export_task_id = earlier.export_task_id
            else:
                self.check_destination(context)  # before Feishu builds an export for a file that cannot land
                export_task_id = self.start_export(context, hook, fields, request)
                # deferrable: one look, the trigger does the retrying
                task = hook.check_export(export_task_id, retries=0 if self.deferrable else None)
            deadline = None if self.timeout is None else time.time() + self.timeout
            while task is None or task.status is ExportStatus.PROCESSING:
                if self.deferrable:
                    self._defer(export_task_id, deadline)
                if deadline is not None and time.time() >= deadline:
                    raise FeishuVCError(f"Feishu export {export_task_id} was not done after {self.timeout:g} s")
                self.log.info("Feishu export %s is not done yet", export_task_id)
                time.sleep(self.poll_interval)
                task = hook.check_export(export_task_id)
            if task.status is ExportStatus.FAILED:
                raise task.failure()  # a retry starts a new export
            return self._land_and_keep(context, hook, str(task.file_token), export_task_id, request)
        finally:
            hook.close()

    def _land_and_keep(
        self, context: Context, hook: FeishuVCHook, file_token: str, export_task_id: str, request: str
    ) -> Landed:
        """Land the file; keep where it landed, so that a try that fails after this does not fetch it again."""
        try:
            landed = self.land(context, hook, file_token, export_task_id, self.export_type)
        except FeishuVCAPIError as error:
            if error.code == EXPORT_GONE_CODE:
                self.log.warning(
                    "The file of export %s is gone from Feishu: the next try starts a new export", export_task_id
                )
                forget(context)
            raise
        remember(context, EarlierExport(export_task_id, request, landed=landed))
        return landed

    def _defer(self, export_task_id: str, deadline: float | None) -> NoReturn:
        from airflow_provider_feishu_vc.triggers.feishu_vc import FeishuVCExportTrigger

        self.log.info("Feishu export %s is processing; deferring to the triggerer", export_task_id)
        self.defer(
            trigger=FeishuVCExportTrigger(
                export_task_id=export_task_id,
                feishu_vc_conn_id=self.feishu_vc_conn_id,
                poll_interval=self.poll_interval,
                deadline=deadline,
            ),
            method_name="execute_complete",
            kwargs={"export_task_id": export_task_id},
            timeout=None if self.timeout is None else timedelta(seconds=self.timeout),
        )

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, export_task_id: str = ""
    ) -> Landed:
        """Resume after the trigger fired: download the file of a done export; anything else fails the try."""
        from airflow_provider_feishu_vc.triggers.feishu_vc import SUCCESS, read_event

        outcome = read_event(event, export_task_id)
        if outcome.status != SUCCESS:
            # Not fail_task: a retry starts a new export after a failed one, and resumes this one otherwise.
            raise FeishuVCError(outcome.message)
        hook = FeishuVCHook(self.feishu_vc_conn_id)
        try:
            _, request = self.resolved_request(context, hook, **self.destination_parts(context))
            return self._land_and_keep(context, hook, str(outcome.file_token), outcome.export_task_id, request)
        finally:
            hook.close()
