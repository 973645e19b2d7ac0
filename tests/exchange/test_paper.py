"""PaperExchange: the same Exchange protocol, on the simulator's engine."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import aiohttp
import pytest

from bot.errors import DuplicateClOrdID, InsufficientBalance, NotFound, Rejected
from bot.exchange.paper import PaperExchange
from bot.exchange.stream import MarketStream
from bot.exchange.types import Exchange, Execution, Order, Position
from bot.matching import Clock, Engine
from bot.sandbox.bitmex.server import BitmexSimulator


def make_paper() -> PaperExchange:
    return PaperExchange(Engine(Clock()))


async def test_paper_is_an_exchange_with_default_balances() -> None:
    paper = make_paper()
    assert isinstance(paper, Exchange)
    margins = {m.currency: m for m in await paper.margins()}
    assert margins["XBt"].wallet_balance == 100_000_000
    assert margins["USDt"].wallet_balance == 10_000_000_000
    assert margins["XBt"].available_display == "1 XBT"
    key = await paper.api_key_permissions()
    assert key.can_trade and not key.can_withdraw


async def test_place_fill_cancel_through_the_protocol() -> None:
    paper = make_paper()
    fills: list[Execution] = []
    orders: list[Order] = []
    positions: list[Position] = []

    async def on_fill(ex: Execution) -> None:
        fills.append(ex)

    async def on_order(o: Order) -> None:
        orders.append(o)

    async def on_position(p: Position) -> None:
        positions.append(p)

    paper.on_fill(on_fill)
    paper.on_order(on_order)
    paper.on_position(on_position)
    paper.set_price("XBTUSD", D(50000))

    resting = await paper.place_order("XBTUSD", "Buy", 100, "Limit", D(49000), cl_ord_id="r1")
    assert resting.ord_status == "New" and resting.cl_ord_id == "r1"
    assert [o.order_id for o in await paper.open_orders("XBTUSD")] == [resting.order_id]
    found = await paper.order_by_cl_ord_id("r1")
    assert found is not None and found.order_id == resting.order_id
    assert await paper.order_by_cl_ord_id("never") is None

    res = await paper.cancel_orders([resting.order_id])
    assert res[0].ok and res[0].order is not None and res[0].order.ord_status == "Canceled"
    again = await paper.cancel_orders([resting.order_id])
    assert not again[0].ok and "Canceled" in (again[0].error or "")
    assert await paper.open_orders() == []

    market = await paper.place_order("XBTUSD", "Buy", 200, "Market")
    assert market.ord_status == "Filled" and market.cum_qty == 200
    await paper.drain()
    assert [f.last_qty for f in fills] == [200]
    assert fills[0].order_id == market.order_id
    assert any(o.order_id == market.order_id and o.ord_status == "Filled" for o in orders)
    assert positions and positions[-1].current_qty == 200
    (pos,) = [p for p in await paper.positions() if p.symbol == "XBTUSD"]
    assert pos.current_qty == 200

    # A resting sell fills when the price feed moves through it.
    sell = await paper.place_order("XBTUSD", "Sell", 200, "Limit", D(51000))
    paper.set_price("XBTUSD", D(51500))
    await paper.drain()
    assert [f.order_id for f in fills] == [market.order_id, sell.order_id]
    (pos,) = [p for p in await paper.positions() if p.symbol == "XBTUSD"]
    assert pos.current_qty == 0
    history = await paper.executions("XBTUSD")
    assert [e.exec_id for e in history] == [f.exec_id for f in fills]
    await paper.close()


async def test_paper_errors_are_the_clients_errors() -> None:
    paper = make_paper()
    await paper.place_order("XBTUSD", "Buy", 100, "Limit", D(40000), cl_ord_id="dup")
    with pytest.raises(DuplicateClOrdID):
        await paper.place_order("XBTUSD", "Buy", 100, "Limit", D(40000), cl_ord_id="dup")
    with pytest.raises(InsufficientBalance) as e:
        await paper.place_order("XBTUSD", "Buy", 5_000_000, "Limit", D(40000))
    assert "Not enough available balance" in e.value.message
    with pytest.raises(Rejected):
        await paper.place_order("NOPE", "Buy", 100, "Limit", D(1))
    with pytest.raises(NotFound):
        await paper.instrument("NOPE")
    inst = await paper.instrument("XBTUSD")
    assert inst.kind == "inverse" and inst.tick_size == D("0.1")
    assert await paper.round_price("XBTUSD", D("50000.14")) == D("50000.1")
    assert await paper.round_qty("XBTUSD", D(250)) == D(200)
    pos = await paper.set_leverage("XBTUSD", 10)
    assert pos.leverage == 10
    assert len(await paper.cancel_all()) == 1


async def test_paper_priced_from_the_public_stream() -> None:
    """The paper engine follows the real market's ticks (here: the simulator's feed)."""
    sim = BitmexSimulator()
    await sim.start(host="127.0.0.1", port=0)
    paper = make_paper()
    fills: list[Execution] = []

    async def on_fill(ex: Execution) -> None:
        fills.append(ex)

    paper.on_fill(on_fill)
    try:
        async with aiohttp.ClientSession() as session:
            market = MarketStream(sim.ws_url, session=session)
            paper.follow(market)
            await market.watch("XBTUSD")
            await market.wait_ready(5)
            sell = await paper.place_order("XBTUSD", "Sell", 100, "Limit", D(60000))
            sim.engine.set_mark("XBTUSD", D(60500))  # the real market moves...
            for _ in range(300):
                await paper.drain()
                if fills:
                    break
                await asyncio.sleep(0.01)
            await market.close()
    finally:
        await sim.stop()
    # ...and the paper order fills against it
    assert (await paper.ticker("XBTUSD")).mark == D(60500)
    assert [f.order_id for f in fills] == [sell.order_id]
