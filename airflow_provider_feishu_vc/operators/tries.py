"""What one try of an export task leaves for the next: the export it started, the request it was for, and the file
it landed, kept in Airflow's task state (3.3+; see ``compat.task_state``), so that a retry resumes instead of
starting over, and only a retry of the same request.

- A try keeps ``{"export_task_id", "request", "landed"}`` under :data:`EXPORT_KEY`, where ``request`` is a
  fingerprint of what the export is for (kind, resolved fields, ``user_id_type``, and for the one-task operator the
  destination). A later try whose request differs (a field or the destination changed before a clear) starts anew.
- The task's state is dropped when the task succeeds (``post_execute``), so clearing a successful task exports
  again, and when Feishu no longer has the export or its file (121004), so the next try does not ask again.
- What release 0.1.0 kept (an export id without its request) is never resumed, and is deleted when seen.
- While a file is uploaded to S3, its multipart upload's id is kept under :data:`OPEN_UPLOAD_KEY` until the upload
  is completed or aborted; a try killed in between (``kill -9``, a lost worker) leaves it, and the next try aborts
  that upload before it lands the file again, so that no orphaned parts stay in the bucket.
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
    from airflow_provider_feishu_vc.hooks.landing import UploadJournal


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


def upload_journal(context: Context) -> UploadJournal | None:
    """What keeps an upload's id in the task's state while the upload is open (None before Airflow 3.3)."""
    state = task_state(context)
    if state is None:
        return None

    def keep(target: ObjectStoragePath, upload_id: str | None) -> None:
        if upload_id is None:
            state.delete(OPEN_UPLOAD_KEY)
        else:
            state.set(OPEN_UPLOAD_KEY, {"uri": str(target), "upload_id": upload_id})

    return keep


def abort_left_upload(context: Context, storage_conn_id: str | None, log: TaskLog) -> None:
    """Abort the S3 upload an earlier try of this task instance began and never ended (it was killed)."""
    state = task_state(context)
    kept = None if state is None else state.get(OPEN_UPLOAD_KEY)
    if state is None or kept is None:
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
    state.delete(OPEN_UPLOAD_KEY)
