# Every target installs what it needs into .venv first, from the lock (a fresh machine needs only Python 3.11), with
# bytecode compiled as pip does for users (this machine sets PYTHONDONTWRITEBYTECODE=1: every process would compile
# Airflow from source otherwise).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9

.PHONY: install test lint typecheck docs dist demo e2e e2e-local e2e-celery bench fuzz lock lock-matrix test-matrix clean

$(VENV)/.installed: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -r requirements-dev.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Three pytest-xdist workers on this two-core machine (and CI's): about 40% of the suite's time is spent waiting on
# the Airflow processes, the emulator and the clocks it starts, so a third worker fills it (suite measured at 350 s
# with two workers, 290 s with three; work stealing keeps a long test started late from holding up the end).
XDIST = -n 3 --dist worksteal

test: lint
	$(PY) -m pytest $(XDIST)

# mypy --strict over the package (settings in pyproject.toml).
typecheck: install
	$(VENV)/bin/mypy

# The documentation site, warnings as errors, then its pages opened in headless Chromium (Graphviz and Chromium
# come from Debian's packages when missing).
docs: install
	$(PY) -m tests.os_packages dot=graphviz chromium
	rm -rf docs/_build/html docs/_build/doctrees
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	$(PY) -m pytest -m docs tests/docs_site -p no:cacheprovider -q
	@echo "docs: file://$(CURDIR)/docs/_build/html/index.html"

# The sdist and the wheel, checked by twine, then the wheel installed into clean virtualenvs beside only a released
# Airflow (DIST_LEGS: Airflow minors of the test matrix, default 3.3; "all" for every leg).
DIST_LEGS ?= 3.3
dist: install
	rm -rf dist
	$(PY) -m build --sdist --wheel --outdir dist . >/dev/null
	$(VENV)/bin/twine check --strict dist/*
	FEISHU_VC_DIST_LEGS="$(DIST_LEGS)" $(PY) -m pytest -m dist tests/dist -p no:cacheprovider -q

demo: install
	$(PY) scripts/demo.py

lock:
	$(VENV)/bin/uv pip compile pyproject.toml --extra tables --group dev --python-version 3.11 -o requirements-dev.lock

# The whole suite on Airflow 3.1, 3.2 and 3.3 (one leg per Python 3.10, 3.12, 3.13; make test is 3.3 on 3.11).
test-matrix: install
	FEISHU_VC_XDIST="$(XDIST)" $(PY) scripts/test_matrix.py

lock-matrix: install
	$(PY) scripts/test_matrix.py --lock

clean:
	rm -rf $(VENV) .matrix .pytest_cache .ruff_cache dist docs/_build

bench: install
	AIRFLOW_HOME=$$(mktemp -d) $(PY) benchmarks/run.py $(BENCH_ARGS)

# Property tests of every boundary, deep: at least 10,000 examples each (make test runs a quick, derandomized profile).
fuzz: install
	$(PY) scripts/fuzz.py

# The real deployments: LocalExecutor on one host (e2e-local), then a Celery fleet (e2e-celery). Each starts its own
# PostgreSQL (and Redis), from Debian's packages when missing.
e2e: e2e-local e2e-celery

e2e-local: install
	$(PY) -m pytest -m e2e tests/e2e --ignore=tests/e2e/test_fleet.py -s -p no:cacheprovider

e2e-celery: install
	$(PY) -m pytest -m e2e tests/e2e/test_fleet.py -s -p no:cacheprovider
