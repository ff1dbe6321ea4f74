"""Trigger that waits for a Feishu VC export inside the triggerer, without a worker slot."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_feishu_vc.client.api import ExportStatus, ExportTask
from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError, FeishuVCConfigError, FeishuVCError
from airflow_provider_feishu_vc.client.exports import validate_export_task_id
from airflow_provider_feishu_vc.client.protocol import RetryPolicy
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook

#: Longest pause between polls after repeated transient errors.
MAX_ERROR_BACKOFF = 300.0
#: Triggers that start together (a triggerer taking over hundreds) spread their first polls over this many
#: seconds at most, so that no turn of the event loop runs hundreds of first steps back to back.
FIRST_POLL_SPREAD = 1.0

SUCCESS, FAILED, TIMEOUT, ERROR = "success", "failed", "timeout", "error"
EVENT_STATUSES = (SUCCESS, FAILED, TIMEOUT, ERROR)


@dataclass(frozen=True)
class WaitOutcome:
    """What a trigger event says, checked: ``status`` is one of ``EVENT_STATUSES``; ``file_token`` is set on
    success."""

    status: str
    export_task_id: str
    message: str
    file_token: str | None = None


def read_event(event: Any, export_task_id: str | None) -> WaitOutcome:
    """Check the event a resumed task receives; anything but a well-formed event raises ``FeishuVCError``."""
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise FeishuVCError(f"Feishu export {export_task_id}: unexpected trigger event {event!r}")
    export_task_id = str(event.get("export_task_id") or export_task_id or "")
    file_token = event.get("file_token")
    if event["status"] == SUCCESS and (not isinstance(file_token, str) or not file_token):
        raise FeishuVCError(f"Feishu export {export_task_id} is done but carries no file_token")
    return WaitOutcome(event["status"], export_task_id, str(event.get("message") or ""), file_token or None)


def _seconds(field: str, value: Any) -> float:
    """A finite number of seconds, or a ``FeishuVCConfigError`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FeishuVCConfigError(field, f"must be a finite number of seconds, not {value!r}")
    return float(value)


class FeishuVCExportTrigger(BaseTrigger):
    """Poll one export until Feishu says it is done or failed, or ``deadline`` passes; fire exactly one event.

    Every trigger of the same app in a triggerer shares one HTTP pool, one token and one rate budget, so
    thousands of waits stretch their poll interval instead of tripping Feishu's limit.

    :param export_task_id: The Feishu export to wait for.
    :param feishu_vc_conn_id: The ``feishu_vc`` connection.
    :param poll_interval: Seconds between status checks (longer when the app's rate budget is spent).
    :param deadline: Wall-clock epoch seconds after which a ``timeout`` event fires; None waits forever.
    """

    def __init__(
        self,
        export_task_id: str | None = None,  # required; None only so that stored kwargs without it fail by name
        feishu_vc_conn_id: str = FeishuVCHook.default_conn_name,
        poll_interval: float = 10.0,
        deadline: float | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]  # BaseTrigger has no annotations
        if unknown:  # kwargs stored by another release of the provider
            name = sorted(unknown)[0]
            raise FeishuVCConfigError(
                name, "is not an argument this release's trigger knows; clear the task to defer anew"
            )
        self.export_task_id = validate_export_task_id(export_task_id)
        if not isinstance(feishu_vc_conn_id, str) or not feishu_vc_conn_id:
            raise FeishuVCConfigError("feishu_vc_conn_id", f"must be a connection id, not {feishu_vc_conn_id!r}")
        self.feishu_vc_conn_id = feishu_vc_conn_id
        self.poll_interval = _seconds("poll_interval", poll_interval)
        if self.poll_interval <= 0:
            raise FeishuVCConfigError("poll_interval", f"must be more than 0 seconds, not {poll_interval!r}")
        self.deadline = None if deadline is None else _seconds("deadline", deadline)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "export_task_id": self.export_task_id,
                "feishu_vc_conn_id": self.feishu_vc_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    def _event(self, status: str, message: str, **fields: Any) -> TriggerEvent:
        return TriggerEvent({"status": status, "export_task_id": self.export_task_id, "message": message, **fields})

    def _seconds_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.time()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Between polls a wait keeps only what it needs: every object it holds, times thousands of waits, is walked
        # by the triggerer's garbage collector while the loop stands still. Hence one frame (no helper coroutine
        # awaited across the wait), a client closed by hand (``async with`` would keep a bound method) and no local
        # holding the export's last state through the pause.
        await asyncio.sleep(random.uniform(0, min(self.poll_interval, FIRST_POLL_SPREAD)))
        try:
            client = await FeishuVCHook(self.feishu_vc_conn_id).aopen_client()
        except FeishuVCError as error:
            yield self._error_event(error)
            return
        failures = 0
        try:
            while (event := self._timeout_event()) is None:
                try:
                    event = self._event_for(await client.get_export_in_turn(self.export_task_id))
                    pause, failures = self.poll_interval, 0
                except FeishuVCError as error:
                    failures += 1
                    event, pause = self._after_error(error, failures)
                if event is not None:
                    break
                await asyncio.sleep(max(0.0, min(pause, self._seconds_left())))
        finally:
            await client.aclose()
        yield event

    def _timeout_event(self) -> TriggerEvent | None:
        if self._seconds_left() > 0:
            return None
        return self._event(TIMEOUT, f"Feishu export {self.export_task_id} was not done by the deadline")

    def _after_error(self, error: FeishuVCError, failures: int) -> tuple[TriggerEvent | None, float]:
        """The event a failed check ends the wait with (one that cannot pass by retrying), or None and the pause
        before the next try (backing off from ``poll_interval`` after ``failures`` failures in a row)."""
        if not error.retryable:
            return self._error_event(error), 0.0
        error_backoff = RetryPolicy(base_delay=self.poll_interval, max_delay=MAX_ERROR_BACKOFF)
        pause = error_backoff.backoff(failures + 1)
        self.log.warning(
            "Polling Feishu export %s failed (%s); trying again in %.0f s", self.export_task_id, error, pause
        )
        return None, pause

    def _event_for(self, task: ExportTask) -> TriggerEvent | None:
        """The event an export's state ends the wait with, or None while it is still being made."""
        if task.status is ExportStatus.DONE:
            return self._event(SUCCESS, f"Feishu export {self.export_task_id} is done", file_token=task.file_token)
        if task.status is ExportStatus.FAILED:
            return self._event(FAILED, str(task.failure()), fail_msg=task.fail_msg)
        return None

    def _error_event(self, error: FeishuVCError) -> TriggerEvent:
        code = error.code if isinstance(error, FeishuVCAPIError) else None
        return self._event(ERROR, f"Waiting for Feishu export {self.export_task_id} failed: {error}", code=code)
