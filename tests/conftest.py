"""Suite-wide fixtures: the database backend (see tests/dbs.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import dbs


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
