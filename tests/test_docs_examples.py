"""The docs' examples, run as a user would: the first DAG written to a fresh dags folder with a connection added by
the CLI, and the pytest example for testing one's own DAGs. The pages hold their code inline (readable in the
repository browser and the sdist): every block compiles, and each page shows its example file's code exactly, so
what runs here is what a reader sees."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from tests.docs_pages import code_blocks

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
    assert list((tmp_path / "exports").rglob("*.parquet"))


def test_the_docs_pytest_example_passes_and_leaves_no_airflow_home_behind(tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FEISHU"))}, "TMPDIR": str(temp)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "docs" / "examples" / "testing")],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    assert "1 passed" in done.stdout
    assert not list(temp.glob("airflow-home-*")), "the conftest left its Airflow home behind"


PAGES = sorted(path for path in (REPO / "docs").rglob("*.md") if not {"_build", "examples"} & set(path.parts))
#: page -> (file, marker) of each example whose code the page shows
SHOWN: dict[str, list[tuple[str, str]]] = {
    "docs/first-dag.md": [("example_dags/example_feishu_vc_first_dag.py", "first_dag")],
    "docs/operators/export.md": [("example_dags/example_feishu_vc_one_task.py", "howto_operator_feishu_vc_export")],
    "docs/operators/create.md": [
        ("example_dags/example_feishu_vc_export.py", "howto_operator_feishu_vc_create_export")
    ],
    "docs/operators/sensor.md": [("example_dags/example_feishu_vc_export.py", "howto_sensor_feishu_vc_export")],
    "docs/operators/download.md": [
        ("example_dags/example_feishu_vc_export.py", "howto_operator_feishu_vc_download_export")
    ],
    "docs/attendance.md": [
        ("example_dags/example_feishu_vc_attendance.py", "howto_operator_feishu_vc_attendance")
    ],
    "docs/testing.md": [("docs/examples/testing/conftest.py", "testing_conftest"),
                        ("docs/examples/testing/test_daily_meetings.py", "testing_test")],
}  # fmt: skip


def marked_code(file_name: str, marker: str) -> str:
    text = (REPO / file_name).read_text()
    between = re.search(rf"^[ \t]*# \[START {marker}\]\n(.*?)^[ \t]*# \[END {marker}\]\n", text, re.M | re.S)
    assert between, f"{file_name} has no {marker} markers"
    return textwrap.dedent(between.group(1)).strip("\n") + "\n"


@pytest.mark.parametrize("page", [str(path.relative_to(REPO)) for path in PAGES])
def test_a_page_holds_its_code_and_tables_not_directives_that_only_sphinx_reads(page: str) -> None:
    text = (REPO / page).read_text()
    assert not re.findall(r"```\{(literalinclude|include|feishu-vc-schema)\}", text)


@pytest.mark.parametrize("page", ["README.md"] + [str(path.relative_to(REPO)) for path in PAGES])
def test_every_code_block_of_a_page_compiles(page: str) -> None:
    for language, code in code_blocks((REPO / page).read_text()):
        if language == "python":
            compile(code, f"{page}: a python block", "exec")
        elif language in ("bash", "sh", "shell"):
            checked = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True, timeout=30)
            assert checked.returncode == 0, f"{page}: a bash block does not parse: {checked.stderr}\n{code}"


@pytest.mark.parametrize("page", sorted(SHOWN))
def test_a_page_shows_its_example_files_code_exactly(page: str) -> None:
    blocks = [code for language, code in code_blocks((REPO / page).read_text()) if language == "python"]
    for file_name, marker in SHOWN[page]:
        assert marked_code(file_name, marker) in blocks, f"{page} and {file_name} ({marker}) differ"


def test_every_import_a_page_or_the_readme_names_works() -> None:
    """``from airflow_provider_feishu_vc... import ...`` as the pages write it, in code blocks or inline (e.g. where
    ``Fault`` comes from)."""
    statements = set()
    for page in [REPO / "README.md", *PAGES]:
        found = re.findall(
            r"from (airflow_provider_feishu_vc[\w.]*) import ([\w ,]+?)(?=[`\n)]|, \.\.\.)", page.read_text()
        )
        statements |= {f"from {module} import {names.strip().rstrip(',')}" for module, names in found}
    assert "from airflow_provider_feishu_vc.testing import Fault" in statements
    probe = "\n".join(sorted(statements))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{probe}"
