# pynatsd: make run | make test | make bench | make lint
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv run test test-fast bench bench-quick lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Development server: client port 4222 (TLS offered, plain allowed), monitoring on 8222.
run: venv
	$(PY) -m pynatsd certs .dev-certs --client alice --client bob --quiet-if-present
	$(PY) -m pynatsd -c conf/dev.conf

# Byte-compiled first: with PYTHONDONTWRITEBYTECODE set, every server process a test starts
# would otherwise compile pynatsd again (~150 ms CPU each).
test: venv
	$(PY) -m compileall -q src tests bench
	$(PY) -m pytest -q -p no:cacheprovider

bench: venv
	$(PY) -m bench

bench-quick: venv
	$(PY) -m bench --quick

lint: venv
	$(PY) -m ruff check src tests bench
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .dev-certs build src/*.egg-info
