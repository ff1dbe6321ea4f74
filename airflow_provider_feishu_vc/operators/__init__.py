"""Operators that start Feishu VC exports and land their files: ``from airflow_provider_feishu_vc.operators import
FeishuVCExportOperator`` (loaded on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_feishu_vc.operators.attendance import FeishuVCMeetingParticipantsOperator
    from airflow_provider_feishu_vc.operators.feishu_vc import (
        FeishuVCCreateExportOperator,
        FeishuVCDownloadExportOperator,
        FeishuVCExportOperator,
    )

__all__ = [
    "FeishuVCCreateExportOperator",
    "FeishuVCDownloadExportOperator",
    "FeishuVCExportOperator",
    "FeishuVCMeetingParticipantsOperator",
]
#: Where each name is defined, when not in :mod:`.feishu_vc`.
_MODULES = {"FeishuVCMeetingParticipantsOperator": "attendance"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{_MODULES.get(name, 'feishu_vc')}"), name)
