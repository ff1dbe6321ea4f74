"""Apache Airflow provider for Feishu / Lark video-conference (VC) exports.

The short import paths (each loads its module on first use, so that importing this package stays cheap)::

    from airflow_provider_feishu_vc import FeishuVCExportOperator, FeishuVCExportSensor, FeishuVCHook
    from airflow_provider_feishu_vc.operators import FeishuVCCreateExportOperator, FeishuVCDownloadExportOperator
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "1.0.0"

if TYPE_CHECKING:
    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook
    from airflow_provider_feishu_vc.operators.attendance import FeishuVCMeetingParticipantsOperator
    from airflow_provider_feishu_vc.operators.feishu_vc import (
        FeishuVCCreateExportOperator,
        FeishuVCDownloadExportOperator,
        FeishuVCExportOperator,
    )
    from airflow_provider_feishu_vc.sensors.feishu_vc import FeishuVCExportSensor
    from airflow_provider_feishu_vc.triggers.feishu_vc import FeishuVCExportTrigger

#: Where each short name lives.
_LAZY = {
    "FeishuVCHook": "airflow_provider_feishu_vc.hooks.feishu_vc",
    "FeishuVCExportOperator": "airflow_provider_feishu_vc.operators.feishu_vc",
    "FeishuVCCreateExportOperator": "airflow_provider_feishu_vc.operators.feishu_vc",
    "FeishuVCDownloadExportOperator": "airflow_provider_feishu_vc.operators.feishu_vc",
    "FeishuVCMeetingParticipantsOperator": "airflow_provider_feishu_vc.operators.attendance",
    "FeishuVCExportSensor": "airflow_provider_feishu_vc.sensors.feishu_vc",
    "FeishuVCExportTrigger": "airflow_provider_feishu_vc.triggers.feishu_vc",
}

__all__ = [
    "FeishuVCCreateExportOperator",
    "FeishuVCDownloadExportOperator",
    "FeishuVCExportOperator",
    "FeishuVCExportSensor",
    "FeishuVCExportTrigger",
    "FeishuVCHook",
    "FeishuVCMeetingParticipantsOperator",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
