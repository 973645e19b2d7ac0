# Two commands a newcomer needs: `make run` and `make test`. Both install first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install dev run sandbox test test-pg lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2> /dev/null

# setuptools' build warnings are noise for a newcomer: kept in a log, shown on failure.
install: $(BIN)/python
	@echo "Installing into $(VENV) ..."
	@$(BIN)/python -m pip install -q -e . 2> $(VENV)/pip.log || { cat $(VENV)/pip.log; exit 1; }

dev: $(BIN)/python
	@echo "Installing (with dev tools) into $(VENV) ..."
	@$(BIN)/python -m pip install -q -e '.[dev]' 2> $(VENV)/pip.log || { cat $(VENV)/pip.log; exit 1; }

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

bench: dev
	$(BIN)/python bench/orders.py
	$(BIN)/python bench/confirm_latency.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/alerts.py
	$(BIN)/python bench/feeds.py

clean:
	rm -rf $(VENV) data sandbox-out *.egg-info
