"""What one try of an export task leaves for the next: the export it started, the request it was for, and the file
it landed, kept in Airflow's task state (3.3+; see ``compat.task_state``), so that a retry resumes instead of
starting over, and only a retry of the same request.

- A try keeps ``{"export_task_id", "request", "landed"}`` under :data:`EXPORT_KEY`, where ``request`` is a
  fingerprint of what the export is for (kind, resolved fields, ``user_id_type``, and for the one-task operator the
  destination). A later try whose request differs (a field or the destination changed before a clear) starts anew.
- The task's state is dropped when the task succeeds (``post_execute``), so clearing a successful task exports
  again, and when Feishu no longer has the export or its file (121004), so the next try does not ask again.
- Just before a file becomes visible at its destination, the try keeps ``{"request", "uri", "identity"[, "table"]}``
  under :data:`LANDING_KEY` (``request``: the export's file token and id, kind, and the resolved destination). A
  later try of the same request whose file is there, the very one (``hooks.landing.holds``: same size and SHA-256,
  or on S3 the same ETag), takes it as landed, so that a try that failed or was killed after its file landed under
  a fixed name is retried into success, not into "already exists"; any other file there is still refused. Dropped
  when the task succeeds, as the export is.
- What release 0.1.0 kept (an export id without its request) is never resumed, and is deleted when seen.
- While a file is uploaded to S3, its multipart upload's id is kept under ``<OPEN_UPLOAD_KEY>.<try_number>`` (one
  key per try) until the upload is completed or aborted; a try killed in between (``kill -9``, a lost worker)
  leaves it, and the next try aborts the uploads every earlier try left before it lands the file again, so that no
  orphaned parts stay in the bucket. A key per try: a zombie try that ends its upload never drops the retry's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError
from airflow_provider_feishu_vc.compat import fail_task, task_state

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_feishu_vc.client.api import ExportTask
    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
    from airflow_provider_feishu_vc.hooks.landing import LandingWitness, UploadJournal


class TaskLog(Protocol):
    """What these helpers log through: a task's ``self.log``."""

    def info(self, message: str, /, *args: Any) -> Any: ...

    def warning(self, message: str, /, *args: Any) -> Any: ...


#: The task-state key (Airflow 3.3+) of the export a try started, kept across the tries of one task instance.
EXPORT_KEY = "feishu_vc_export"
#: What release 0.1.0 kept: an export id and a landed file, without the request they were for.
LEGACY_KEYS = ("feishu_vc_export_task_id", "feishu_vc_landed_file")
#: The task-state key of an S3 multipart upload begun and not yet completed or aborted: ``{"uri", "upload_id"}``.
OPEN_UPLOAD_KEY = "feishu_vc_open_upload"
#: The task-state key of the file a try is landing, written just before it becomes visible.
LANDING_KEY = "feishu_vc_landing"
#: Feishu's "data not exist": the export id is unknown, or its file expired.
EXPORT_GONE_CODE = 121004


@dataclass(frozen=True)
class EarlierExport:
    """An export an earlier try of this task instance started for ``request``, and where its file landed (if it
    did)."""

    export_task_id: str
    request: str
    #: What the try that landed the file returned: its URI, or a typed table's ``{"uri", ...}``.
    landed: str | dict[str, Any] | None = None


def request_fingerprint(**parts: Any) -> str:
    """A short fingerprint of what an export is for: the same parts give the same fingerprint in every process."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def fail_on_bad_input(error: Exception) -> NoReturn:
    """Bad input will not fix itself on retry: fail the task at once, keeping the message that names the field."""
    fail_task(str(error), cause=error)


def recall(context: Context, request: str, log: TaskLog) -> EarlierExport | None:
    """The export an earlier try of this task instance kept for this same ``request`` (None otherwise)."""
    state = task_state(context)
    if state is None:
        return None
    for key in LEGACY_KEYS:
        if state.get(key) is not None:
            log.info("Dropping %s kept by an earlier release (it does not say which request it was for)", key)
            state.delete(key)
    kept = state.get(EXPORT_KEY)
    if not isinstance(kept, dict) or not isinstance(kept.get("export_task_id"), str):
        return None
    if kept.get("request") != request:
        log.warning(
            "Export %s of an earlier try was for another request (a field or the destination changed since); "
            "starting a new one",
            kept["export_task_id"],
        )
        state.delete(EXPORT_KEY)
        return None
    landed = kept.get("landed")
    return EarlierExport(kept["export_task_id"], request, landed if isinstance(landed, (str, dict)) else None)


def remember(context: Context, export: EarlierExport) -> None:
    state = task_state(context)
    if state is not None:
        state.set(EXPORT_KEY, asdict(export))


def forget(context: Context) -> None:
    """Drop what this task instance kept: its export is done with, or gone."""
    state = task_state(context)
    if state is not None:
        state.delete(EXPORT_KEY)


def reusable_export(
    hook: FeishuVCHook, context: Context, request: str, log: TaskLog
) -> tuple[EarlierExport, ExportTask] | None:
    """The export an earlier try of this task instance started for the same request, with its state, while
    Feishu still has it and it has not failed (Airflow 3.3+; before 3.3 every try starts afresh)."""
    from airflow_provider_feishu_vc.client.api import ExportStatus

    earlier = recall(context, request, log)
    if earlier is None:
        return None
    try:
        task = hook.get_export(earlier.export_task_id)
    except FeishuVCAPIError as error:
        if error.code != EXPORT_GONE_CODE:
            raise
        log.warning(
            "Export %s of an earlier try is gone from Feishu (%s); starting a new one", earlier.export_task_id, error
        )
        forget(context)
        return None
    if task.status is ExportStatus.FAILED:
        log.warning(
            "Export %s of an earlier try failed (%s); starting a new one", earlier.export_task_id, task.fail_msg
        )
        forget(context)
        return None
    log.info("Resuming export %s, started by an earlier try (%s)", earlier.export_task_id, task.status.name.lower())
    return earlier, task


def _try_number(context: Context) -> int | None:
    number = getattr(context.get("ti"), "try_number", None)
    return number if isinstance(number, int) and not isinstance(number, bool) and number > 0 else None


def open_upload_key(try_number: int | None) -> str:
    """The task-state key of the upload one try keeps open (:data:`OPEN_UPLOAD_KEY` alone when the try is unknown,
    as release 0.2 kept it)."""
    return OPEN_UPLOAD_KEY if try_number is None else f"{OPEN_UPLOAD_KEY}.{try_number}"


def upload_journal(context: Context) -> UploadJournal | None:
    """What keeps an upload's id in the task's state while the upload is open, under this try's own key (None
    before Airflow 3.3)."""
    state = task_state(context)
    if state is None:
        return None
    key = open_upload_key(_try_number(context))

    def keep(target: ObjectStoragePath, upload_id: str | None) -> None:
        if upload_id is None:
            state.delete(key)
        else:
            state.set(key, {"uri": str(target), "upload_id": upload_id})

    return keep


def abort_left_upload(context: Context, storage_conn_id: str | None, log: TaskLog) -> None:
    """Abort the S3 uploads earlier tries of this task instance began and never ended (they were killed)."""
    state = task_state(context)
    if state is None:
        return
    current = _try_number(context)
    earlier = [None] if current is None else [None, *range(1, current)]
    for try_number in earlier:
        _abort_kept_upload(state, open_upload_key(try_number), storage_conn_id, log)


def _abort_kept_upload(state: Any, key: str, storage_conn_id: str | None, log: TaskLog) -> None:
    kept = state.get(key)
    if kept is None:
        return
    if isinstance(kept, dict) and isinstance(kept.get("uri"), str) and isinstance(kept.get("upload_id"), str):
        from airflow_provider_feishu_vc.hooks.feishu_vc import as_storage_path
        from airflow_provider_feishu_vc.hooks.s3_upload import abort_upload

        target = as_storage_path(kept["uri"], conn_id=storage_conn_id)
        try:
            aborted = abort_upload(target, kept["upload_id"])
        except OSError as error:  # the store refused: the parts cost money, the landing is still right
            log.warning("Could not abort the upload an earlier try left open at %s: %s", kept["uri"], error)
            return
        if aborted:
            log.info("Aborted the upload to %s an earlier try began and never ended (it was killed)", kept["uri"])
    state.delete(key)


def landing_request(
    file_token: str, export_task_id: str | None, export_type: str | None, destination: dict[str, Any]
) -> str:
    """The fingerprint of one landing: which export's file, as what, where (``destination_parts``)."""
    return request_fingerprint(
        file_token=file_token, export_task_id=export_task_id, export_type=export_type, **destination
    )


def landing_witness(context: Context, request: str) -> LandingWitness | None:
    """What keeps, in the task's state, the file a try is about to land for ``request`` (None before 3.3)."""
    state = task_state(context)
    if state is None:
        return None

    def witness(target: ObjectStoragePath, note: dict[str, Any]) -> None:
        state.set(LANDING_KEY, {"request": request, "uri": str(target), **note})

    return witness


def landed_by_earlier_try(
    context: Context, request: str, storage_conn_id: str | None, log: TaskLog
) -> str | dict[str, Any] | None:
    """What an earlier try of this task instance landed for this same ``request``, if that file is still there,
    the very one (the task's result: the URI, or a table's ``{"uri", "format", "rows", "schema_fingerprint"}``)."""
    state = task_state(context)
    kept = None if state is None else state.get(LANDING_KEY)
    if not isinstance(kept, dict) or kept.get("request") != request or not isinstance(kept.get("uri"), str):
        return None
    from airflow_provider_feishu_vc.hooks.feishu_vc import as_storage_path
    from airflow_provider_feishu_vc.hooks.landing import holds

    target = as_storage_path(kept["uri"], conn_id=storage_conn_id)
    if not holds(target, kept.get("identity")):
        if target.exists():
            log.warning("%s is not the file an earlier try landed there (it changed since)", kept["uri"])
        return None
    table = kept.get("table")
    return {"uri": kept["uri"], **table} if isinstance(table, dict) else kept["uri"]


def forget_landing(context: Context) -> None:
    """The task succeeded: drop the file it kept, so that clearing it lands anew."""
    state = task_state(context)
    if state is not None:
        state.delete(LANDING_KEY)
