"""Test helpers: a local Feishu VC emulator that needs no account and no network.

Use :class:`FeishuVCEmulator` as a context manager, or the ``feishu_vc_emulator`` pytest fixture (registered
automatically when this package is installed).
"""

from __future__ import annotations

from airflow_provider_feishu_vc.testing.emulator import FeishuVCEmulator
from airflow_provider_feishu_vc.testing.emulator.faults import Fault

__all__ = ["Fault", "FeishuVCEmulator"]
