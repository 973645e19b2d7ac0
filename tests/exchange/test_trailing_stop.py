"""BitMEX's trailing stop (Stop + pegPriceType TrailingStopPeg + signed pegOffsetValue) in the
simulator, through the real client and through the paper exchange (issue #14 item 1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal as D

import aiohttp
import pytest

from bot.errors import ExchangeError
from bot.exchange.client import BitmexClient, RetryPolicy
from bot.exchange.paper import PaperExchange
from bot.matching import Clock, Engine
from bot.sandbox.bitmex.server import BitmexSimulator

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, overload_delay=0.02, max_attempts=2)


@pytest.fixture
async def sim() -> AsyncIterator[BitmexSimulator]:
    simulator = BitmexSimulator()
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def client(sim: BitmexSimulator) -> AsyncIterator[tuple[BitmexClient, str]]:
    async with aiohttp.ClientSession() as s:
        key, secret = sim.add_account()
        yield BitmexClient(sim.url, key, secret, session=s, retry=FAST, timeout=3.0), key


async def test_sell_trailing_stop_follows_the_mark_up_only_then_triggers(
        sim: BitmexSimulator, client: tuple[BitmexClient, str]) -> None:
    ex, _ = client
    sim.engine.set_mark("XBTUSD", D(60000))
    await ex.place_order("XBTUSD", "Buy", 100, "Market")
    stop = await ex.place_order("XBTUSD", "Sell", 100, "Stop", exec_inst=("ReduceOnly",),
                                peg_offset=D(-600), cl_ord_id="trail-1")
    assert stop.stop_px == D(59400) and stop.peg_offset == D(-600)
    sim.engine.set_mark("XBTUSD", D(61000))
    (o,) = await ex.open_orders("XBTUSD")
    assert o.stop_px == D(60400)  # followed the mark up
    sim.engine.set_mark("XBTUSD", D(60500))
    (o,) = await ex.open_orders("XBTUSD")
    assert o.stop_px == D(60400)  # never back down
    sim.engine.set_mark("XBTUSD", D(60400))
    assert await ex.open_orders("XBTUSD") == []
    pos = [p for p in await ex.positions() if p.symbol == "XBTUSD"]
    assert all(p.current_qty == 0 for p in pos)
    done = await ex.order_by_cl_ord_id("trail-1")
    assert done is not None and done.ord_status == "Filled"


async def test_buy_trailing_stop_follows_down_only(
        sim: BitmexSimulator, client: tuple[BitmexClient, str]) -> None:
    ex, _ = client
    sim.engine.set_mark("XBTUSD", D(60000))
    await ex.place_order("XBTUSD", "Sell", 100, "Market")
    await ex.place_order("XBTUSD", "Buy", 100, "Stop", exec_inst=("ReduceOnly",),
                         peg_offset=D(1000))
    sim.engine.set_mark("XBTUSD", D(58000))
    sim.engine.set_mark("XBTUSD", D(58500))
    (o,) = await ex.open_orders("XBTUSD")
    assert o.stop_px == D(59000)
    sim.engine.set_mark("XBTUSD", D(59000))
    assert await ex.open_orders("XBTUSD") == []


@pytest.mark.parametrize(("side", "offset", "words"), [
    ("Sell", D(600), "must be negative"),     # a sell stop trails below the price
    ("Buy", D(-600), "must be negative"),
    ("Sell", D("-0.35"), "tickSize"),         # XBTUSD's tick is 0.1
    ("Sell", D(-70000), "pegOffsetValue"),    # above the price
])
async def test_bad_offsets_are_refused(sim: BitmexSimulator, client: tuple[BitmexClient, str],
                                       side: str, offset: D, words: str) -> None:
    ex, _ = client
    sim.engine.set_mark("XBTUSD", D(60000))
    with pytest.raises(ExchangeError) as e:
        await ex.place_order("XBTUSD", side, 100, "Stop", peg_offset=offset)
    assert words in e.value.message
    assert await ex.open_orders("XBTUSD") == []


async def test_account_without_pegged_orders_refuses_them(
        sim: BitmexSimulator, client: tuple[BitmexClient, str]) -> None:
    ex, key = client
    sim.account(key).pegged_allowed = False
    with pytest.raises(ExchangeError) as e:
        await ex.place_order("XBTUSD", "Sell", 100, "Stop", peg_offset=D(-600))
    assert "Pegged orders are not enabled" in e.value.message


async def test_a_trailing_stop_with_a_stop_px_is_refused(
        sim: BitmexSimulator, client: tuple[BitmexClient, str]) -> None:
    # BitMEX sets a trailing stop's stopPx from the offset ("To create a trailing stop loss
    # order, don't specify stopPx", BitMEX/api-connectors#130): both at once is refused,
    # and so is moving a trailing stop by stopPx instead of its offset.
    ex, _ = client
    sim.engine.set_mark("XBTUSD", D(60000))
    await ex.place_order("XBTUSD", "Buy", 100, "Market")
    with pytest.raises(ExchangeError) as e:
        await ex.place_order("XBTUSD", "Sell", 100, "Stop", stop_px=D(58000),
                             exec_inst=("ReduceOnly",), peg_offset=D(-600))
    assert "Invalid stopPx" in e.value.message
    assert await ex.open_orders("XBTUSD") == []
    await ex.place_order("XBTUSD", "Sell", 100, "Stop", exec_inst=("ReduceOnly",),
                         peg_offset=D(-600), cl_ord_id="trail-s")
    with pytest.raises(ExchangeError) as e:
        await ex.amend_order(orig_cl_ord_id="trail-s", stop_px=D(59000))
    assert "Invalid stopPx" in e.value.message
    (o,) = await ex.open_orders("XBTUSD")
    assert o.stop_px == D(59400)


async def test_amend_offset_moves_the_stop(sim: BitmexSimulator,
                                           client: tuple[BitmexClient, str]) -> None:
    ex, _ = client
    sim.engine.set_mark("XBTUSD", D(60000))
    await ex.place_order("XBTUSD", "Buy", 100, "Market")
    await ex.place_order("XBTUSD", "Sell", 100, "Stop", exec_inst=("ReduceOnly",),
                         peg_offset=D(-600), cl_ord_id="trail-a")
    amended = await ex.amend_order(orig_cl_ord_id="trail-a", peg_offset=D(-300))
    assert amended.stop_px == D(59700) and amended.peg_offset == D(-300)


async def test_paper_trailing_stop() -> None:
    paper = PaperExchange(Engine(Clock()))
    paper.set_price("XBTUSD", D(60000))
    await paper.place_order("XBTUSD", "Buy", 100, "Market")
    await paper.place_order("XBTUSD", "Sell", 100, "Stop", exec_inst=("ReduceOnly",),
                            peg_offset=D(-600))
    paper.set_price("XBTUSD", D(62000))
    (o,) = await paper.open_orders("XBTUSD")
    assert o.stop_px == D(61400) and o.peg_offset == D(-600)
    paper.set_price("XBTUSD", D(61000))
    assert await paper.open_orders("XBTUSD") == []
