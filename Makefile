# pyimg developer entry points.  `make demo` and `make test` are all a fresh
# machine needs (after .ci/run's apt packages; `make deps` installs them).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: deps venv demo test test-fast bench lint clean

deps:
	bash .ci/apt-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: deps venv
	$(BIN)/python -m fixtures.demo

test: venv
	$(BIN)/pytest -q

test-fast: venv
	$(BIN)/pytest -q tests/unit

bench: deps venv
	$(BIN)/python -m bench

lint: venv
	$(BIN)/ruff check src tests fixtures bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .cache build *.egg-info
