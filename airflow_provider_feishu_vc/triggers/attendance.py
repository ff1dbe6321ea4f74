"""A trigger that waits for many Feishu VC exports at once: one deferral for all of a task's exports."""

from __future__ import annotations

import asyncio
import heapq
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_feishu_vc.client.api import ExportStatus
from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError, FeishuVCConfigError, FeishuVCError
from airflow_provider_feishu_vc.client.exports import validate_export_task_id
from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
from airflow_provider_feishu_vc.triggers.feishu_vc import ERROR, SUCCESS, TIMEOUT

#: 121004 at a status query: Feishu no longer knows the export.
GONE_CODE = 121004


def _positive(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise FeishuVCConfigError(field, f"must be a positive number of seconds, not {value!r}")
    return float(value)


class FeishuVCExportsTrigger(BaseTrigger):
    """Poll many exports, each when it is likely ready, until every one is done or failed (or ``deadline``
    passes); fire one event ``{"status", "done": {id: file_token}, "failed": {id: message}, "polls"}``.

    An export's first status query waits for the build time learned so far (``learned``: seconds earlier exports
    took; ``poll_interval`` until there is one) after its create (``exports``: id -> wall-clock epoch seconds of the
    create); one still processing is asked again after half its age, within ``[1, max_poll_interval]`` seconds.
    Status queries spend the status API's budget of the triggerer's shared client.
    """

    def __init__(
        self,
        exports: dict[str, float] | None = None,
        feishu_vc_conn_id: str = FeishuVCHook.default_conn_name,
        poll_interval: float = 5.0,
        max_poll_interval: float = 60.0,
        learned: list[float] | None = None,
        deadline: float | None = None,
        progress_interval: float = 30.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]  # BaseTrigger has no annotations
        if not isinstance(exports, dict) or not exports:
            raise FeishuVCConfigError("exports", f"must map export ids to their create times, not {exports!r}")
        self.exports = {validate_export_task_id(key): float(value) for key, value in exports.items()}
        self.feishu_vc_conn_id = feishu_vc_conn_id
        self.poll_interval = _positive("poll_interval", poll_interval)
        self.max_poll_interval = _positive("max_poll_interval", max_poll_interval)
        self.learned = [float(seconds) for seconds in (learned or [])]
        self.deadline = None if deadline is None else float(deadline)
        self.progress_interval = _positive("progress_interval", progress_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "exports": self.exports,
                "feishu_vc_conn_id": self.feishu_vc_conn_id,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "learned": self.learned,
                "deadline": self.deadline,
                "progress_interval": self.progress_interval,
            },
        )

    def _first(self) -> float:
        return statistics.median(self.learned[-64:]) * 1.1 if self.learned else self.poll_interval

    async def run(self) -> AsyncIterator[TriggerEvent]:
        done: dict[str, str] = {}
        failed: dict[str, str] = {}
        polls = 0
        due = [(created + self._first(), export_task_id) for export_task_id, created in self.exports.items()]
        heapq.heapify(due)
        next_report = time.monotonic() + self.progress_interval
        try:
            client = await FeishuVCHook(self.feishu_vc_conn_id).aopen_client()
        except FeishuVCError as error:
            yield TriggerEvent({"status": ERROR, "message": str(error), "done": {}, "failed": {}, "polls": 0})
            return
        try:
            while due:
                if self.deadline is not None and time.time() >= self.deadline:
                    yield self._event(TIMEOUT, "not every export was done by the deadline", done, failed, polls)
                    return
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + self.progress_interval
                    self.log.info("Exports: ready %d / failed %d of %d; %d status queries spent", len(done),
                                  len(failed), len(self.exports), polls)  # fmt: skip
                at, export_task_id = heapq.heappop(due)
                await asyncio.sleep(max(0.0, at - time.time()))
                polls += 1
                age = time.time() - self.exports[export_task_id]
                try:
                    task = await client.get_export(export_task_id)
                except FeishuVCAPIError as error:
                    if error.code == GONE_CODE:
                        failed[export_task_id] = f"export {export_task_id} is gone ({error})"
                        continue
                    if not error.retryable:
                        yield self._event(ERROR, str(error), done, failed, polls)
                        return
                    task = None
                except FeishuVCError as error:
                    if not error.retryable:
                        yield self._event(ERROR, str(error), done, failed, polls)
                        return
                    task = None
                if task is not None and task.status is ExportStatus.DONE:
                    done[export_task_id] = str(task.file_token)
                    self.learned.append(age)
                elif task is not None and task.status is ExportStatus.FAILED:
                    failed[export_task_id] = f"export {export_task_id} failed: {task.fail_msg or 'no reason given'}"
                else:
                    pause = min(self.max_poll_interval, max(1.0, age / 2))
                    heapq.heappush(due, (time.time() + pause, export_task_id))
        finally:
            await client.aclose()
        yield self._event(SUCCESS, f"{len(done)} exports done, {len(failed)} failed", done, failed, polls)

    def _event(
        self, status: str, message: str, done: dict[str, str], failed: dict[str, str], polls: int
    ) -> TriggerEvent:
        return TriggerEvent(
            {"status": status, "message": message, "done": done, "failed": failed, "polls": polls,
             "learned": self.learned[-64:]}
        )  # fmt: skip
