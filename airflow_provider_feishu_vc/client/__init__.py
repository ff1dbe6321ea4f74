"""The Feishu VC core: endpoints, token rules, error mapping and retries. Imports nothing from Airflow.

The errors are imported with the package; everything else on first use, so that importing an operator (which
Airflow does on every DAG parse) does not load the protocol machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from airflow_provider_feishu_vc.client.errors import (
    FeishuVCAPIError,
    FeishuVCConfigError,
    FeishuVCDownloadError,
    FeishuVCError,
    FeishuVCExportFailedError,
    FeishuVCTransportError,
)

if TYPE_CHECKING:
    from airflow_provider_feishu_vc.client.api import ExportStatus, ExportTask
    from airflow_provider_feishu_vc.client.config import ClientConfig

_LAZY = {"ClientConfig": "config", "ExportStatus": "api", "ExportTask": "api"}

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


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
