"""The liquidation feed: thresholds per subscription, bursts in one message, driven clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio

from bot.db.engine import Database
from bot.errors import UserError
from bot.exchange.types import Instrument, Liquidation
from bot.liqfeed import LiqFeed, compact
from tests.dbs import test_database_url
from tests.unit.test_alert_service import Recorder

XBTUSD = Instrument.from_row({
    "symbol": "XBTUSD", "typ": "FFWCSX", "tickSize": 0.5, "lotSize": 100,
    "multiplier": -100000000, "settlCurrency": "XBt", "isInverse": True,
    "lastPrice": Decimal(60000)})
XBTUSDT = Instrument.from_row({
    "symbol": "XBTUSDT", "typ": "FFWCSX", "tickSize": 0.5, "lotSize": 1000,
    "multiplier": 1, "settlCurrency": "USDt", "underlyingToPositionMultiplier": 1000000,
    "lastPrice": Decimal(60000)})


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest_asyncio.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    d = Database(test_database_url(tmp_path, 'l.db'))
    await d.migrate()
    yield d
    await d.dispose()


def feed(db: Database, rec: Recorder, clock: Clock) -> LiqFeed:
    async def lookup(symbol: str) -> Instrument | None:
        return {"XBTUSD": XBTUSD, "XBTUSDT": XBTUSDT}.get(symbol)

    return LiqFeed(db, rec, instrument=lookup, clock=clock, autoflush=False)


def liq(order_id: str, qty: int, price: int, side: str = "Sell", symbol: str = "XBTUSD",
        action: str = "insert") -> Liquidation:
    return Liquidation(order_id, symbol, side, Decimal(price), Decimal(qty), action)


def test_compact() -> None:
    assert [compact(Decimal(v)) for v in (950, 1000, 12345, 500_000, 1_200_000, 2 * 10**9)] == [
        "950", "1K", "12.3K", "500K", "1.2M", "2B"]


async def test_thresholds_per_chat_and_window(db: Database) -> None:
    rec, clock = Recorder(), Clock()
    f = feed(db, rec, clock)
    await f.subscribe(1, "XBTUSD", Decimal(1_000_000))
    await f.subscribe(-50, None, Decimal(500_000))
    await f.on_liquidation("mainnet", liq("a", 1_200_000, 60120))
    await f.on_liquidation("mainnet", liq("b", 700_000, 60100, side="Buy"))
    await f.on_liquidation("mainnet", liq("c", 100_000, 60100))
    await f.on_liquidation("testnet", liq("d", 9_000_000, 60100))  # not mainnet
    await f.on_liquidation("mainnet", liq("a", 1_200_000, 60120))  # the same order again
    await f.on_liquidation("mainnet", liq("a", 600_000, 60120, action="update"))
    assert f.received == 3 and f.pending == 3
    clock.t += 1.9
    assert await f.flush() == 0  # the 2 s window is still open
    clock.t += 0.1
    assert await f.flush() == 2
    sent = {chat: text for chat, text, _ in rec.sent}
    assert sent[1] == "🔥 Long liquidated: $1.2M <b>XBTUSD</b> @ 60,120.0"
    assert sent[-50] == ("🔥 Long liquidated: $1.2M <b>XBTUSD</b> @ 60,120.0\n"
                         "🔥 Short liquidated: $700K <b>XBTUSD</b> @ 60,100.0")
    assert f.pending == 0


async def test_burst_is_one_message_and_linear_notional(db: Database) -> None:
    rec, clock = Recorder(), Clock()
    f = feed(db, rec, clock)
    await f.subscribe(1, None, Decimal(100_000))
    for i in range(5):
        await f.on_liquidation("mainnet", liq(f"o{i}", 400_000, 60000 - 10 * i))
    # 2,000,000 contracts of XBTUSDT = 2 XBT = $120k at 60,000
    await f.on_liquidation("mainnet", liq("u", 2_000_000, 60000, "Buy", "XBTUSDT"))
    await f.on_liquidation("mainnet", liq("small", 1_000_000, 60000, "Buy", "XBTUSDT"))
    assert await f.flush(force=True) == 1
    assert rec.sent[0][1] == (
        "🔥 Long liquidated: $2M <b>XBTUSD</b> (5 orders) @ 59,960.0–60,000.0\n"
        "🔥 Short liquidated: $120K <b>XBTUSDT</b> @ 60,000.0")


async def test_subscriptions_persist_change_and_stop(db: Database) -> None:
    rec, clock = Recorder(), Clock()
    f = feed(db, rec, clock)
    await f.subscribe(1, None, Decimal(100))
    await f.subscribe(1, None, Decimal(5_000_000))  # changes, does not add
    await f.subscribe(1, "XBTUSD", Decimal(1000))
    with pytest.raises(UserError):
        await f.subscribe(1, "ETHUSD", Decimal(0))
    again = feed(db, rec, clock)
    assert await again.start() == 2
    assert "all symbols · min $5M" in again.listing(1) and "XBTUSD · min $1K" in again.listing(1)
    assert await again.unsubscribe(1, "XBTUSD") == 1
    assert await again.unsubscribe(1) == 1
    assert "No liquidation feed" in again.listing(1)
    assert await feed(db, rec, clock).start() == 0


async def test_autoflush_timer_sends_after_the_window(db: Database) -> None:
    rec = Recorder()
    f = LiqFeed(db, rec, window=0.02)
    await f.subscribe(1, None, Decimal(1))
    await f.on_liquidation("mainnet", liq("x", 5000, 60000))
    await f.on_liquidation("mainnet", liq("y", 5000, 60000))
    assert rec.sent == []
    assert f._timer is not None
    await f._timer
    assert [t for _, t, _ in rec.sent] == [
        "🔥 Long liquidated: $10K <b>XBTUSD</b> (2 orders) @ 60,000"]
    await f.close()


async def test_partial_rows_are_remembered_not_posted(db: Database) -> None:
    rec, clock = Recorder(), Clock()
    f = feed(db, rec, clock)
    await f.subscribe(1, None, Decimal(1))
    # a reconnect's snapshot: under way already, and must not replay what was posted
    await f.on_liquidation("mainnet", liq("old", 5_000_000, 60000, action="partial"))
    await f.on_liquidation("mainnet", liq("old", 5_000_000, 60000))
    assert f.pending == 0
    await f.on_liquidation("mainnet", liq("new", 2000, 60000))
    assert await f.flush(force=True) == 1
    assert rec.sent[0][1] == "🔥 Long liquidated: $2K <b>XBTUSD</b> @ 60,000.0"


async def test_a_market_wide_cascade_fits_one_telegram_message(db: Database) -> None:
    rec, clock = Recorder(), Clock()
    f = feed(db, rec, clock)
    await f.subscribe(1, None, Decimal(1000))
    for i in range(60):  # 60 symbols, both sides: 120 (symbol, side) pairs
        for side in ("Sell", "Buy"):
            await f.on_liquidation("mainnet", liq(f"{side}{i}", 10_000 + i, 60000, side,
                                                  f"LONGSYMBOL{i:02d}USD"))
    assert await f.flush(force=True) == 1
    text = rec.sent[0][1]
    assert len(text) <= 4096
    lines = text.split("\n")
    assert len(lines) == 30
    assert "LONGSYMBOL59USD" in lines[0]  # the biggest first
    assert lines[-1].startswith("… and 91 more")
