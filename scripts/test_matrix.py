"""Run the whole test suite on every supported Airflow minor (make test-matrix).

Each leg is a fresh virtualenv made by ``uv`` from a pyenv CPython, installed from the leg's lock in
``matrix/`` (Airflow's constraints files are not reachable here: each leg's resolution is locked instead;
``make lock-matrix`` refreshes them). The main ``make test`` run is the Airflow 3.3 / Python 3.11 leg.

python scripts/test_matrix.py            # every leg
python scripts/test_matrix.py 3.1        # the legs of one Airflow minor
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).with_name("uv")
#: (Airflow minor, its latest patch, Python, extra resolver options): at least one leg per supported Python.
LEGS: list[tuple[str, str, str, list[str]]] = [
    ("3.1", "3.1.8", "3.10", []),
    # Airflow 3.2.2's in-process execution API (dag.test) breaks with the fastapi / cadwyn releases that came
    # after it (pydantic discriminator errors, a removed FastAPI argument): resolve as of its release period.
    ("3.2", "3.2.2", "3.12", ["--exclude-newer", "2026-07-01", "--exclude-newer-package", "lark-oapi=2026-11-26"]),
    ("3.3", "3.3.2", "3.13", []),
]


#: The pytest-xdist options of ``make test`` (the Makefile passes its own; these are for running the script alone).
XDIST = os.environ.get("FEISHU_VC_XDIST", "-n 3 --dist worksteal").split()


def lock_path(airflow: str, python: str) -> Path:
    return REPO / "matrix" / f"airflow-{airflow}-py{python}.txt"


def interpreter(python: str) -> str:
    """The newest pyenv CPython of that minor version."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = sorted(root.glob(f"{python}.*/bin/python"), key=lambda p: [int(x) for x in p.parts[-3].split(".")])
    if not found:
        raise SystemExit(f"no CPython {python} under {root}: install it with pyenv")
    return str(found[-1])


def lock(airflow: str, patch: str, python: str, options: list[str]) -> None:
    pin = REPO / "matrix" / f".pin-{airflow}.txt"
    pin.write_text(f"apache-airflow=={patch}\n")
    try:
        subprocess.run(
            [str(UV), "pip", "compile", "pyproject.toml", "--extra", "tables", "--group", "dev", "-q",
             "--python-version", python, "-c", str(pin.relative_to(REPO)),
             "-o", str(lock_path(airflow, python).relative_to(REPO)), *options],
            cwd=REPO, check=True,
        )  # fmt: skip
    finally:
        pin.unlink()


def run_leg(airflow: str, python: str) -> tuple[bool, str, float]:
    started = time.monotonic()
    venv = REPO / ".matrix" / f"airflow-{airflow}-py{python}"
    leg_python = venv / "bin" / "python"
    subprocess.run([str(UV), "venv", "-q", "--clear", "--python", interpreter(python), str(venv)], check=True)
    # Bytecode compiled at install, as pip does for users: PYTHONDONTWRITEBYTECODE=1 on the CI machine would otherwise
    # make every process of the suite compile Airflow from source.
    for args in (["--compile-bytecode", "-r", str(lock_path(airflow, python))], ["--no-deps", "-e", str(REPO)]):
        subprocess.run([str(UV), "pip", "install", "-q", "--python", str(leg_python), *args], check=True)
    print(f"== leg Airflow {airflow} / Python {python}: installed in {time.monotonic() - started:.0f} s", flush=True)
    result = subprocess.run(
        [str(leg_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *XDIST], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    print(result.stdout[-6000:] if result.returncode else "\n".join(result.stdout.splitlines()[-3:]), flush=True)
    summary = re.findall(r"^=* ?(\d+ (?:passed|failed).*?) in [\d.]+s", result.stdout, re.MULTILINE)
    return result.returncode == 0, (summary[-1] if summary else "no summary"), time.monotonic() - started


def main(argv: list[str]) -> int:
    if argv[:1] == ["--lock"]:
        for airflow, patch, python, options in LEGS:
            lock(airflow, patch, python, options)
        return 0
    legs = [leg for leg in LEGS if not argv or leg[0] in argv]
    outcomes = []
    for airflow, patch, python, _ in legs:
        ok, summary, seconds = run_leg(airflow, python)
        outcomes.append((f"Airflow {patch} / Python {python}", ok, summary, seconds))
    print("\nleg | result | tests | minutes")
    for name, ok, summary, seconds in outcomes:
        print(f"{name} | {'PASS' if ok else 'FAIL'} | {summary} | {seconds / 60:.1f}")
    return 0 if all(ok for _, ok, _, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
