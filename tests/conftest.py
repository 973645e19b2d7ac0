"""Session-wide: the BitMEX contract check watches every simulator of the run, and
the database backend of the run (see tests/dbs.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.sandbox.bitmex import server
from tests import dbs
from tests.contract import ContractChecker


@pytest.fixture(scope="session", autouse=True)
def bitmex_contract() -> Iterator[ContractChecker]:
    """Every request the client sends to a simulator and every answer it gives (REST rows
    and WebSocket rows), checked against BitMEX's published shape; the session fails at
    its end when something did not fit (see tests/contract.py)."""
    checker = ContractChecker()
    server.OBSERVERS.append(checker)
    yield checker
    server.OBSERVERS.remove(checker)
    assert not checker.problems, "BitMEX contract broken:\n" + checker.report()


@pytest.fixture(scope="session", autouse=True)
def _test_databases() -> Iterator[None]:
    yield
    if dbs.server_url() is not None:
        dbs.POOL.drop_all()


@pytest.fixture(autouse=True)
def _fresh_databases_per_test() -> Iterator[None]:
    dbs.POOL.next_test()
    yield


def pytest_report_header() -> str:
    url = dbs.server_url()
    if url is None:
        return "database: SQLite (set TEST_DATABASE_URL=postgresql+asyncpg://... for PostgreSQL)"
    return f"database: PostgreSQL at {url.split('@')[-1]}"
