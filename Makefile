# qemu-init — developer and packaging targets.
#   make demo    run the built-in demo in a sandbox root (touches nothing else)
#   make test    install what the tests need (Debian packages, a venv) and run them
#   make golden  rewrite the golden files after a deliberate change; review the diff
#   make bench   run the benchmarks, print the table, write bench/results/latest.json

PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
DEMO_ROOT ?= /tmp/qemu-init-demo
PYTEST_ARGS ?=

.PHONY: all demo test deps golden bench venv clean

all: venv

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: venv
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sh contrib/demo.sh "$(DEMO_ROOT)"

deps:
	sh .ci/install-deps

test: deps venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

golden: venv
	$(VENV)/bin/pytest tests/unit/test_golden.py --update-golden

bench: deps venv
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
