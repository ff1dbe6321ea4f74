"""The built wheel as a user installs it (make dist): into a fresh virtualenv beside only a released Airflow, no
development dependency, pinned by the test matrix leg's lock the way Airflow's constraints files pin an install.
Then what a new user does first: the provider is listed, a ``feishu_vc`` connection is added and tested from the
CLI against the wheel's own emulator, the example DAGs parse, the emulator's ``--help`` runs."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.dist, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
UV = Path(sys.executable).with_name("uv")
EXAMPLE_DAG_IDS = {"feishu_vc_first_dag", "example_feishu_vc_export", "example_feishu_vc_one_task"}
#: What only the development install has: none of it may come with the wheel.
DEV_ONLY = ("pytest", "moto", "hypothesis", "polars", "pandas", "sphinx", "fastexcel", "pyarrow")


def _matrix() -> object:
    spec = importlib.util.spec_from_file_location("test_matrix", REPO / "scripts" / "test_matrix.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MATRIX = _matrix()
WANTED = os.environ.get("FEISHU_VC_DIST_LEGS", "3.3")
LEGS = [leg for leg in MATRIX.LEGS if WANTED == "all" or leg[0] in WANTED.split(",")]  # type: ignore[attr-defined]


def built(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    if len(found) != 1:
        pytest.fail(f"expected one {pattern} in {DIST}, found {[p.name for p in found]}: run `make dist`")
    return found[0]


def test_the_wheel_holds_the_package_and_nothing_of_the_repository() -> None:
    wheel = built("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    from airflow_provider_feishu_vc import __version__

    assert wheel.name.startswith(f"airflow_provider_feishu_vc-{__version__}-py3-none-any")
    assert f"Version: {__version__}" in metadata and "License-Expression: Apache-2.0" in metadata
    # Development tools are a dependency group (PEP 735), never an extra users can see or install.
    assert re.findall(r"^Provides-Extra: (.+)$", metadata, re.MULTILINE) == ["tables"], metadata
    assert "airflow_provider_feishu_vc/py.typed" in names
    assert "airflow_provider_feishu_vc/testing/emulator/__main__.py" in names
    assert "airflow_provider_feishu_vc/tables/contract.py" in names
    provider_entry = "provider_info = airflow_provider_feishu_vc.get_provider_info:get_provider_info"
    assert re.search(r"\[apache_airflow_provider\]\s*\n" + re.escape(provider_entry), entry_points), entry_points
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"airflow_provider_feishu_vc", f"airflow_provider_feishu_vc-{__version__}.dist-info"}, tops
    assert not [n for n in names if re.search(r"(^|/)(tests?|benchmarks|docs|example_dags)/", n)]


def test_the_sdist_carries_the_guides_readable_as_markdown() -> None:
    import tarfile

    with tarfile.open(built("*.tar.gz")) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        member = archive.extractfile(next(m for m in archive.getmembers() if m.name.endswith("/docs/first-dag.md")))
        assert member is not None
        first_dag = member.read().decode()
    assert {
        "docs/first-dag.md",
        "docs/testing.md",
        "docs/tables.md",
        "example_dags/example_feishu_vc_first_dag.py",
    } <= names
    assert not [name for name in names if name.startswith("docs/_build")]
    assert "FeishuVCExportOperator(" in first_dag and "{literalinclude}" not in first_dag


class CleanInstall:
    def __init__(self, root: Path, airflow_minor: str, airflow: str, python: str) -> None:
        self.root, self.airflow_minor, self.airflow_version = root, airflow_minor, airflow
        self.venv = root / "venv"
        self.python = self.venv / "bin" / "python"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FEISHU", "VIRTUAL_ENV", "PYTHON"))},
            "AIRFLOW_HOME": str(root / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        }
        started = time.monotonic()
        subprocess.run([str(UV), "venv", "-q", "--python", MATRIX.interpreter(python), str(self.venv)], check=True)  # type: ignore[attr-defined]
        lock = MATRIX.lock_path(airflow_minor, python)  # type: ignore[attr-defined]
        subprocess.run(
            [str(UV), "pip", "install", "-q", "--python", str(self.python), f"apache-airflow=={airflow}",
             str(built("*.whl")), "-c", str(lock)],
            check=True, env=self.env,
        )  # fmt: skip
        print(f"clean install of Airflow {airflow} + the wheel: {time.monotonic() - started:.0f} s", flush=True)

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def airflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run(str(self.venv / "bin" / "airflow"), *args)
        assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done


@pytest.fixture(scope="module", params=LEGS, ids=[f"airflow-{leg[0]}" for leg in LEGS])
def clean(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CleanInstall]:
    airflow_minor, airflow, python, _ = request.param
    root = tmp_path_factory.mktemp(f"clean-{airflow_minor}")
    (root / "dags").mkdir()
    for example in (REPO / "example_dags").glob("example_*.py"):
        shutil.copy(example, root / "dags")
    install = CleanInstall(root, airflow_minor, airflow, python)
    install.airflow("db", "migrate")
    yield install


def json_out(done: subprocess.CompletedProcess[str]) -> Any:
    """The JSON document that ends a CLI's output (Airflow may log lines, some starting with "[", before it)."""
    lines = done.stdout.splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if lines[start].startswith(("[", "{")):
            try:
                return json.loads("\n".join(lines[start:]))
            except json.JSONDecodeError:
                continue
    raise AssertionError(f"no JSON in the output:\n{done.stdout[-3000:]}")


def test_only_airflow_and_the_providers_own_dependencies_are_installed(clean: CleanInstall) -> None:
    probe = clean.run(str(clean.python), "-c", "import importlib.util as u, sys; "
                      f"print([m for m in {DEV_ONLY!r} if u.find_spec(m)])")  # fmt: skip
    assert probe.returncode == 0 and probe.stdout.strip() == "[]", probe.stdout + probe.stderr
    version = clean.run(str(clean.python), "-c", "import airflow; print(airflow.__version__)")
    assert version.stdout.strip() == clean.airflow_version


def test_airflow_lists_the_provider(clean: CleanInstall) -> None:
    from airflow_provider_feishu_vc import __version__

    providers = json_out(clean.airflow("providers", "list", "-o", "json"))
    assert {"package_name": "airflow-provider-feishu-vc", "version": __version__}.items() <= next(
        p for p in providers if p["package_name"] == "airflow-provider-feishu-vc"
    ).items()
    hooks = clean.airflow("providers", "hooks", "-o", "json").stdout
    assert "feishu_vc" in hooks and "FeishuVCHook" in hooks


def test_a_connection_added_from_the_cli_passes_its_test_against_the_wheels_emulator(clean: CleanInstall) -> None:
    emulator = subprocess.Popen(
        [str(clean.python), "-m", "airflow_provider_feishu_vc.testing.emulator", "--port", "0"],
        env=clean.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert emulator.stdout is not None
        url = None
        for line in emulator.stdout:
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            if found:
                url = found.group(0)
                break
        assert url, "the emulator printed no URL"
        clean.airflow("connections", "add", "feishu_vc_default", "--conn-type", "feishu_vc", "--conn-host", url,
                      "--conn-login", "cli_emulator", "--conn-password", "emulator-secret")  # fmt: skip
        stored = json_out(clean.airflow("connections", "get", "feishu_vc_default", "-o", "json"))
        assert stored[0]["conn_type"] == "feishu_vc"
        tested = clean.airflow("connections", "test", "feishu_vc_default")
        assert "Connection success!" in tested.stdout, tested.stdout
        # The same test with a wrong secret reaches the emulator and reports Feishu's own code for it.
        clean.airflow("connections", "add", "feishu_vc_wrong", "--conn-type", "feishu_vc", "--conn-host", url,
                      "--conn-login", "cli_emulator", "--conn-password", "not-the-secret")  # fmt: skip
        refused = clean.run(str(clean.venv / "bin" / "airflow"), "connections", "test", "feishu_vc_wrong")
        said = refused.stdout + refused.stderr
        assert "Connection failed!" in said and "10015" in said and "not-the-secret" not in said, said
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


def test_the_example_dags_parse(clean: CleanInstall) -> None:
    errors = json_out(clean.airflow("dags", "list-import-errors", "--local", "-o", "json"))
    assert errors == [] or errors == {}, errors
    listed = json_out(clean.airflow("dags", "list", "--local", "-o", "json"))
    assert EXAMPLE_DAG_IDS <= {dag["dag_id"] for dag in listed}


def test_the_emulators_help_runs_and_shows_its_defaults(clean: CleanInstall) -> None:
    done = clean.run(str(clean.python), "-m", "airflow_provider_feishu_vc.testing.emulator", "--help")
    assert done.returncode == 0, done.stderr
    shown = re.sub(r"\s+", " ", done.stdout)
    assert "(default: cli_emulator)" in shown and "AIRFLOW_CONN_FEISHU_VC_DEFAULT" in shown, shown
