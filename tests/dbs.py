"""The database a test runs on: a SQLite file in its temp folder, or PostgreSQL.

Set TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test and every test that
asks `test_database_url` runs on that server instead. The session creates its own throwaway
databases there (test_<pid>_0, _1, ...: one per database a single test opens at once),
migrates each once, empties them between tests (TRUNCATE is far faster than migrating again)
and drops them at the end. The database named in the URL is only used to create the others.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

ENV = "TEST_DATABASE_URL"
T = TypeVar("T")


def server_url() -> str | None:
    """The PostgreSQL URL the suite was asked to run on, or None (SQLite)."""
    url = os.environ.get(ENV, "").strip()
    if not url:
        return None
    if not url.startswith("postgresql+asyncpg://"):
        raise RuntimeError(f"{ENV} must be a postgresql+asyncpg:// URL, got {url.split(':')[0]}")
    return url


def _blocking(coro: Coroutine[Any, Any, T]) -> T:
    # Callers may be sync code inside the session's running loop: a loop of its own, elsewhere.
    with ThreadPoolExecutor(1) as worker:
        return worker.submit(asyncio.run, coro).result()


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_database(url: str, name: str) -> str:
    """The same server URL naming another database."""
    head, _, tail = url.rpartition("/")
    query = tail.partition("?")[2]
    return f"{head}/{name}" + (f"?{query}" if query else "")


async def _admin(url: str, *sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_dsn(url))
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


def create_database(name: str) -> str:
    """A new, empty database on the test server; its URL."""
    url = server_url()
    assert url is not None
    _blocking(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                     f'CREATE DATABASE "{name}"'))
    return with_database(url, name)


def drop_database(name: str) -> None:
    url = server_url()
    assert url is not None
    _blocking(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_dsn(url))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                "AND tablename <> 'alembic_version'")
        if rows:
            # The last test's bot is stopped, but a connection it left open inside a
            # transaction would hold TRUNCATE's lock: and since the test loop is blocked
            # right here, its task could never finish that transaction. Each test starts
            # with nobody else on its database.
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            await conn.execute("SET lock_timeout = '10s'")
            names = ", ".join(f'"{r["tablename"]}"' for r in rows)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


class _Pool:
    def __init__(self) -> None:
        self.prefix = f"test_{os.getpid()}"
        self.migrated: list[str] = []
        self.this_test: dict[str, str] = {}

    def allocate(self, key: str) -> str:
        if key in self.this_test:
            return self.this_test[key]
        name = f"{self.prefix}_{len(self.this_test)}"
        if name in self.migrated:
            url = with_database(server_url() or "", name)
            _blocking(_truncate(url))
        else:
            from bot.db.engine import upgrade

            url = create_database(name)
            upgrade(url)
            self.migrated.append(name)
        self.this_test[key] = url
        return url

    def next_test(self) -> None:
        self.this_test.clear()

    def drop_all(self) -> None:
        for name in self.migrated:
            drop_database(name)
        self.migrated.clear()


POOL = _Pool()


def test_database_url(folder: Path, name: str = "bot.db") -> str:
    """Where a test's bot keeps its data: `folder/name` on SQLite, or an emptied PostgreSQL
    database (the same one for the same folder and name within one test)."""
    if server_url() is None:
        return f"sqlite+aiosqlite:///{folder / name}"
    return POOL.allocate(str(folder / name))


test_database_url.__test__ = False  # type: ignore[attr-defined]  # not a test, despite the name
