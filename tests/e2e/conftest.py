"""The real deployment the e2e tests share (make e2e): the emulator, PostgreSQL, API server, scheduler, DAG
processor and two triggerers, started once for every e2e module."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_feishu_vc.testing.process import EmulatorProcess
from tests.e2e.deployment import Deployment, StepFailed

APP_ID, APP_SECRET = "cli_e2e_app", "e2e-app-secret-value"
#: Exports stay processing until the test says they are done (``finish_now``): what a step must see while an
#: export is processing holds however slowly a loaded machine starts the tasks.
EXPORT_SECONDS = 3600
SCALE = 20  # Feishu's 100-per-minute window shrunk to 100 per 3 s, and the connection told the same limit
MANY = 200


@pytest.fixture(scope="session")
def feishu() -> Iterator[EmulatorProcess]:
    options = {"export_delay": EXPORT_SECONDS, "rate_window": 60 / SCALE}
    with EmulatorProcess(app_id=APP_ID, app_secret=APP_SECRET, **options) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def deployment(feishu: EmulatorProcess) -> Iterator[Deployment]:
    root = Path(tempfile.mkdtemp(prefix="feishu-vc-e2e-"))
    # The connection is told the app's real limit, nothing split: two triggerers and the workers' first checks
    # share it by slowing down when Feishu refuses (client/budget.py).
    env = {
        "E2E_WAITS": str(MANY),
        "AIRFLOW_CONN_FEISHU_VC_DEFAULT": feishu.connection(rate_limit_per_minute=100 * SCALE),
        "AIRFLOW__FEISHU_VC__STORAGE_BASE": (root / "exports").as_uri(),
    }
    airflow = Deployment(root, env)
    try:
        airflow.start_postgres()
        airflow.start_airflow()
        yield airflow
    except StepFailed as failure:
        raise StepFailed(f"{failure}\n{airflow.tails()}") from None
    finally:
        airflow.stop_all()
        assert all(p.poll() is not None for p in airflow.processes.values()), "a process outlived the test"
