"""The trigger that waits for a Feishu VC export in the triggerer.

Short import path: ``from airflow_provider_feishu_vc.triggers import FeishuVCExportTrigger`` (loaded on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_feishu_vc.triggers.feishu_vc import FeishuVCExportTrigger

__all__ = ["FeishuVCExportTrigger"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from airflow_provider_feishu_vc.triggers import feishu_vc

    return getattr(feishu_vc, name)
