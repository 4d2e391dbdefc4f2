# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all bench lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: setup
	MUJOCO_GL=egl $(VENV)/bin/embodied demo

test: setup
	MUJOCO_GL=egl $(VENV)/bin/pytest -q

test-all: setup
	MUJOCO_GL=egl $(VENV)/bin/pytest -q -m "slow or not slow"

lint: setup
	$(VENV)/bin/ruff check embodied tests bench

bench: setup
	for f in bench/bench_*.py; do MUJOCO_GL=egl $(VENV)/bin/python $$f || exit 1; done
