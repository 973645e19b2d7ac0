"""Read sessions and the user cache (issue #13: the database saturated before Telegram).

On SQLite a `Database.read()` transaction begins deferred: it reads while a writer holds
the one writer turn, and does not queue behind it. The user cache drops a row on every
commit that changed it, and a read that raced such a commit cannot put the old row back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlmodel import select

from bot.db.engine import Database, is_sqlite
from bot.db.models import User
from bot.users import UserCache, Users, UserView
from tests.dbs import test_database_url


@pytest.fixture
async def db(tmp_path: Path) -> Database:
    d = Database(test_database_url(tmp_path))
    await d.migrate()
    yield d  # type: ignore[misc]
    await d.dispose()


async def test_a_read_does_not_wait_for_a_writer_holding_its_turn(db: Database) -> None:
    async with db.session() as w:
        w.add(User(id=1, first_name="Ann"))
        await w.commit()
    holding, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.session() as s:
            user = await s.get(User, 1)  # BEGIN IMMEDIATE on SQLite: the turn is ours
            assert user is not None
            user.first_name = "Anna"
            s.add(user)
            await s.flush()
            holding.set()
            await release.wait()
            await s.commit()

    task = asyncio.create_task(writer())
    await holding.wait()
    async with asyncio.timeout(5):  # before read sessions, this waited for the writer
        async with db.read() as r:
            seen = await r.get(User, 1)
    assert seen is not None and seen.first_name == "Ann"  # the committed row, not the flush
    release.set()
    await task
    async with db.read() as r:
        row = (await r.exec(select(User.first_name).where(User.id == 1))).one()
    assert row == "Anna"


async def test_a_read_session_refuses_to_write(db: Database) -> None:
    with pytest.raises(RuntimeError, match="do not write"):
        async with db.read() as r:
            r.add(User(id=2))
            await r.commit()
    async with db.read() as r:
        assert await r.get(User, 2) is None


async def test_sqlite_reads_begin_deferred_and_writes_immediate(db: Database) -> None:
    if not is_sqlite(db.url):
        pytest.skip("SQLite's transaction modes")
    from sqlalchemy import event

    seen: list[str] = []

    def record(_c: object, _cur: object, sql: str, *_: object) -> None:
        seen.append(sql.split()[0] + (" IMMEDIATE" if "IMMEDIATE" in sql else ""))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    async with db.read() as r:
        await r.get(User, 1)
    async with db.session() as s:
        s.add(User(id=3))
        await s.commit()
    event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    assert seen[0] == "BEGIN" and "BEGIN IMMEDIATE" in seen[2:]


async def test_the_cached_view_follows_every_committed_write(db: Database) -> None:
    users = Users(db, admin_ids=(), allowed_ids=())
    assert await users.view(7) is None  # no row yet: cached as such
    await users.touch_user(7, "ann", "Ann")  # the first contact's row
    view = await users.view(7)
    assert view is not None and view.first_name == "Ann" and view.default_symbol == "XBTUSD"
    async with db.session() as s:  # any service's ORM write (/settings, /use)
        user = await s.get(User, 7)
        assert user is not None
        user.default_symbol, user.active_network = "ETHUSD", "testnet"
        s.add(user)
        await s.commit()
    view = await users.view(7)
    assert view is not None and (view.default_symbol, view.active_network) == (
        "ETHUSD", "testnet")
    await users.mark_blocked(7)
    view = await users.view(7)
    assert view is not None and view.blocked
    await users.touch_user(7, "ann", "Ann")  # she came back: reachable again
    view = await users.view(7)
    assert view is not None and not view.blocked
    async with db.session() as s:  # a rolled-back change leaves the view as it was
        user = await s.get(User, 7)
        assert user is not None
        user.default_symbol = "SOLUSDT"
        s.add(user)
        await s.flush()
        await s.rollback()
    view = await users.view(7)
    assert view is not None and view.default_symbol == "ETHUSD"


def test_a_fill_that_raced_a_commit_is_not_kept() -> None:
    cache = UserCache()
    old = UserView(id=1, username=None, first_name="Ann", active_network="testnet",
                   default_symbol="XBTUSD", notify_prefs={}, blocked=False, tz="UTC",
                   quiet_start=None, quiet_end=None)
    generation = cache.generation  # a reader starts, reads the old row...
    cache.invalidate({1})  # ...a /use commits meanwhile...
    cache.put(1, old, generation)  # ...and the reader's fill comes too late
    assert cache.get(1) == (False, None)
    cache.put(1, old, cache.generation)
    assert cache.get(1) == (True, old)


async def test_touch_user_twice_at_once_makes_one_row(db: Database) -> None:
    users = Users(db, admin_ids=(), allowed_ids=())
    await asyncio.gather(*(users.touch_user(9, "twin", "Twin") for _ in range(5)))
    async with db.read() as r:
        rows = (await r.exec(select(User).where(User.id == 9))).all()
    assert len(rows) == 1 and rows[0].last_seen_at is not None


async def test_bulk_text_reads_columns_in_one_snapshot_and_a_caller_may_stop_early(
        db: Database) -> None:
    from bot.db.engine import copy_text_value, is_postgres

    if not is_postgres(db.url):
        with pytest.raises(NotImplementedError):  # COPY is PostgreSQL's
            async for _ in db.bulk_text("SELECT 1"):
                pass
        return
    async with db.session() as w:
        for uid in range(1, 41):
            w.add(User(id=uid, first_name=None if uid == 7 else f"a\tb\\{uid}"))
        await w.commit()
    sql = "SELECT id, first_name FROM users WHERE id > 0"
    for _ in range(3):  # stopped after a chunk: the connection is dropped, not reused mid-COPY
        async for columns in db.bulk_text(sql, chunk_bytes=64):
            assert len(columns) == 2 and 0 < len(columns[0]) < 40
            break
    seen: list[list[bytes]] = []

    def more_than(rows: list[object]) -> str:
        assert len(rows) == 1
        return " AND id > 10"

    async for columns in db.bulk_text(sql, chunk_bytes=64,
                                      probe=("SELECT count(*) FROM users", more_than)):
        assert len({len(c) for c in columns}) == 1
        seen.append(columns[0])
        names = dict(zip(map(int, columns[0]), map(copy_text_value, columns[1]), strict=True))
        assert all(names[i] == f"a\tb\\{i}" for i in names)
    assert len(seen) > 2 and sorted(int(i) for c in seen for i in c) == list(range(11, 41))
    async with db.read() as r:  # the pool still serves
        assert len((await r.exec(select(User))).all()) == 40
