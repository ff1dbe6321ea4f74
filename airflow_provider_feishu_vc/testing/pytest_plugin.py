"""Pytest fixtures for DAG tests against the Feishu VC emulator (loaded through the ``pytest11`` entry point)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_feishu_vc.testing.emulator import FeishuVCEmulator


@pytest.fixture(scope="session")
def feishu_vc_emulator_session() -> Iterator[FeishuVCEmulator]:
    """One running emulator for the whole test session (exports finish after 0.5 s)."""
    with FeishuVCEmulator(app_id="cli_test_app", app_secret="test-app-secret", export_delay=0.5) as emulator:
        yield emulator


@pytest.fixture
def feishu_vc_emulator(feishu_vc_emulator_session: FeishuVCEmulator) -> FeishuVCEmulator:
    """The session's emulator, reset for this test: no tokens, exports, requests, faults or changed options."""
    feishu_vc_emulator_session.reset()
    return feishu_vc_emulator_session


@pytest.fixture
def feishu_vc_connection(feishu_vc_emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the ``feishu_vc_default`` connection at the emulator (through ``AIRFLOW_CONN_...``); return its id."""
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_DEFAULT", feishu_vc_emulator.connection())
    return "feishu_vc_default"
