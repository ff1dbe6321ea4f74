"""The VC export endpoints as requests and result readers, shared by the sync and async clients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_feishu_vc.client.errors import FeishuVCAPIError
from airflow_provider_feishu_vc.client.exports import (
    DOWNLOAD_PATH,
    EXPORTS_PATH,
    build_export_body,
    validate_export_task_id,
    validate_file_token,
    validate_user_id_type,
)
from airflow_provider_feishu_vc.client.protocol import ExportTask, HttpRequest


def create_export_request(export_type: str, fields: Mapping[str, Any], user_id_type: str | None) -> HttpRequest:
    kind, body = build_export_body(export_type, fields)
    user_id_type = validate_user_id_type(kind, user_id_type)
    params = (("user_id_type", user_id_type),) if user_id_type else ()
    return HttpRequest("POST", kind.path, params=params, json_body=body, rate_limited_endpoint=True)


def read_export_task_id(payload: Mapping[str, Any]) -> str:
    task_id = (payload.get("data") or {}).get("task_id")
    try:
        return validate_export_task_id(task_id)
    except ValueError:
        raise FeishuVCAPIError(
            code=0, msg=f"the create export answer carries no usable task_id ({task_id!r})", http_status=200
        ) from None


def get_export_request(export_task_id: Any) -> HttpRequest:
    return HttpRequest("GET", f"{EXPORTS_PATH}/{validate_export_task_id(export_task_id)}", rate_limited_endpoint=True)


def read_export_task(export_task_id: Any, payload: Mapping[str, Any]) -> ExportTask:
    return ExportTask.from_payload(str(export_task_id), payload)


def download_request(file_token: Any) -> HttpRequest:
    return HttpRequest(
        "GET",
        DOWNLOAD_PATH,
        params=(("file_token", validate_file_token(file_token)),),
        stream=True,
        rate_limited_endpoint=True,
    )
