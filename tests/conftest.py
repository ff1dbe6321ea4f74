"""Shared test set-up: a throwaway AIRFLOW_HOME (set before Airflow is imported) and a fast emulator."""

from __future__ import annotations

import os
import tempfile

_home = tempfile.mkdtemp(prefix="feishu-vc-tests-airflow-home-")
os.environ.setdefault("AIRFLOW_HOME", _home)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(os.path.dirname(__file__), "..", "example_dags"))

import json  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from airflow_provider_feishu_vc.client.config import ClientConfig  # noqa: E402
from airflow_provider_feishu_vc.client.protocol import RetryPolicy  # noqa: E402
from airflow_provider_feishu_vc.client.tokens import TOKEN_CACHE  # noqa: E402
from airflow_provider_feishu_vc.testing import FeishuVCEmulator  # noqa: E402

APP_ID = "cli_a1b2c3d4e5f6"
APP_SECRET = "s3cr3t-app-secret-value"
FAST_RETRIES = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()


@pytest.fixture
def emulator() -> Iterator[FeishuVCEmulator]:
    with FeishuVCEmulator(app_id=APP_ID, app_secret=APP_SECRET, export_delay=0.3) as running:
        yield running


@pytest.fixture
def config(emulator: FeishuVCEmulator) -> ClientConfig:
    return ClientConfig.from_connection_parts(host=emulator.url, login=APP_ID, password=APP_SECRET)


@pytest.fixture
def connection_env(emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """``feishu_vc_default`` pointing at the emulator, as an AIRFLOW_CONN_ environment variable (JSON form)."""
    connection = {"conn_type": "feishu_vc", "host": emulator.url, "login": APP_ID, "password": APP_SECRET}
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_DEFAULT", json.dumps(connection))
    return "feishu_vc_default"


def airflow_cli(*args: str, env: dict[str, str] | None = None, check: bool = True):
    """Run the ``airflow`` CLI of this virtualenv against the tests' AIRFLOW_HOME."""
    import subprocess
    import sys
    from pathlib import Path

    command = [str(Path(sys.executable).with_name("airflow")), *args]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated SQLite metadata DB in the tests' AIRFLOW_HOME (about 3 s, once per session)."""
    airflow_cli("db", "migrate")
    return os.environ["AIRFLOW_HOME"]
