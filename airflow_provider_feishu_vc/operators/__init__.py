"""Operators that start Feishu VC exports and land their files: ``from airflow_provider_feishu_vc.operators import
FeishuVCExportOperator`` (loaded on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_feishu_vc.operators.feishu_vc import (
        FeishuVCCreateExportOperator,
        FeishuVCDownloadExportOperator,
        FeishuVCExportOperator,
    )

__all__ = ["FeishuVCCreateExportOperator", "FeishuVCDownloadExportOperator", "FeishuVCExportOperator"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from airflow_provider_feishu_vc.operators import feishu_vc

    return getattr(feishu_vc, name)
