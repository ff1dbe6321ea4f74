"""``docs/first-dag.md`` followed as a new user follows it (make dist): its shell blocks pasted, in order, into a
shell in an empty folder that holds only the built wheel, the DAG saved where the page says, the emulator started
from its block as a second terminal; then the landed Parquet is opened. When the page changes and its commands stop
working, this fails.

Two things differ from a user's machine, and only these (each must still occur in the page): Airflow's constraints
files come from a local copy of the project's locks (nothing but PyPI is reachable here), and the emulator's port
is a free one (other tests may hold 8999)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.dist.test_clean_install import DEV_ONLY, MATRIX, REPO, built
from tests.docs_pages import code_blocks

pytestmark = [pytest.mark.dist, pytest.mark.timeout(900)]

PAGE = REPO / "docs" / "first-dag.md"
CONSTRAINTS_ORIGIN = "https://raw.githubusercontent.com/apache/airflow/"
EMULATOR_PORT = "8999"
#: The Python a new user's ``python3`` is here, and the lock that stands in for Airflow's constraints file on it.
PYTHON, AIRFLOW_PATCH, LOCK = "3.11", "3.3.2", REPO / "requirements-dev.lock"
#: Installed for the tables extra, so not "development only" here.
NOT_DEV_HERE = ("fastexcel", "pyarrow")


def the_steps() -> tuple[list[str], str, str, list[str], str]:
    """The page up to "With your real app": shell blocks before the emulator's, the emulator's, the DAG file's
    path and code, shell blocks after the emulator's."""
    page = PAGE.read_text()
    local = page.split("## With your real app", 1)[0]
    blocks = code_blocks(local)
    [dag_code] = [code for language, code in blocks if language == "python"]
    [dag_path] = re.findall(r"Save this as `([^`]+)`", local)
    shell = [code for language, code in blocks if language == "bash"]
    [emulator_at] = [index for index, code in enumerate(shell) if "testing.emulator" in code]
    return shell[:emulator_at], shell[emulator_at], dag_path, shell[emulator_at + 1 :], dag_code


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def pasted(blocks: list[str], substitutions: dict[str, str]) -> str:
    script = "\n".join(blocks)
    for old, new in substitutions.items():
        script = script.replace(old, new)
    return script


def test_the_first_dag_page_runs_as_pasted_from_the_wheel(tmp_path: Path) -> None:
    before, emulator_block, dag_path, after, dag_code = the_steps()
    page = PAGE.read_text()
    assert CONSTRAINTS_ORIGIN in page and f"--port {EMULATOR_PORT}" in page, "the page no longer needs the stand-ins"
    mirror = tmp_path / "constraints"
    (mirror / f"constraints-{AIRFLOW_PATCH}").mkdir(parents=True)
    shutil.copy(LOCK, mirror / f"constraints-{AIRFLOW_PATCH}" / f"constraints-{PYTHON}.txt")
    substitutions = {CONSTRAINTS_ORIGIN: f"{mirror.as_uri()}/", EMULATOR_PORT: free_port()}

    folder = tmp_path / "first-dag"
    folder.mkdir()
    shutil.copy(built("*.whl"), folder)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(MATRIX.interpreter(PYTHON))  # type: ignore[attr-defined]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FEISHU", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"

    def shell(script: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=folder, env=env, text=True,
                              capture_output=True, timeout=timeout)  # fmt: skip

    # The first terminal, up to the emulator: install, Airflow home, migrated DB. Its exported environment is kept,
    # for the same terminal to go on after the emulator started.
    started = time.monotonic()
    first = shell(pasted(before, substitutions) + "\nexport -p > ../terminal.env", timeout=600)
    assert first.returncode == 0, f"{first.stdout[-3000:]}\n{first.stderr[-5000:]}"
    print(f"install and db migrate as pasted: {time.monotonic() - started:.0f} s", flush=True)
    probe = subprocess.run([str(folder / ".venv" / "bin" / "python"), "-c", "import importlib.util as u; "
                            f"print([m for m in {DEV_ONLY!r} if m not in {NOT_DEV_HERE!r} and u.find_spec(m)])"],
                           capture_output=True, text=True, env=env)  # fmt: skip
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr

    emulator = subprocess.Popen(
        ["bash", "-c", "set -euo pipefail\n" + pasted([emulator_block], substitutions)], cwd=folder, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert emulator.stdout is not None
        said = ""
        for line in emulator.stdout:
            said += line
            if "listening on" in line:
                break
        assert f"http://127.0.0.1:{substitutions[EMULATOR_PORT]}" in said, said

        (folder / dag_path).write_text(dag_code)
        started = time.monotonic()
        second = shell(f". ../terminal.env\n{pasted(after, substitutions)}", timeout=600)
        shown = second.stdout + second.stderr
        assert second.returncode == 0, shown[-6000:]
        print(f"dags test and the table opened as pasted: {time.monotonic() - started:.0f} s", flush=True)
    finally:
        os.killpg(emulator.pid, signal.SIGTERM)
        emulator.wait(timeout=30)

    assert "state=success" in shown, shown[-6000:]
    assert re.search(r"\.parquet \d+ rows", second.stdout) and "meeting_id: string" in second.stdout, second.stdout
    import pyarrow as pa
    import pyarrow.parquet as pq

    [landed] = list((folder / "airflow" / "feishu_vc_exports" / "feishu_vc_first_dag").rglob("*.parquet"))
    table = pq.read_table(landed)
    assert table.num_rows > 0
    assert table.schema.field("meeting_start_time").type == pa.timestamp("us", tz="UTC")
