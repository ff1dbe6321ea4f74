"""The sensor that waits for a Feishu VC export, deferrable.

Short import path: ``from airflow_provider_feishu_vc.sensors import FeishuVCExportSensor`` (loaded on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_feishu_vc.sensors.feishu_vc import FeishuVCExportSensor

__all__ = ["FeishuVCExportSensor"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from airflow_provider_feishu_vc.sensors import feishu_vc

    return getattr(feishu_vc, name)
