# MicroPosts: every target creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PROTOS := $(wildcard protos/microposts/v1/*.proto)
# The contract as last released: `buf breaking` checks protos/ against it (README, "Releasing").
BASELINE := protos/released/microposts.v1.binpb

.PHONY: venv protos unasync contract-baseline run test lint bench clean

venv: $(STAMP)

# Both distributions at once, from this checkout: the client (and the generated
# stubs) from client/, the server from here; the server depends on the client,
# which is on no package index.
$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e './client[typing,otel]' -e '.[dev,postgres,otel]'
	touch $(STAMP)

## protos: regenerate the stubs in client/microposts/v1 from protos/ (never edit them by hand)
protos: $(STAMP)
	$(PY) scripts/genprotos.py client

## unasync: regenerate the blocking client (_sync_client.py) from the asyncio one (_async_client.py)
unasync: $(STAMP)
	$(PY) scripts/unasync.py

## contract-baseline: make protos/ the released contract that `make lint` checks changes against (at a release only)
contract-baseline: $(STAMP)
	$(VENV)/bin/buf build --exclude-source-info -o $(BASELINE)

## run: start the server on the embedded default store (sqlite:///microposts.db)
run: $(STAMP)
	$(VENV)/bin/microposts-server

## test: the whole test suite (starts the local PostgreSQL if it is down)
test: $(STAMP)
	scripts/ensure-postgres
	$(PY) -m pytest $(PYTEST_ARGS)

## lint: buf lint and buf breaking (against the released contract) on the contract, ruff and mypy --strict on our code
lint: $(STAMP)
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf breaking --against $(BASELINE)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## bench: the performance budget (docs/design.md), printed as ratios to a bare grpc.aio echo
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info client/build client/*.egg-info
