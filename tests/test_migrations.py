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
