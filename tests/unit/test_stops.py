"""The pure parts of bot/trading/stops.py against hand-computed numbers: break-even,
trailing offsets, share splits, which open orders are a position's exits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from bot.errors import UserError
from bot.exchange.types import Instrument, Order, Position
from bot.live.monitor import monitor_text
from bot.parse import Trail
from bot.trading.stops import breakeven_price, exits_of, split_by_shares, trail_offset
from tests.unit.test_contracts import ETHUSD, XBTUSD, XBTUSDT


def pos(symbol: str, qty: int, entry: str) -> Position:
    return Position.from_row({"symbol": symbol, "currentQty": qty, "avgEntryPrice": D(entry),
                              "markPrice": D(entry), "isOpen": True})


def order(**kw: object) -> Order:
    row: dict[str, object] = {"orderID": "o", "symbol": "XBTUSD", "side": "Sell",
                              "orderQty": 100, "ordType": "Stop", "ordStatus": "New",
                              "execInst": "ReduceOnly"}
    row.update(kw)
    return Order.from_row(row)


@pytest.mark.parametrize(("inst", "qty", "entry", "be"), [
    (XBTUSD, 100, "60000", D("60090")),     # 60000 * 1.0015, on the 0.1 tick
    (XBTUSD, -100, "60000", D("59910")),    # a short's: below the entry
    (ETHUSD, 10, "3000.05", D("3004.60")),  # 3004.550075 rounds up to the 0.05 tick
    (XBTUSDT, -1000, "60000.5", D("59910")),  # 59910.49925 rounds down to the 0.5 tick
])
def test_breakeven_is_entry_plus_fees_on_the_tick(inst: object, qty: int, entry: str,
                                                  be: D) -> None:
    assert breakeven_price(inst, pos("X", qty, entry)) == be  # type: ignore[arg-type]


def test_trailing_offsets_are_signed_and_on_the_tick() -> None:
    assert trail_offset(XBTUSD, Trail(D(1), True), D(60000), long=True) == D(-600)
    assert trail_offset(XBTUSD, Trail(D(500), False), D(60000), long=False) == D(500)
    assert trail_offset(XBTUSDT, Trail(D("0.33"), True), D(60001), long=True) == D("-198")
    with pytest.raises(UserError, match="below the tick"):
        trail_offset(XBTUSDT, Trail(D("0.2"), False), D(60000), long=True)
    with pytest.raises(UserError, match="above the price"):
        trail_offset(XBTUSD, Trail(D(60000), False), D(60000), long=True)


def test_shares_split_in_lots_and_close_the_whole_position() -> None:
    assert split_by_shares(D(400), (D(25), D(75)), D(100)) == (D(100), D(300))
    assert split_by_shares(D(300), (D(50), D(50)), D(100)) == (D(100), D(200))
    assert split_by_shares(D(10), (D(100) / 3,) * 3, D(1)) == (D(3), D(3), D(4))


def test_exits_of_a_position() -> None:
    p = pos("XBTUSD", 200, "60000")
    orders = [order(orderID="sl", stopPx=D(58000)),
              order(orderID="tp2", ordType="Limit", price=D(70000)),
              order(orderID="tp1", ordType="Limit", price=D(65000)),
              order(orderID="entry", side="Buy", ordType="Limit", price=D(55000),
                    execInst=""),
              order(orderID="other", symbol="ETHUSD", ordType="Limit", price=D(4000))]
    ex = exits_of(orders, p)
    assert ex.sl is not None and ex.sl.order_id == "sl"
    assert [o.order_id for o in ex.tps] == ["tp1", "tp2"]


def test_the_monitor_counts_down_to_bitmexs_own_funding_time() -> None:
    now = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    row = {"symbol": "XBTUSD", "state": "Open", "typ": "FFWCSX", "isInverse": True,
           "tickSize": 0.1, "lotSize": 100, "multiplier": -100000000, "settlCurrency": "XBt",
           "fundingRate": 0.0001, "markPrice": 60000}
    pos = Position.from_row({"symbol": "XBTUSD", "currentQty": 100, "avgEntryPrice": 60000,
                             "markPrice": 60000, "currency": "XBt", "leverage": 10})
    said = Instrument.from_row({**row, "fundingTimestamp": "2026-12-02T10:15:00.000Z"})
    assert said.funding_at == now + timedelta(minutes=45)
    assert "funding in 0h 45m" in monitor_text(pos, said, "testnet", [], now, None)
    # Not sent (or already past): BitMEX's 04:00 / 12:00 / 20:00 UTC schedule
    unsaid = Instrument.from_row(row)
    assert "funding in 2h 30m" in monitor_text(pos, unsaid, "testnet", [], now, None)
