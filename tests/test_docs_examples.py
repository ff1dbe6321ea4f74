"""The docs' examples, run as a user would: the first DAG written to a fresh dags folder with a connection added by
the CLI, and the pytest example for testing one's own DAGs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from airflow_provider_feishu_vc.testing import FeishuVCEmulator

REPO = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_the_first_dag_runs_as_pasted_or_says_what_to_do(tmp_path: Path, emulator: FeishuVCEmulator) -> None:
    emulator.configure(export_delay=1)
    home, dags = tmp_path / "home", tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "example_dags" / "example_feishu_vc_first_dag.py", dags / "first_dag.py")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FEISHU"))},
           "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__FEISHU_VC__STORAGE_BASE": (tmp_path / "exports").as_uri()}  # fmt: skip

    def airflow(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AIRFLOW, *args], env={**env, **more}, capture_output=True, text=True, timeout=300)

    assert airflow("db", "migrate").returncode == 0
    added = airflow("connections", "add", "feishu_vc_default", "--conn-type", "feishu_vc", "--conn-host", emulator.url,
                    "--conn-login", emulator.app_id, "--conn-password", emulator.app_secret)  # fmt: skip
    assert added.returncode == 0, added.stderr[-2000:]
    first = airflow("dags", "test", "feishu_vc_first_dag", "2026-11-24")
    said = first.stdout + first.stderr
    if first.returncode != 0 or "state=success" not in said:
        # A deferred wait under `airflow dags test` sees only environment connections: the failure must say so.
        assert "is not visible to the trigger" in said and "deferrable=False" in said, said[-5000:]
        assert "AIRFLOW_CONN_FEISHU_VC_DEFAULT" in said
    connection = {"conn_type": "feishu_vc", "host": emulator.url, "login": emulator.app_id,
                  "password": emulator.app_secret}  # fmt: skip
    second = airflow(
        "dags", "test", "feishu_vc_first_dag", "2026-11-25", AIRFLOW_CONN_FEISHU_VC_DEFAULT=json.dumps(connection)
    )
    assert second.returncode == 0 and "state=success" in second.stdout + second.stderr, second.stdout[-5000:]
    assert list((tmp_path / "exports").rglob("*.xlsx"))


def test_the_docs_pytest_example_passes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FEISHU"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "docs" / "examples" / "testing")],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    assert "1 passed" in done.stdout
