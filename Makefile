# MicroPosts: every target creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PROTOS := $(wildcard protos/microposts/v1/*.proto)

.PHONY: venv protos unasync check-protos run test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres,fast]'
	touch $(STAMP)

## protos: regenerate the stubs in client/microposts/v1 from protos/ (never edit them by hand)
protos: $(STAMP)
	$(PY) scripts/genprotos.py client

## unasync: regenerate the blocking client (_sync_client.py) from the asyncio one (_async_client.py)
unasync: $(STAMP)
	$(PY) scripts/unasync.py

## run: start the server on the embedded default store (sqlite:///microposts.db)
run: $(STAMP)
	$(VENV)/bin/microposts-server

## test: the whole test suite (starts the local PostgreSQL if it is down)
test: $(STAMP)
	scripts/ensure-postgres
	$(PY) -m pytest $(PYTEST_ARGS)

## lint: buf lint on the contract, ruff and mypy --strict on our code
lint: $(STAMP)
	$(VENV)/bin/buf lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## bench: the performance budget (docs/design.md), printed as ratios to a bare grpc.aio echo
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
