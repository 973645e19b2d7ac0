"""Review of issue #10 on the merged code: the e2e world is BitMEX as strict as it is."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp

from bot.exchange.client import BitmexClient
from bot.sandbox.bitmex import RateLimitConfig
from tests.e2e.harness import Harness
from tests.e2e.test_live import wait_text
from tests.e2e.timing import drive_time


async def test_the_shared_world_has_bitmexs_own_rest_limits(h: Harness) -> None:
    # A kinder world (100,000 public calls a minute) let a bot that floods the public
    # API pass every test; BitMEX allows 30 a minute per address without a key.
    assert h.sim.rate_limit == RateLimitConfig()
    h.sim.reset_rate_limits()  # whatever the bot's start-up spent is not counted here
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(31):
            async with http.get(f"{h.sim.url}/api/v1/instrument/active") as resp:
                statuses.append(resp.status)
                remaining = resp.headers.get("x-ratelimit-remaining")
    assert statuses[:30] == [200] * 30, statuses
    assert statuses[30] == 429 and remaining == "0"


async def test_exits_placed_again_after_a_failure_never_repeat_one_that_filled(
        h: Harness) -> None:
    engine = h.sim.engine
    engine.set_spread("XBTUSD", Decimal(0))
    engine.set_mark("XBTUSD", Decimal(50000))
    alice, key = await h.connected("Alice")
    ex = await h.svc.accounts.exchange(alice.id, "testnet")
    assert isinstance(ex, BitmexClient)
    ex.timeout = aiohttp.ClientTimeout(total=0.3)
    drive_time(h, ex)
    await alice.send("/buy 200 xbtusd limit 49000 tp 52000,53000")
    await alice.press("✅ Confirm")
    intent = await h.svc.trading.card_by_cl_ord_id(open_rows(h, key)[0]["clOrdID"])
    assert intent is not None and intent.id is not None
    # TP2 reaches BitMEX only after its api-expires: it is not placed, TP1 is.
    h.sim.faults.engine_lag(1, seconds=300, cl_ord_id=f"{intent.cl_ord_id}:tp2")
    engine.set_mark("XBTUSD", Decimal(48900))  # the entry fills; the bot places its exits
    await wait_text(h, alice, "could not place its TP/SL")
    assert position(h, key) == 200
    engine.set_mark("XBTUSD", Decimal(52000))  # TP1 fills: half closed, as planned
    await h.settle()
    assert position(h, key) == 100
    # The exits are placed again (as the entry's next fill report would): TP1 filled and
    # its clOrdID is free on BitMEX, yet it must not be sent a second time.
    await h.svc.trading.place_exits(intent.id)
    await h.settle()
    assert position(h, key) == 100
    tps = [o for o in engine.order_rows(h.sim.account(key).id) if o["side"] == "Sell"]
    assert sorted((o["clOrdID"].rsplit(":", 1)[1], o["ordStatus"]) for o in tps) == [
        ("tp1", "Filled"), ("tp2", "New")]


def open_rows(h: Harness, key: str) -> list[dict[str, Any]]:
    return h.sim.engine.open_order_rows(h.sim.account(key).id)


def position(h: Harness, key: str, symbol: str = "XBTUSD") -> int:
    rows = h.sim.engine.position_rows(h.sim.account(key).id)
    return next((int(r["currentQty"]) for r in rows if r["symbol"] == symbol), 0)


async def test_a_position_in_a_contract_the_bot_does_not_trade_gets_no_close_button(
        h: Harness) -> None:
    alice, key = await h.connected("Alice")
    account = h.sim.account(key).id
    # Opened on BitMEX itself: a prediction market next to a perpetual the bot trades.
    for symbol in ("PXBT150KZ26", "XBTUSD"):
        h.sim.engine.place_order(account, {"symbol": symbol, "side": "Buy", "orderQty": 100,
                                           "ordType": "Market"})
    await wait_text(h, alice, "Order filled", n=2)  # the fills are told first
    await alice.send("/positions")  # one card per position (issue #14)
    cards = {("PXBT" if "PXBT150KZ26" in (m.content or "") else "XBT"): m
             for m in alice.messages[-2:]}
    text = cards["PXBT"].content or ""
    assert "PXBT150KZ26 Long 100" in text and "XBTUSD Long 100" in (cards["XBT"].content or "")
    assert "PXBT150KZ26 is a prediction market" in text and "close it on BitMEX" in text
    assert cards["PXBT"].buttons == [] and cards["XBT"].buttons[0][-1] == "Close 100 %"
