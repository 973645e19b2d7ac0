"""The column types behave the same on SQLite and PostgreSQL: exact decimals, aware UTC
timestamps, JSON, booleans and 64-bit Telegram ids all come back as they went in.

Each test runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL names a server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.exc import StatementError
from sqlmodel import select

from bot.db.engine import Database
from bot.db.models import Alert, AuditLog, Feed, User
from tests import dbs

SUPERGROUP = -1001234567890  # Telegram supergroup ids are -100 followed by ten digits
BIG_USER = 8_123_456_789  # user ids handed out today are past 2**32


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
    elif dbs.server_url() is None:
        pytest.skip("PostgreSQL: set TEST_DATABASE_URL=postgresql+asyncpg://...")
    else:
        url = dbs.test_database_url(tmp_path, "t.db")
    d = Database(url)
    await d.migrate()
    yield d
    await d.dispose()


async def test_decimals_come_back_exact(db: Database) -> None:
    values = [Decimal("0.00000001"), Decimal("123456789012.123456789"), Decimal("-0.5"),
              Decimal("60000"), Decimal("1E-12")]
    async with db.session() as s:
        s.add(User(id=BIG_USER))
        await s.flush()
        for v in values:
            s.add(Alert(user_id=BIG_USER, chat_id=BIG_USER, kind="price", symbol="XBTUSD",
                        threshold=v))
        await s.commit()
    async with db.session() as s:
        got = [a.threshold for a in (await s.exec(select(Alert).order_by(Alert.id))).all()]
    assert got == values
    assert all(isinstance(g, Decimal) for g in got)
    assert str(got[0]) in ("1E-8", "0.00000001")  # not 1.0000000000000001e-08 via a float


async def test_timestamps_come_back_aware_utc_and_compare_in_queries(db: Database) -> None:
    berlin = timezone(timedelta(hours=1))
    at = datetime(2026, 3, 29, 2, 30, 15, 123456, tzinfo=berlin)
    async with db.session() as s:
        s.add(User(id=1, created_at=at, last_seen_at=None))
        s.add(User(id=2, created_at=at + timedelta(hours=2)))
        await s.commit()
    async with db.session() as s:
        u = await s.get(User, 1)
        later = (await s.exec(select(User.id).where(User.created_at > at))).all()
    assert u is not None and u.created_at == at and u.created_at.tzinfo == UTC
    assert u.created_at.hour == 1 and u.created_at.microsecond == 123456
    assert u.last_seen_at is None
    assert list(later) == [2]
    async with db.session() as s:
        s.add(User(id=3, created_at=datetime(2026, 1, 1)))  # naive: refused, not guessed
        with pytest.raises(StatementError, match="naive datetime"):
            await s.commit()


async def test_json_and_booleans_round_trip(db: Database) -> None:
    detail = {"network": "testnet", "nested": {"list": [1, "two", None, 3.5]}, "emoji": "🚀ü"}
    async with db.session() as s:
        s.add(User(id=BIG_USER, notify_prefs={"fills": "on"}, blocked=True))
        s.add(AuditLog(user_id=BIG_USER, chat_id=SUPERGROUP, action="x", detail=detail))
        s.add(Feed(chat_id=SUPERGROUP, name="alpha", active=False, created_by=BIG_USER))
        s.add(Feed(chat_id=SUPERGROUP - 1, name="beta", created_by=BIG_USER))
        await s.commit()
    async with db.session() as s:
        user = await s.get(User, BIG_USER)
        log = (await s.exec(select(AuditLog))).one()
        active = (await s.exec(select(Feed.name).where(Feed.active == True))).all()  # noqa: E712
        off = (await s.exec(select(Feed.name).where(Feed.active.is_(False)))).all()  # type: ignore[attr-defined]
        blocked = (await s.exec(select(User.id).where(User.blocked))).all()
    assert user is not None and user.notify_prefs == {"fills": "on"} and user.blocked is True
    assert log.detail == detail and log.chat_id == SUPERGROUP and log.user_id == BIG_USER
    assert (list(active), list(off), list(blocked)) == (["beta"], ["alpha"], [BIG_USER])


async def test_telegram_ids_past_32_bits_are_kept(db: Database) -> None:
    async with db.session() as s:
        s.add(User(id=BIG_USER))
        await s.flush()
        s.add(Alert(user_id=BIG_USER, chat_id=SUPERGROUP, kind="price", symbol="XBTUSD",
                    threshold=Decimal(1)))
        await s.commit()
    async with db.session() as s:
        alert = (await s.exec(select(Alert).where(Alert.chat_id == SUPERGROUP))).one()
    assert (alert.user_id, alert.chat_id) == (BIG_USER, SUPERGROUP)
