"""Operators that start Feishu VC exports and download the finished files into the DAG's storage."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import Asset, BaseOperator

from airflow_provider_feishu_vc.client.errors import FeishuVCConfigError
from airflow_provider_feishu_vc.client.exports import EXPORT_KINDS
from airflow_provider_feishu_vc.compat import conf, fail_task
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook, as_storage_path

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

#: Kinds whose query range defaults to the DAG run's data interval (start_time / end_time).
INTERVAL_DEFAULTED_KINDS = ("meeting_list", "resource_reservation_list")
#: Every export field of every kind, by Feishu's name, in the order the kinds list them.
EXPORT_FIELDS = tuple(dict.fromkeys(name for kind in EXPORT_KINDS.values() for name in kind.fields))


def _fail_on_bad_input(error: Exception) -> NoReturn:
    """Bad input will not fix itself on retry: fail the task at once, keeping the message that names the field."""
    fail_task(str(error), cause=error)


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
                "[scheduler] create_cron_data_intervals is on).",
            )
        fields.setdefault("start_time", start)
        fields.setdefault("end_time", end)
        return fields

    def execute(self, context: Context) -> str:
        try:
            fields = self.export_fields(context)
            export_task_id = FeishuVCHook(self.feishu_vc_conn_id).create_export(
                self.export_type, user_id_type=self.user_id_type, **fields
            )
        except FeishuVCConfigError as error:
            _fail_on_bad_input(error)
        self.log.info("Started Feishu %s export %s with %s", self.export_type, export_task_id, fields)
        return export_task_id


def default_storage_base() -> str:
    """``[feishu_vc] storage_base``, or a ``feishu_vc_exports`` folder under AIRFLOW_HOME."""
    base = conf.get("feishu_vc", "storage_base", fallback="") or ""
    if base:
        return base.rstrip("/")
    home = os.environ.get("AIRFLOW_HOME") or conf.get("core", "airflow_home", fallback="") or "~/airflow"
    return "file://" + os.path.abspath(os.path.expanduser(home)) + "/feishu_vc_exports"


class FeishuVCDownloadExportOperator(BaseOperator):
    """Download a finished Feishu VC export into object storage; return the file's URI (XCom).

    The file streams in constant memory to a temporary name beside the target, is checked against
    ``Content-Length`` and moved into place only when complete, so a failed or killed download never leaves a
    partial file. The task emits an event on its asset outlet with the file's URI in the event's ``extra``, so
    downstream DAGs can be scheduled on new exports.

    :param file_token: The done export's ``file_token`` (templated), or the sensor's whole XCom value
        ``{"export_task_id", "file_token"}``.
    :param destination: An ``ObjectStoragePath`` or URI (``file://``, ``s3://``, ``memory://``...; templated).
        A value ending in ``/`` (or an existing folder) receives the file under Feishu's name. Default:
        ``<[feishu_vc] storage_base>/<dag_id>/<run_id>/``.
    :param export_task_id: The export's id (templated), used for the fallback file name ``<id>.xlsx``.
    :param storage_conn_id: Airflow connection for the destination's object store (as ObjectStoragePath takes it).
    :param overwrite: Replace an existing file; by default an existing file fails the task.
    :param feishu_vc_conn_id: The ``feishu_vc`` connection.
    """

    template_fields: Sequence[str] = ("file_token", "destination", "export_task_id")
    ui_color = "#3370ff"

    def __init__(
        self,
        *,
        file_token: str | Mapping[str, str],
        destination: str | ObjectStoragePath | None = None,
        export_task_id: str | None = None,
        storage_conn_id: str | None = None,
        overwrite: bool = False,
        feishu_vc_conn_id: str = FeishuVCHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.file_token = file_token
        self.destination = destination
        self.export_task_id = export_task_id
        self.storage_conn_id = storage_conn_id
        self.overwrite = overwrite
        self.feishu_vc_conn_id = feishu_vc_conn_id
        if not self.outlets:
            self.outlets = [self.export_asset(self.dag_id if self.has_dag() else "", self.task_id)]

    @staticmethod
    def export_asset(dag_id: str, task_id: str) -> Asset:
        """The asset a download task updates: one per DAG and task, whatever the file's path."""
        return Asset(name=f"feishu_vc_export.{dag_id}.{task_id}", uri=f"feishu-vc://exports/{dag_id}/{task_id}")

    def _target(self, context: Context) -> tuple[ObjectStoragePath, bool | None]:
        """Where to write, and whether that is a folder (None: let the hook look)."""
        destination = self.destination
        if destination is None:
            destination = f"{default_storage_base()}/{self.dag_id}/{context['run_id']}/"
        into_folder = True if isinstance(destination, str) and destination.endswith("/") else None
        return as_storage_path(destination, conn_id=self.storage_conn_id), into_folder

    def execute(self, context: Context) -> str:
        file_token, export_task_id = self.file_token, self.export_task_id
        if isinstance(file_token, Mapping):
            export_task_id = export_task_id or file_token.get("export_task_id")
            file_token = file_token.get("file_token", "")
        target, into_folder = self._target(context)
        fallback = f"{export_task_id}.xlsx" if export_task_id else "feishu_vc_export.xlsx"
        try:
            landed = FeishuVCHook(self.feishu_vc_conn_id).download_export(
                str(file_token), target, into_folder=into_folder, overwrite=self.overwrite, fallback_name=fallback
            )
        except FeishuVCConfigError as error:
            _fail_on_bad_input(error)
        uri = str(landed)
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = {"uri": uri, "export_task_id": export_task_id}
        self.log.info("Feishu export file is at %s", uri)
        return uri
