"""Sensor that waits for a Feishu VC export to finish, deferring to the triggerer by default when configured."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_feishu_vc.client.errors import FeishuVCError
from airflow_provider_feishu_vc.compat import conf, fail_task, sensor_timed_out
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_feishu_vc.client.api import ExportTask


class FeishuVCExportSensor(BaseSensorOperator):
    """Wait until a Feishu VC export is done; return ``{"export_task_id", "file_token"}`` (XCom).

    A failed export fails the task with Feishu's ``fail_msg``; a timeout raises Airflow's sensor timeout (so
    ``soft_fail`` skips instead); any other error fails with the export id and Feishu's code.

    :param export_task_id: The export to wait for (templated), usually the create operator's XCom:
        ``"{{ ti.xcom_pull(task_ids='create_export') }}"``.
    :param feishu_vc_conn_id: The ``feishu_vc`` connection.
    :param poke_interval: Seconds between status checks (both modes).
    :param timeout: Seconds to wait in all before timing out.
    :param deferrable: Wait in the triggerer instead of a worker slot. Defaults to Airflow's
        ``[operators] default_deferrable``.
    :param kwargs: The usual sensor options (``mode="reschedule"``, ``soft_fail``, ...).
    """

    template_fields: Sequence[str] = ("export_task_id",)
    ui_color = "#3370ff"

    def __init__(
        self,
        *,
        export_task_id: str,
        feishu_vc_conn_id: str = FeishuVCHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.export_task_id = export_task_id
        self.feishu_vc_conn_id = feishu_vc_conn_id
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> FeishuVCHook:
        """One hook (and HTTP client) for every poke of this try; closed when ``execute`` ends."""
        return FeishuVCHook(self.feishu_vc_conn_id)

    def execute(self, context: Context) -> Any:
        try:
            return self._wait_or_defer(context)
        finally:
            if "hook" in self.__dict__:
                self.hook.close()

    def _wait_or_defer(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        result = self._outcome(self.hook.check_export(self.export_task_id, retries=0))  # the trigger retries
        if result is not None:
            return result
        from airflow_provider_feishu_vc.triggers.feishu_vc import FeishuVCExportTrigger

        self.log.info("Feishu export %s is processing; deferring to the triggerer", self.export_task_id)
        self.defer(
            trigger=FeishuVCExportTrigger(
                export_task_id=self.export_task_id,
                feishu_vc_conn_id=self.feishu_vc_conn_id,
                poll_interval=self.poke_interval,
                deadline=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        result = self._outcome(self.hook.check_export(self.export_task_id))
        if result is None:
            self.log.info("Feishu export %s is still processing", self.export_task_id)
            return False
        return PokeReturnValue(is_done=True, xcom_value=result)

    def _outcome(self, task: ExportTask | None) -> dict[str, str] | None:
        """The XCom value when done, None while processing (or not known this time); fails the task when the
        export failed."""
        from airflow_provider_feishu_vc.client.api import ExportStatus

        if task is None:
            return None
        if task.status is ExportStatus.FAILED:
            fail_task(str(task.failure()))
        if task.status is ExportStatus.DONE:
            return self._done(task.export_task_id, task.file_token)
        return None

    def _done(self, export_task_id: str, file_token: Any) -> dict[str, str]:
        if not isinstance(file_token, str) or not file_token:
            raise FeishuVCError(f"Feishu export {export_task_id} is done but carries no file_token")
        self.log.info("Feishu export %s is done (file_token %s)", export_task_id, file_token)
        return {"export_task_id": export_task_id, "file_token": file_token}

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, str]:
        """Resume after the trigger fired: anything but a well-formed success event fails the task."""
        from airflow_provider_feishu_vc.triggers.feishu_vc import FAILED, SUCCESS, TIMEOUT, read_event

        outcome = read_event(event, self.export_task_id)
        if outcome.status == SUCCESS:
            return self._done(outcome.export_task_id, outcome.file_token)
        if outcome.status == FAILED:
            fail_task(outcome.message)
        if outcome.status == TIMEOUT:
            sensor_timed_out(outcome.message)
        raise FeishuVCError(outcome.message)
