"""The hook that owns the feishu_vc connection and its tokens.

Short import path: ``from airflow_provider_feishu_vc.hooks import FeishuVCHook`` (loaded on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_feishu_vc.hooks.feishu_vc import FeishuVCHook

__all__ = ["FeishuVCHook"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from airflow_provider_feishu_vc.hooks import feishu_vc

    return getattr(feishu_vc, name)
