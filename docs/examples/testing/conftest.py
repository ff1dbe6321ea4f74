"""Test set-up for DAGs that use the Feishu VC provider: a throwaway Airflow home (set before Airflow is imported,
removed when the session ends), this folder's ``dags/`` as the dags folder, and a migrated SQLite metadata DB. The
emulator fixtures (``feishu_vc_emulator``, ``feishu_vc_connection``) come with the provider's pytest plugin."""

# [START testing_conftest]
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
os.environ["AIRFLOW_HOME"] = AIRFLOW_HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).parent / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"


@pytest.fixture(scope="session", autouse=True)
def airflow_db():
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    yield
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)  # leave no Airflow home behind


# [END testing_conftest]
