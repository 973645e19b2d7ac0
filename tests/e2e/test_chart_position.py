"""/chart with a position open (issue #14 item 8): the caption names the lines the chart
draws (entry, SL, TPs, estimated liquidation) and the chart draws exactly those; without a
position /chart is the plain market chart."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from bot.reports import charts
from tests.e2e.harness import Harness


@pytest.fixture(autouse=True)
def market_with_trades(h: Harness) -> Iterator[None]:
    engine = h.sim.engine
    saved = {s: (i.mark, i.last) for s, i in engine.instruments.items()}
    engine.set_spread("XBTUSD", Decimal(0))
    eth = engine.instrument("ETHUSD").mark
    for i in range(25):
        engine.set_mark("XBTUSD", Decimal(60000) + i % 5, trade_size=10)
        engine.set_mark("ETHUSD", eth + i % 3, trade_size=10)
        engine.clock.advance(60)
    engine.set_mark("XBTUSD", Decimal(60000), trade_size=10)
    yield
    for symbol, (mark, last) in saved.items():
        engine.set_mark(symbol, mark, last=last)


async def test_chart_marks_the_position(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[list[charts.Level]] = []
    real = charts.candles

    def recording(*args: Any) -> bytes:
        drawn.append(list(args[3]) if len(args) > 3 else [])
        return real(*args)

    monkeypatch.setattr(charts, "candles", recording)
    alice, key = await h.connected("Alice")
    await alice.send("/chart xbtusd 1m 20")  # no position yet: the plain chart
    assert alice.last.file is not None and "entry" not in (alice.last.content or "")
    assert drawn == [[]]

    await alice.send("/buy 100 xbtusd lev 10")
    await alice.press("✅ Confirm")
    await alice.send("/sell 100 btc stop 55000 reduce")
    await alice.press("✅ Confirm")
    await alice.send("/sell 100 btc @ 65k reduce")
    await alice.press("✅ Confirm")
    [pos] = [p for p in h.sim.engine.position_rows(h.sim.account(key).id) if p["currentQty"]]
    liq = float(pos["liquidationPrice"])

    await alice.send("/chart xbtusd 1m 20")
    msg = alice.last
    assert msg.file is not None, alice.transcript
    caption = msg.content or ""
    assert f"entry 60,000.0 · SL 55,000.0 · TP 65,000.0 · liq {liq:,.1f}" in caption, caption
    assert drawn[-1] == [("entry", 60000.0), ("SL", 55000.0), ("TP", 65000.0), ("liq", liq)]

    await alice.send("/chart eth 1m 20")  # a symbol without a position: no lines
    assert alice.last.file is not None, alice.transcript
    assert len(drawn) == 3 and drawn[-1] == [] and "entry" not in (alice.last.content or "")
