# Every target installs what it needs into .venv first, from the lock (a fresh machine needs only Python 3.11).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9

.PHONY: install test lint demo e2e bench fuzz lock lock-matrix test-matrix clean

$(VENV)/.installed: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip install -q --python $(PY) -r requirements-dev.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

demo: install
	$(PY) scripts/demo.py

lock:
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra tables --python-version 3.11 -o requirements-dev.lock

# The whole suite on Airflow 3.1, 3.2 and 3.3 (one leg per Python 3.10, 3.12, 3.13; make test is 3.3 on 3.11).
test-matrix: install
	$(PY) scripts/test_matrix.py

lock-matrix: install
	$(PY) scripts/test_matrix.py --lock

clean:
	rm -rf $(VENV) .matrix .pytest_cache .ruff_cache

bench: install
	AIRFLOW_HOME=$$(mktemp -d) $(PY) benchmarks/run.py $(BENCH_ARGS)

# Property tests of every boundary, deep: at least 10,000 examples each (make test runs a quick, derandomized profile).
fuzz: install
	$(PY) scripts/fuzz.py

e2e: install
	$(PY) -m pytest -m e2e tests/e2e -s -p no:cacheprovider
