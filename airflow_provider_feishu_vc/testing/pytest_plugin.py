"""Pytest fixtures for DAG tests against the Feishu VC emulator (loaded through the ``pytest11`` entry point)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from airflow_provider_feishu_vc.testing.emulator import FeishuVCEmulator


@pytest.fixture
def feishu_vc_emulator() -> Iterator[FeishuVCEmulator]:
    """A running emulator with exports that finish after 0.5 s; stopped after the test."""
    with FeishuVCEmulator(app_id="cli_test_app", app_secret="test-app-secret", export_delay=0.5) as emulator:
        yield emulator


@pytest.fixture
def feishu_vc_connection(feishu_vc_emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the ``feishu_vc_default`` connection at the emulator (through ``AIRFLOW_CONN_...``); return its id."""
    connection = {
        "conn_type": "feishu_vc",
        "host": feishu_vc_emulator.url,
        "login": feishu_vc_emulator.app_id,
        "password": feishu_vc_emulator.app_secret,
    }
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_DEFAULT", json.dumps(connection))
    return "feishu_vc_default"
