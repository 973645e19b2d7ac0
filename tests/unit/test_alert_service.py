"""The alert service against a real (temporary) database and a recording notifier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlmodel import col, select

from bot import parse as it
from bot.alerts.service import AlertService
from bot.buttons import DeleteAlert, decode
from bot.db.engine import Database
from bot.db.models import Alert
from bot.errors import UserError
from bot.exchange.types import Instrument
from bot.notify import Edited, Sent
from tests.dbs import test_database_url

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Recorder:
    """A Notifier that records; `fail` makes the next sends raise (a crash mid-delivery)."""

    sent: list[tuple[int, str, str]] = field(default_factory=list)
    fail: int = 0

    async def send(self, chat_id: int, text: str, *, buttons: Any = None, silent: bool = False,
                   kind: str = "reply", thread_id: int | None = None) -> Sent | None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("telegram unreachable")
        self.sent.append((chat_id, text, kind))
        return Sent(chat_id, len(self.sent))

    async def edit(self, chat_id: int, message_id: int, text: str, *,
                   buttons: Any = None) -> Edited:
        return Edited.SHOWN

    async def photo(self, chat_id: int, png: bytes, *, caption: str = "", silent: bool = False,
                    kind: str = "reply", thread_id: int | None = None) -> Sent | None:
        return None

    async def delete(self, chat_id: int, message_id: int) -> bool:
        return True


def inst(symbol: str = "XBTUSD", last: str = "60000", funding: str = "0.0001",
         at: datetime = T0) -> Instrument:
    return Instrument.from_row({
        "symbol": symbol, "state": "Open", "typ": "FFWCSX", "tickSize": 0.5, "lotSize": 100,
        "multiplier": -100000000, "settlCurrency": "XBt", "isInverse": True,
        "lastPrice": Decimal(last), "markPrice": Decimal(last),
        "fundingRate": Decimal(funding), "timestamp": at.isoformat().replace("+00:00", "Z"),
    })


@pytest_asyncio.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    d = Database(test_database_url(tmp_path, 'a.db'))
    await d.migrate()
    yield d
    await d.dispose()


def service(db: Database, notifier: Recorder, price: str = "60000",
            **kw: Any) -> AlertService:
    async def quote(symbol: str) -> Instrument | None:
        return inst(symbol, price)

    return AlertService(db, notifier, quote=quote, clock=lambda: T0, **kw)


async def states(db: Database) -> list[str]:
    async with db.session() as s:
        return [r.state for r in (await s.exec(select(Alert).order_by(col(Alert.id)))).all()]


async def test_fires_once_and_is_marked_before_sending(db: Database) -> None:
    rec = Recorder()
    svc = service(db, rec)
    a = await svc.create(1, 1, it.PriceAlert("XBTUSD", "above", Decimal(61000), "tp"))
    await svc.on_instrument("mainnet", inst(last="60999.5"))
    await svc.on_instrument("testnet", inst(last="70000"))  # other networks are ignored
    assert rec.sent == []
    await svc.on_instrument("mainnet", inst(last="61000"))
    await svc.on_instrument("mainnet", inst(last="62000"))
    await svc.drain()
    assert rec.sent == [(1, "🔔 <b>XBTUSD</b> above 61,000.0 — now 61,000.0 (tp)", "alert")]
    assert await states(db) == ["sent"]
    assert a.id not in svc.index


async def test_crash_between_mark_and_send_delivers_at_next_start(db: Database) -> None:
    rec = Recorder(fail=1)
    svc = service(db, rec)
    await svc.create(1, 1, it.PriceAlert("XBTUSD", "below", Decimal(59000)))
    await svc.on_instrument("mainnet", inst(last="58000"))
    await svc.drain()
    assert rec.sent == [] and await states(db) == ["fired"]
    # a restart: the fired-but-unsent alert goes out once, and is not re-armed
    rec2 = Recorder()
    again = service(db, rec2)
    assert await again.start() == 0
    await again.drain()
    assert [t for _, t, _ in rec2.sent] == ["🔔 <b>XBTUSD</b> below 59,000"]
    assert await states(db) == ["sent"]
    third = service(db, Recorder())
    await third.start()
    await third.on_instrument("mainnet", inst(last="50000"))
    await third.drain()
    assert third.sent == 0


async def test_an_alert_still_queued_at_shutdown_is_delivered_at_next_start(
        db: Database) -> None:
    import asyncio

    from bot.notify import DeliveryQueue

    class Stuck(Recorder):
        """Telegram that never answers: the message is still queued when the bot stops."""

        async def send(self, chat_id: int, text: str, **kw: Any) -> Sent | None:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    queue = DeliveryQueue(Stuck())
    svc = AlertService(db, queue, clock=lambda: T0)
    await svc.create(1, 1, it.PriceAlert("XBTUSD", "above", Decimal(61000)))
    await svc.on_instrument("mainnet", inst(last="61000"))
    await asyncio.sleep(0.05)
    assert queue.pending() == 1
    await queue.close()  # what post_shutdown does once its drain timed out
    await svc.drain()
    assert await states(db) == ["fired"]  # not 'sent': it never left
    assert await queue.send(1, "late") is None  # a stopped queue sends nothing more

    rec = Recorder()
    again = service(db, rec)
    await again.start()
    await again.drain()
    assert [t for _, t, _ in rec.sent] == ["🔔 <b>XBTUSD</b> above 61,000"]
    assert await states(db) == ["sent"]


async def test_a_database_error_while_marking_leaves_the_alert_armed(db: Database) -> None:
    rec = Recorder()
    svc = service(db, rec)
    a = await svc.create(1, 1, it.PriceAlert("XBTUSD", "above", Decimal(61000)))
    real = svc.db.session

    def broken() -> Any:
        svc.db.session = real  # type: ignore[method-assign]
        raise RuntimeError("database is locked")

    svc.db.session = broken  # type: ignore[method-assign]
    await svc.on_instrument("mainnet", inst(last="61500"))
    await svc.drain()
    assert rec.sent == [] and await states(db) == ["active"]
    assert a.id in svc.index  # still armed: the next tick fires it
    await svc.on_instrument("mainnet", inst(last="61600"))
    await svc.drain()
    assert [t for _, t, _ in rec.sent] == ["🔔 <b>XBTUSD</b> above 61,000.0 — now 61,600.0"]
    assert await states(db) == ["sent"]


async def test_a_stale_index_cannot_fire_a_deleted_alert(db: Database) -> None:
    rec = Recorder()
    svc = service(db, rec)
    a = await svc.create(1, 1, it.PriceAlert("XBTUSD", "above", Decimal(61000)))
    other = service(db, rec)  # another process view: deletes it in the database only
    await other.delete(1, a.id)
    await svc.on_instrument("mainnet", inst(last="65000"))
    await svc.drain()
    assert rec.sent == [] and await states(db) == ["deleted"]


async def test_validation_refuses_and_stores_nothing(db: Database) -> None:
    svc = service(db, Recorder(), max_per_chat=2)
    with pytest.raises(UserError, match="already above 59,000"):
        await svc.create(1, 1, it.PriceAlert("XBTUSD", "above", Decimal(59000)))
    with pytest.raises(UserError, match="already below"):
        await svc.create(1, 1, it.FundingAlert("XBTUSD", "below", Decimal("0.02")))
    with pytest.raises(UserError, match="above zero"):
        await svc.create(1, 1, it.PriceAlert("XBTUSD", "below", Decimal(0)))
    assert await states(db) == []
    await svc.create(1, 1, it.MoveAlert("XBTUSD", Decimal(5), "4h"))
    await svc.create(1, 1, it.MoveAlert(None, Decimal(5), "1h"))  # default symbol
    with pytest.raises(UserError, match="most it can hold"):
        await svc.create(1, 1, it.MoveAlert("XBTUSD", Decimal(6), "1h"))
    assert [a.symbol for a in await svc.for_chat(1)] == ["XBTUSD", "XBTUSD"]


async def test_move_alert_is_recurring_and_keeps_its_row_active(db: Database) -> None:
    rec = Recorder()
    svc = service(db, rec)
    await svc.create(1, 1, it.MoveAlert("XBTUSD", Decimal(2), "15m"))
    await svc.on_instrument("mainnet", inst(last="60000", at=T0))
    await svc.on_instrument("mainnet", inst(last="61200", at=T0 + timedelta(minutes=15)))
    await svc.on_instrument("mainnet", inst(last="62500", at=T0 + timedelta(minutes=16)))
    await svc.drain()
    assert [t for _, t, _ in rec.sent] == [
        "🔔 <b>XBTUSD</b> moved +2.0 % within 15m — now 61,200.0"]
    await svc.on_instrument("mainnet", inst(last="60000", at=T0 + timedelta(minutes=31)))
    await svc.drain()
    assert len(rec.sent) == 2 and "moved −4.0 %" in rec.sent[1][1]
    assert await states(db) == ["active"]


async def test_loaded_alerts_fire_after_start_and_listing(db: Database) -> None:
    svc = service(db, Recorder())
    a = await svc.create(7, -100, it.PriceAlert("XBTUSD", "above", Decimal(65000), "<b>x"))
    await svc.create(7, -100, it.FundingAlert("XBTUSD", "above", Decimal("0.05")))
    text, buttons = svc.listing(await svc.for_chat(-100))
    assert "&lt;b&gt;x" in text and "funding above 0.0500 %" in text
    assert [b.data for row in buttons for b in row] == [f"al:d:{a.id}", f"al:d:{a.id + 1}"]
    assert decode(f"al:d:{a.id}") == DeleteAlert(a.id) and decode("al:x:1") is None
    rec = Recorder()
    fresh = service(db, rec)
    assert await fresh.start() == 2
    await fresh.on_instrument("mainnet", inst(last="65000", funding="0.0005"))
    await fresh.drain()
    assert sorted(c for c, _, _ in rec.sent) == [-100, -100]
    assert await states(db) == ["sent", "sent"]


async def test_leftovers_wait_for_the_notifier_attached_after_start(db: Database) -> None:
    import asyncio

    from bot.relay import Relay

    svc = service(db, Recorder(fail=1))
    await svc.create(1, 1, it.PriceAlert("XBTUSD", "below", Decimal(59000)))
    await svc.on_instrument("mainnet", inst(last="58000"))
    await svc.drain()
    relay = Relay()  # what build_services gives every service: Telegram comes later
    late = AlertService(db, relay, clock=lambda: T0)
    await late.start()
    for _ in range(5):  # the leftover's delivery is under way, waiting for Telegram
        await asyncio.sleep(0)
    assert await states(db) == ["fired"]
    telegram = Recorder()
    relay.connect(telegram)  # what handlers/app.py attach does
    await late.drain()
    assert len(telegram.sent) == 1 and await states(db) == ["sent"]


async def test_start_loads_in_chunks_skips_revoked_users_and_words_come_from_the_row(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.db.engine as engine

    made = service(db, Recorder())
    for uid in (1, 2, 3):  # user 2 will be revoked at the next start
        await made.create(uid, uid, it.PriceAlert("XBTUSD", "above", Decimal(61000), f"n{uid}"))
    await made.create(2, -100, it.MoveAlert("XBTUSD", Decimal(1), "15m"))  # a group's: kept
    real = engine.Database.bulk_rows

    def small_pages(self: Database, sql: str, chunk: int = 50_000) -> Any:
        return real(self, sql, chunk=2)  # several pages, one short

    monkeypatch.setattr(engine.Database, "bulk_rows", small_pages)
    rec = Recorder()
    fresh = service(db, rec, allowed=lambda uid: uid != 2)
    assert await fresh.start() == 3 and len(fresh.index) == 3
    await fresh.on_instrument("mainnet", inst(last="59000"))
    await fresh.on_instrument("mainnet", inst(last="61000"))
    await fresh.drain()
    assert sorted(rec.sent) == [
        (-100, "🔔 <b>XBTUSD</b> moved +3.4 % within 15m — now 61,000.0", "alert"),
        (1, "🔔 <b>XBTUSD</b> above 61,000.0 — now 61,000.0 (n1)", "alert"),
        (3, "🔔 <b>XBTUSD</b> above 61,000.0 — now 61,000.0 (n3)", "alert")]
    assert await states(db) == ["sent", "active", "sent", "active"]


def _books(index: Any) -> dict[tuple[str, str | int], list[tuple[int, float, Fraction]]]:
    """What an index holds, book by book (entries sorted: the order of equal keys is free),
    after checking each book is sorted and each id points at its book."""
    from bot.alerts.book import join_exact

    out = {}
    for symbol, state in index._symbols.items():
        named = [(a, getattr(state, a)) for a in ("above", "below", "fund_above", "fund_below")]
        for name, book in named + [(m.window.seconds, m) for m in state.moves]:
            if book is None:
                continue
            assert list(book.keys) == sorted(book.keys)
            assert all(index._live[i] == book.code for i in book.ids)
            # (coef, exp) by value: the bulk load keeps trailing zeros (50 x 10^-5)
            out[(symbol, name)] = sorted(zip(book.ids, book.keys, map(
                join_exact, book.coefs, book.exps), strict=True))
    assert sum(map(len, out.values())) == len(index._live)
    return out


async def test_start_loads_exactly_the_stored_thresholds_whatever_their_text(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up's bulk load (on PostgreSQL a column at a time off COPY text, in chunks) builds
    the index that loading every alert one by one from its Decimal would."""
    import random

    from sqlalchemy import text

    import bot.db.engine as engine
    from bot.alerts.index import AlertIndex, BulkLoader, FundingAlert, MoveAlert, PriceAlert
    from bot.db.models import User

    rng = random.Random(7)
    symbols = ["XBTUSD", "ETHUSD", "X\tY\\Z\nW"]  # COPY escapes the last one's bytes
    # Not what DecimalText writes, yet valid: their chunk goes row by row.
    odd = ["1E+3", " 7", "60000.50000000000001", "5.", "-.5", "1_000"]
    rows: list[tuple[Any, ...]] = []
    for i in range(120):
        kind = ("price", "move", "funding")[i % 3]
        chat = (1, 2, 3, -100)[rng.randrange(4)]  # user 2 is revoked: not loaded
        if kind == "move":
            threshold = rng.choice(["2.5", "0.75", "10", "33.333"])
            direction, window = None, rng.choice([900, 3600, 14400, 86400])
        else:
            threshold = rng.choice(["60000.5", "59000", "-0.5", "0", "0.00050", "123456.789"])
            direction, window = rng.choice(["above", "below"]), None
        if i in (70, 71, 72, 73, 74, 75):
            threshold = odd[i - 70]
        state = "fired" if i % 17 == 5 else "active"
        rows.append((i + 1, chat, kind, rng.choice(symbols), direction, threshold, window,
                     state))
    async with db.session() as s:
        for uid in (1, 2, 3):
            s.add(User(id=uid))
        await s.commit()
        for alert_id, chat, kind, symbol, direction, threshold, window, state in rows:
            s.add(Alert(id=alert_id, user_id=1 if chat < 0 else chat, chat_id=chat, kind=kind,
                        symbol=symbol, direction=direction, threshold=Decimal(threshold),
                        window_seconds=window, state=state))
        await s.commit()
        for alert_id, *_, threshold, _, _ in rows:  # the text as given, not DecimalText's
            await s.exec(text("UPDATE alerts SET threshold = :t WHERE id = :id"),  # type: ignore[call-overload]
                         params={"t": threshold, "id": alert_id})
        await s.commit()
    expected = AlertIndex()
    expected.load(
        MoveAlert(r[0], r[3], Decimal(r[5]), r[6]) if r[2] == "move" else
        (PriceAlert if r[2] == "price" else FundingAlert)(r[0], r[3], r[4], Decimal(r[5]))
        for r in rows if r[7] == "active" and r[1] != 2)

    real_rows, real_text, real_add = (engine.Database.bulk_rows, engine.Database.bulk_text,
                                      BulkLoader.add)
    row_by_row = []

    def add(self: BulkLoader, alert_id: int, *a: Any) -> None:
        row_by_row.append(alert_id)
        real_add(self, alert_id, *a)

    monkeypatch.setattr(engine.Database, "bulk_rows",
                        lambda self, sql, chunk=0: real_rows(self, sql, chunk=7))
    monkeypatch.setattr(engine.Database, "bulk_text",
                        lambda self, sql, chunk_bytes=0, **kw: real_text(self, sql, 300, **kw))
    monkeypatch.setattr(BulkLoader, "add", add)
    fresh = service(db, Recorder(), allowed=lambda uid: uid != 2)
    assert await fresh.start() == len(expected) > 60
    assert _books(fresh.index) == _books(expected)
    assert fresh.index._live.keys() == expected._live.keys()
    if engine.is_postgres(db.url):  # most chunks went column-wise, the odd ones' row by row
        assert 0 < len(row_by_row) < len(expected) / 2
        assert {71, 72, 73, 74, 75, 76} & set(row_by_row)


async def test_a_bad_stored_row_fails_the_load_and_leaves_the_database_usable(
        db: Database) -> None:
    from bot.db.models import User

    async with db.session() as s:
        s.add(User(id=1))
        await s.commit()
        for i in range(1, 31):
            s.add(Alert(id=i, user_id=1, chat_id=1, kind="oops" if i == 20 else "price",
                        symbol="XBTUSD", direction="above", threshold=Decimal(i)))
        await s.commit()
    for _ in range(3):  # each time the load stops mid-read, its connection is not leaked
        with pytest.raises(ValueError, match="unknown alert kind"):
            await service(db, Recorder()).start()
    assert len(await states(db)) == 30
