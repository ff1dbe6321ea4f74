"""The Feishu VC core: endpoints, token rules, error mapping and retries. Imports nothing from Airflow."""

from __future__ import annotations

from airflow_provider_feishu_vc.client.api import ExportStatus, ExportTask
from airflow_provider_feishu_vc.client.config import ClientConfig
from airflow_provider_feishu_vc.client.errors import (
    FeishuVCAPIError,
    FeishuVCConfigError,
    FeishuVCDownloadError,
    FeishuVCError,
    FeishuVCExportFailedError,
    FeishuVCTransportError,
)

__all__ = [
    "ClientConfig",
    "ExportStatus",
    "ExportTask",
    "FeishuVCAPIError",
    "FeishuVCConfigError",
    "FeishuVCDownloadError",
    "FeishuVCError",
    "FeishuVCExportFailedError",
    "FeishuVCTransportError",
]
