"""Migrations build the schema from nothing, go down and up, and match the models."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import bot.db.models  # noqa: F401
from bot.db.engine import downgrade, upgrade

TABLES = {
    "users", "api_credentials", "order_intents", "alerts", "schedules",
    "liqfeed_subscriptions", "audit_log", "feeds", "signals", "signal_updates", "follows",
    "follower_orders", "live_cursors",
}


def test_one_linear_history() -> None:
    from alembic.script import ScriptDirectory

    from bot.db.engine import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite:///:memory:"))
    assert len(script.get_heads()) == 1
    revisions = list(script.walk_revisions())
    assert [r.revision for r in reversed(revisions)] == sorted(r.revision for r in revisions)


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("select name from sqlite_master where type='table'").fetchall()
    return {r[0] for r in rows} - {"alembic_version"}


def test_upgrade_down_up_and_models_agree(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "m.db"
    url = f"sqlite+aiosqlite:///{db}"
    upgrade(url)
    assert TABLES <= _tables(db)
    downgrade(url, "base")
    assert _tables(db) == set()
    upgrade(url)
    assert TABLES <= _tables(db)

    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"render_as_batch": True})
        diff = compare_metadata(ctx, SQLModel.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_database_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    import asyncio

    from sqlalchemy import text

    from bot.db.engine import Database

    async def go() -> tuple[str, int, int]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
        await db.migrate()
        async with db.engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            fks = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
            busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
        await db.dispose()
        return mode, fks, busy

    mode, fks, busy = asyncio.run(go())
    assert (mode, fks) == ("wal", 1)
    assert busy >= 1000


def test_upgrade_down_up_and_models_agree_on_postgresql() -> None:
    """The same history on PostgreSQL (in the suite's PostgreSQL run)."""
    import asyncio
    import os

    import pytest
    from sqlalchemy import text

    from bot.db.engine import make_engine
    from tests import dbs

    if dbs.server_url() is None:
        pytest.skip("PostgreSQL: set TEST_DATABASE_URL=postgresql+asyncpg://...")
    name = f"mig_{os.getpid()}"
    url = dbs.create_database(name)

    async def inspect() -> tuple[set[str], list[object], str | None]:
        engine = make_engine(url)
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).all()
            diff = await conn.run_sync(lambda c: compare_metadata(
                MigrationContext.configure(c), SQLModel.metadata))
            kind = (await conn.execute(text(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'feeds' AND column_name = 'chat_id'"))).scalar()
        await engine.dispose()
        return {r[0] for r in rows} - {"alembic_version"}, diff, kind

    try:
        upgrade(url)
        tables, diff, kind = asyncio.run(inspect())
        assert TABLES <= tables
        assert diff == [], f"models and migrations disagree on PostgreSQL: {diff}"
        assert kind == "bigint"  # supergroup ids do not fit PostgreSQL's 32-bit integer
        downgrade(url, "base")
        assert asyncio.run(inspect())[0] == set()
        upgrade(url)
        assert TABLES <= asyncio.run(inspect())[0]
    finally:
        dbs.drop_database(name)
