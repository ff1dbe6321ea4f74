"""Shared test set-up: a throwaway AIRFLOW_HOME (set before Airflow is imported) and a fast emulator."""

from __future__ import annotations

import os
import tempfile

_home = tempfile.mkdtemp(prefix="feishu-vc-tests-airflow-home-")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each pytest-xdist worker its own home and metadata DB: the one its controller set is inherited.
    os.environ["AIRFLOW_HOME"] = _home
else:
    os.environ.setdefault("AIRFLOW_HOME", _home)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# The store here is a local SQLite file: writes land at once, so the refresh lease settles in 2 s, not 23 s.
os.environ.setdefault("FEISHU_VC_MAX_STORE_WRITE_DELAY", "0.5")
# The dags folder holds copies of the example DAG and of the tests' DAGs: dag.test() needs a DAG's file to be
# in the dags folder, and the repository root cannot be one (the virtualenv lies below it).
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAGS_FOLDER = os.path.join(_home, "dags")
os.makedirs(DAGS_FOLDER, exist_ok=True)
for _source in ("example_dags/example_feishu_vc_export.py", "tests/dags/feishu_vc_test_dags.py"):
    with (
        open(os.path.join(_REPO, _source), "rb") as _from,
        open(os.path.join(DAGS_FOLDER, os.path.basename(_source)), "wb") as _to,
    ):
        _to.write(_from.read())
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = DAGS_FOLDER

from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from airflow_provider_feishu_vc.client.config import ClientConfig  # noqa: E402
from airflow_provider_feishu_vc.client.protocol import RetryPolicy  # noqa: E402
from airflow_provider_feishu_vc.client.token_cache import TOKEN_CACHE  # noqa: E402
from airflow_provider_feishu_vc.testing import FeishuVCEmulator  # noqa: E402

APP_ID = "cli_a1b2c3d4e5f6"
APP_SECRET = "s3cr3t-app-secret-value"
FAST_RETRIES = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)
#: Extras for tests where pacing is not the subject: Feishu's 100/min would space every call 0.67 s apart.
UNPACED = {"rate_limit_per_minute": 60_000}


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    from airflow_provider_feishu_vc.client import grant_process

    TOKEN_CACHE.clear()
    grant_process.PROCESS = grant_process.ProcessGrants()  # what this "process" knows of each grant, as a new process
    yield
    TOKEN_CACHE.clear()


@pytest.fixture(scope="session")
def session_emulator() -> Iterator[FeishuVCEmulator]:
    with FeishuVCEmulator(app_id=APP_ID, app_secret=APP_SECRET, export_delay=0.3) as running:
        yield running


@pytest.fixture
def emulator(session_emulator: FeishuVCEmulator) -> FeishuVCEmulator:
    """The session's emulator as new: no tokens, exports, requests, faults or changed options."""
    session_emulator.reset()
    return session_emulator


@pytest.fixture
def config(emulator: FeishuVCEmulator) -> ClientConfig:
    return ClientConfig.from_connection_parts(host=emulator.url, login=APP_ID, password=APP_SECRET, extra=UNPACED)


@pytest.fixture
def connection_env(emulator: FeishuVCEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """``feishu_vc_default`` pointing at the emulator, as an AIRFLOW_CONN_ environment variable (JSON form)."""
    monkeypatch.setenv("AIRFLOW_CONN_FEISHU_VC_DEFAULT", emulator.connection(**UNPACED))
    return "feishu_vc_default"


def load_dag_file(name: str) -> Any:
    """Import one file of the tests' dags folder as a module (its DAGs then belong to that folder)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), os.path.join(DAGS_FOLDER, name))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


#: The user-token connection of tests/test_user_tokens.py and tests/reliability/test_review_findings.py.
USER_CONN_ID = "feishu_vc_user"


@pytest.fixture
def user_connection(airflow_db: str, emulator: FeishuVCEmulator) -> str:
    """A user-token connection saved in the metadata DB, holding only the user's first refresh token (the
    emulator's), with user tokens that live 4 s; the Variables its tokens are shared through start empty."""
    import json
    import subprocess
    import sys

    from airflow_provider_feishu_vc.hooks.user_token_store import VariableUserTokenStore

    emulator.configure(token_ttl=4.0, export_delay=3600, processing_polls=1)
    extra = {"refresh_token": emulator.options.refresh_token, "rate_limit_per_minute": 60_000}
    connection = {"conn_type": "feishu_vc", "host": emulator.url, "login": APP_ID, "password": APP_SECRET,
                  "extra": extra}  # fmt: skip
    config = ClientConfig(
        base_url="https://open.feishu.cn", app_id=APP_ID, app_secret=APP_SECRET, refresh_token=extra["refresh_token"]
    )
    store = VariableUserTokenStore.for_config(config)
    # One process of the deployment (as the CLI would be): it encrypts with the deployment's Fernet key.
    subprocess.run(
        [sys.executable, "-c", _RESET_USER_CONNECTION, USER_CONN_ID, json.dumps(connection), store.key],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    return USER_CONN_ID


_RESET_USER_CONNECTION = """
import json, sys
from airflow.models.connection import Connection
from airflow.models.variable import Variable
from airflow.utils.session import create_session

conn_id, connection, key = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
with create_session() as session:
    session.query(Connection).filter(Connection.conn_id == conn_id).delete()
    session.add(Connection(conn_id=conn_id, conn_type=connection["conn_type"], host=connection["host"],
                           login=connection["login"], password=connection["password"],
                           extra=json.dumps(connection["extra"])))
for name in (key, key + "__lease"):
    Variable.delete(name)
"""


#: The ``aws`` connection DAG authors would configure for moto's S3 server (``s3://aws_moto@bucket/...``).
S3_CONN_ID = "aws_moto"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """moto's S3 server on a loopback port, for the session."""
    from tests.s3 import S3Server

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket, and the ``aws_moto`` connection to reach it (an environment variable)."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{S3_CONN_ID.upper()}", s3_server.connection())
    return str(s3_server.new_bucket())
