# Two commands a newcomer needs: `make run` and `make test`. Both install first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install dev lock run sandbox test test-pg lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2> /dev/null

# The locked, hash-checked dependencies first, then the project itself without resolving
# anything again. setuptools' build warnings are noise for a newcomer: kept in a log,
# shown on failure.
install: $(BIN)/python
	@echo "Installing into $(VENV) ..."
	@{ $(BIN)/python -m pip install -q --require-hashes -r requirements.lock \
	  && $(BIN)/python -m pip install -q --no-deps -e . ; } 2> $(VENV)/pip.log \
	  || { cat $(VENV)/pip.log; exit 1; }

dev: $(BIN)/python
	@echo "Installing (with dev tools) into $(VENV) ..."
	@{ $(BIN)/python -m pip install -q --require-hashes -r requirements-dev.lock \
	  && $(BIN)/python -m pip install -q --no-deps -e . ; } 2> $(VENV)/pip.log \
	  || { cat $(VENV)/pip.log; exit 1; }

# Re-resolve the lock files from pyproject.toml (UPGRADE=--upgrade for newest releases).
# The runtime lock is constrained by the dev lock, so both pin the same versions.
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links
lock: $(BIN)/python
	$(BIN)/python -m pip install -q pip-tools
	$(BIN)/pip-compile $(LOCK_FLAGS) $(UPGRADE) --extra dev -o requirements-dev.lock pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) -c requirements-dev.lock -o requirements.lock pyproject.toml

# Starts the real bot when TELEGRAM_BOT_TOKEN is set, the offline sandbox otherwise.
run: install
	$(BIN)/python -m bot run --sandbox-if-no-token

sandbox: install
	$(BIN)/python -m bot sandbox

test: dev
	$(BIN)/python -m pytest

# The suite on PostgreSQL (a server on 127.0.0.1:5432 that trusts user postgres, or PG_URL).
PG_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
test-pg: dev
	TEST_DATABASE_URL=$(PG_URL) $(BIN)/python -m pytest

lint: dev
	$(BIN)/ruff check bot handlers tests bench
	$(BIN)/mypy bot handlers
	$(BIN)/lint-imports

bench: dev
	$(BIN)/python bench/orders.py
	$(BIN)/python bench/accounts.py
	$(BIN)/python bench/redact.py
	$(BIN)/python bench/update_claims.py
	$(BIN)/python bench/confirm_latency.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/concurrency.py
	$(BIN)/python bench/alerts.py
	$(BIN)/python bench/alerts_load.py
	$(BIN)/python bench/feeds.py
	$(BIN)/python bench/capacity.py
	$(BIN)/python bench/soak.py
	$(BIN)/python bench/fuzz.py
	$(BIN)/python bench/chaos.py

clean:
	rm -rf $(VENV) data sandbox-out *.egg-info
