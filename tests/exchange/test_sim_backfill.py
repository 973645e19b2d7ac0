"""The simulator's invented past: continuous, ending at today's price, charted by bucketed."""

from __future__ import annotations

import itertools
from decimal import Decimal

from bot.sandbox.bitmex import Engine


def test_backfill_ends_at_last_price_and_fills_candles() -> None:
    engine = Engine()
    last = engine.instrument("XBTUSD").last
    engine.backfill(hours=48, step=300, seed=7)
    hist = list(engine.history["XBTUSD"])
    assert len(hist) >= 48 * 12
    assert all(a.timestamp < b.timestamp for a, b in itertools.pairwise(hist))
    # the newest invented point is one step before now and close to the current price
    assert abs(hist[-1].price - last) / last < Decimal("0.02")
    candles = engine.bucketed("XBTUSD", "1h", partial=False)
    assert len(candles) >= 47
    assert len({c["close"] for c in candles}) > 10  # it moves
    assert all(c["low"] <= c["open"] <= c["high"] for c in candles)
    inst = engine.instrument("XBTUSD")
    assert inst.prev_price_24h != 0 and inst.prev_price_24h != last
