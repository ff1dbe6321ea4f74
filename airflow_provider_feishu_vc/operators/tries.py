"""What one try of an export task leaves for the next: the export it started and the file it landed, kept in
Airflow's task state (3.3+; see ``compat.task_state``), so that a retry resumes instead of starting over."""

from __future__ import annotations

from logging import Logger
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError
from airflow_provider_feishu_vc.compat import fail_task, task_state

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_feishu_vc.client.api import ExportTask
    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook

#: Task-state keys (Airflow 3.3+), kept across the tries of one task instance: the export a try started, and the
#: file a try landed.
EXPORT_ID_KEY = "feishu_vc_export_task_id"
LANDED_KEY = "feishu_vc_landed_file"
#: Feishu's "data not exist": the export id is unknown, or its file expired.
EXPORT_GONE_CODE = 121004


def fail_on_bad_input(error: Exception) -> NoReturn:
    """Bad input will not fix itself on retry: fail the task at once, keeping the message that names the field."""
    fail_task(str(error), cause=error)


def reusable_export(hook: FeishuVCHook, context: Context, log: Logger) -> ExportTask | None:
    """The export an earlier try of this task instance started, while Feishu still has it and it has not failed.

    Exports are remembered in the task's state store (Airflow 3.3+); before 3.3 every try starts afresh.
    """
    from airflow_provider_feishu_vc.client.api import ExportStatus

    state = task_state(context)
    export_task_id = state.get(EXPORT_ID_KEY) if state is not None else None
    if not export_task_id:
        return None
    try:
        task = hook.get_export(str(export_task_id))
    except FeishuVCAPIError as error:
        if error.code != EXPORT_GONE_CODE:
            raise
        log.warning("Export %s of an earlier try is gone from Feishu (%s); starting a new one", export_task_id, error)
        return None
    if task.status is ExportStatus.FAILED:
        log.warning("Export %s of an earlier try failed (%s); starting a new one", export_task_id, task.fail_msg)
        return None
    log.info("Resuming export %s, started by an earlier try (%s)", export_task_id, task.status.name.lower())
    return task


def remember(context: Context, key: str, value: Any) -> None:
    state = task_state(context)
    if state is not None:
        state.set(key, value)
