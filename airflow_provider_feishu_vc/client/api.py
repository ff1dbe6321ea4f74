"""The VC export API as flows: one per call, from the request to the typed result. Both drivers run these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from airflow_provider_feishu_vc.client.budget import AppBudgets
from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError, FeishuVCExportFailedError
from airflow_provider_feishu_vc.client.exports import (
    DOWNLOAD_PATH,
    EXPORTS_PATH,
    build_export_body,
    get_export_kind,
    validate_export_task_id,
    validate_file_token,
    validate_user_id_type,
)
from airflow_provider_feishu_vc.client.files import FileInfo, check_complete
from airflow_provider_feishu_vc.client.protocol import Flow, HttpRequest, HttpResponse, RetryPolicy, call_with_retries

#: The rate-limit buckets of the status query and the download; each create kind is a bucket of its own name.
STATUS_API, DOWNLOAD_API = "status", "download"


class ExportStatus(IntEnum):
    PROCESSING = 1
    FAILED = 2
    DONE = 3


@dataclass(frozen=True)
class ExportTask:
    """The state of one Feishu export task."""

    export_task_id: str
    status: ExportStatus
    url: str | None = None
    file_token: str | None = None
    fail_msg: str | None = None

    def failure(self) -> FeishuVCExportFailedError:
        """The error describing this failed export (Feishu's ``fail_msg`` and the export id)."""
        return FeishuVCExportFailedError(self.export_task_id, self.fail_msg or "")

    @classmethod
    def from_payload(cls, export_task_id: str, payload: Mapping[str, Any]) -> ExportTask:
        data = payload.get("data")
        if not isinstance(data, Mapping):
            raise FeishuVCAPIError(
                code=0,
                msg=f"export {export_task_id}: the status answer has no data object ({data!r:.80})",
                http_status=200,
            )
        raw_status: Any = data.get("status")
        try:
            status = ExportStatus(int(raw_status))
        except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf) of a payload decoded elsewhere
            raise FeishuVCAPIError(
                code=0,
                msg=f"export {export_task_id} has an unknown status {raw_status!r} (expected 1, 2 or 3)",
                http_status=200,
            ) from None
        file_token = _text(data.get("file_token"))
        if status is ExportStatus.DONE and not file_token:
            raise FeishuVCAPIError(
                code=0, msg=f"export {export_task_id} is done but Feishu sent no file_token", http_status=200
            )
        return cls(export_task_id, status, _text(data.get("url")), file_token, _text(data.get("fail_msg")))


def _text(value: Any) -> str | None:
    """A string field of Feishu's answer, or None when it is empty or not a string."""
    return value if isinstance(value, str) and value else None


@dataclass
class FileAnswer:
    """A download whose headers arrived: what they say about the file, and the driver's open stream."""

    info: FileInfo
    stream: Any

    def check_complete(self, received: int) -> None:
        check_complete(self.info, received)


def resolve_export(export_type: str, fields: Mapping[str, Any], user_id_type: str | None) -> dict[str, Any]:
    """What a create would ask Feishu for, validated, with times as Feishu takes them: the kind, the ``user_id_type``
    and the JSON body. Plain values, so that callers can keep or compare it (which export is for which request)."""
    kind, body = build_export_body(export_type, fields)
    return {"export_type": kind.name, "user_id_type": validate_user_id_type(kind, user_id_type), "body": body}


def create_export(
    export_type: str,
    fields: Mapping[str, Any],
    user_id_type: str | None,
    policy: RetryPolicy,
    budgets: AppBudgets,
) -> Flow[str]:
    """Start an export; return its ``export_task_id``. Fields are validated before anything is sent."""
    resolved = resolve_export(export_type, fields, user_id_type)
    kind = get_export_kind(resolved["export_type"])
    params = (("user_id_type", resolved["user_id_type"]),) if resolved["user_id_type"] else ()
    request = HttpRequest(
        "POST", kind.path, params=params, json_body=resolved["body"], budget=budgets.for_api(kind.name)
    )
    response = yield from call_with_retries(request, policy)
    data = response.payload.get("data")
    task_id = data.get("task_id") if isinstance(data, Mapping) else None
    try:
        return validate_export_task_id(task_id)
    except ValueError:
        raise FeishuVCAPIError(
            code=0, msg=f"the create export answer carries no usable task_id ({task_id!r})", http_status=200
        ) from None


def get_export(export_task_id: Any, policy: RetryPolicy, budgets: AppBudgets) -> Flow[ExportTask]:
    """The export's state: processing, failed (with ``fail_msg``) or done (with ``file_token``)."""
    export_task_id = validate_export_task_id(export_task_id)
    request = HttpRequest("GET", f"{EXPORTS_PATH}/{export_task_id}", budget=budgets.for_api(STATUS_API))
    response = yield from call_with_retries(request, policy)
    return ExportTask.from_payload(export_task_id, response.payload)


def open_download(file_token: Any, policy: RetryPolicy, budgets: AppBudgets) -> Flow[FileAnswer]:
    """Open a done export's file: the driver's stream is left open for the caller to read and close."""
    request = HttpRequest(
        "GET",
        DOWNLOAD_PATH,
        params=(("file_token", validate_file_token(file_token)),),
        stream=True,
        budget=budgets.for_api(DOWNLOAD_API),
    )
    response: HttpResponse = yield from call_with_retries(request, policy)
    return FileAnswer(FileInfo.from_headers(response.headers), response.stream)
