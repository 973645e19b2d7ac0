"""WebSocket streams: table semantics, heartbeat, reconnects, fills exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal as D
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.errors import AuthError
from bot.exchange.client import BitmexClient, RetryPolicy
from bot.exchange.stream import (
    ConnectionBudget,
    MarketStream,
    PrivateStream,
    StreamOptions,
    StreamPool,
    Table,
    mux_url_for,
    ws_url_for,
)
from bot.exchange.types import Execution, Instrument, Liquidation, Order
from bot.sandbox.bitmex.server import BitmexSimulator


def test_table_partial_insert_update_delete() -> None:
    t = Table("order")
    assert t.keys == ("orderID",)
    t.apply("partial", [{"orderID": "a", "leavesQty": 100, "price": D(1)}], keys=["orderID"])
    t.apply("insert", [{"orderID": "b", "leavesQty": 50, "price": D(2)}])
    merged = t.apply("update", [{"orderID": "a", "leavesQty": 40}])
    assert merged == [{"orderID": "a", "leavesQty": 40, "price": D(1)}]
    gone = t.apply("delete", [{"orderID": "b"}])
    assert gone[0]["price"] == D(2)
    assert [r["orderID"] for r in t.values()] == ["a"]
    # keys come from the partial when given
    p = Table("position")
    p.apply("partial", [{"account": 1, "symbol": "XBTUSD", "currentQty": 1}],
            keys=["account", "symbol"])
    p.apply("update", [{"account": 1, "symbol": "XBTUSD", "currentQty": 5}])
    assert p.get(1, "XBTUSD") == {"account": 1, "symbol": "XBTUSD", "currentQty": 5}


def test_tables_keep_open_orders_only_and_no_executions() -> None:
    """BitMEX never deletes an execution or a filled order: kept (even 20 per table per
    account), a long-running bot's tables grew with every fill until full (the soak's
    RSS slope). Listeners still get every row, merged, from the message that brings it."""
    orders, fills = Table("order"), Table("execution")
    orders.apply("partial", [{"orderID": "open", "ordStatus": "New", "leavesQty": 10,
                              "price": D(1)}], keys=["orderID"])
    fills.apply("partial", [{"execID": "old", "lastQty": 1}], keys=["execID"])
    assert fills.has_partial and not fills.rows
    for i in range(100):
        orders.apply("insert", [{"orderID": f"o{i}", "ordStatus": "New", "orderQty": 5}])
        told = orders.apply("update", [{"orderID": f"o{i}", "ordStatus": "Filled"}])
        assert told == [{"orderID": f"o{i}", "ordStatus": "Filled", "orderQty": 5}]
        got = fills.apply("insert", [{"execID": f"e{i}", "orderID": f"o{i}", "lastQty": 1}])
        assert got == [{"execID": f"e{i}", "orderID": f"o{i}", "lastQty": 1}]
    assert [r["orderID"] for r in orders.values()] == ["open"]
    assert fills.rows == {}
    # An order cancelled in the message that also amends another: only it leaves.
    orders.apply("insert", [{"orderID": "b", "ordStatus": "New", "price": D(2)}])
    orders.apply("update", [{"orderID": "open", "price": D(3)},
                            {"orderID": "b", "ordStatus": "Canceled"}])
    assert [(r["orderID"], r["price"]) for r in orders.values()] == [("open", D(3))]


def test_connection_budget_keeps_within_an_hour() -> None:
    b = ConnectionBudget(per_hour=3)
    for t in (0.0, 1.0, 2.0):
        assert b.wait_time(t) == 0
        b.record(t)
    assert b.wait_time(10.0) == pytest.approx(3590.0)
    assert b.wait_time(3600.5) == 0


def test_ws_url_for() -> None:
    assert ws_url_for("https://www.bitmex.com") == "wss://ws.bitmex.com/realtime"
    assert ws_url_for("https://testnet.bitmex.com/api/v1") == "wss://ws.testnet.bitmex.com/realtime"
    assert ws_url_for("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/realtime"
    assert mux_url_for("wss://ws.bitmex.com/realtime") == "wss://ws.bitmex.com/realtimemd"
    assert mux_url_for("ws://127.0.0.1:8080/realtime") == "ws://127.0.0.1:8080/realtimemd"


@pytest.fixture
async def silent_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A realtime endpoint that welcomes, acks nothing and never answers ping."""
    received: list[str] = []

    async def realtime(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"info": "Welcome to the BitMEX Realtime API."}))
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                received.append(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/realtime", realtime)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/realtime", received
    finally:
        await runner.cleanup()


async def test_heartbeat_pings_then_reconnects_without_pong(
    silent_server: tuple[str, list[str]],
) -> None:
    url, received = silent_server
    async with aiohttp.ClientSession() as session:
        stream = MarketStream(url, session=session, ping_after=0.05, pong_timeout=0.05,
                              backoff_base=0.01)
        await stream.watch("XBTUSD")
        for _ in range(200):
            if stream.connects >= 3:
                break
            await asyncio.sleep(0.01)
        await stream.close()
    assert stream.connects >= 3
    assert "ping" in received
    # every new connection resubscribed
    subs = [m for m in received if m.startswith("{") and json.loads(m)["op"] == "subscribe"]
    assert len(subs) >= 3
    assert "instrument:XBTUSD" in json.loads(subs[-1])["args"]


# --- against the simulator -------------------------------------------------------


FAST_WS: dict[str, Any] = {
    "ping_after": 1.0, "pong_timeout": 1.0, "backoff_base": 0.02, "backoff_max": 0.2,
}


@pytest.fixture
async def sim() -> AsyncIterator[BitmexSimulator]:
    simulator = BitmexSimulator()
    simulator.rate_limit = None  # these tests are about the socket, not REST budgets
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


async def until(pred: object, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not pred():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_market_stream_ticks_and_liquidations(sim: BitmexSimulator) -> None:
    ticks: list[Instrument] = []
    liqs: list[Liquidation] = []

    async def on_tick(inst: Instrument) -> None:
        ticks.append(inst)

    async def on_liq(liq: Liquidation) -> None:
        liqs.append(liq)

    async with aiohttp.ClientSession() as session:
        market = MarketStream(sim.ws_url, session=session, **FAST_WS)
        market.on_tick(on_tick)
        market.on_liquidation(on_liq)
        await market.watch("XBTUSD")
        await market.wait_ready(5)
        first = market.instrument("XBTUSD")
        assert first is not None and first.tick_size == D("0.1")
        assert market.instrument("ETHUSD") is None  # only what was asked for

        sim.engine.set_mark("XBTUSD", D("51000.5"))
        await until(lambda: any(t.mark_price == D("51000.5") for t in ticks))
        merged = market.instrument("XBTUSD")
        # an update merges into the partial's row: fields it did not carry are kept
        assert merged is not None and merged.mark_price == D("51000.5")
        assert merged.lot_size == D(100) and merged.kind == "inverse"

        await market.watch("ETHUSD")
        await until(lambda: market.instrument("ETHUSD") is not None)

        sim.engine.liquidate_market("XBTUSD", "Sell", 1000, D(50500), duration=2.0)
        await until(lambda: [x.action for x in liqs] == ["insert"])
        sim.engine.clock.advance(1.0)
        sim.engine.clock.advance(1.5)
        await until(lambda: [x.action for x in liqs] == ["insert", "update", "delete"])
        assert liqs[1].leaves_qty == 500
        assert market.table("liquidation").values() == []
        await market.close()
    assert market.connects == 1


async def test_private_stream_orders_and_partial(sim: BitmexSimulator) -> None:
    key, secret = sim.add_account()
    orders: list[Order] = []

    async def on_order(o: Order) -> None:
        orders.append(o)

    async with aiohttp.ClientSession() as session:
        client = BitmexClient(sim.url, key, secret, session=session)
        resting = await client.place_order("XBTUSD", "Buy", 100, "Limit", D(40000))
        stream = PrivateStream(sim.ws_url, key, secret, session=session, **FAST_WS)
        stream.on_order(on_order)
        await stream.start()
        await stream.wait_ready(5)
        # the partial holds the order placed before we connected
        assert [o.order_id for o in stream.orders()] == [resting.order_id]
        assert {m["currency"] for m in stream.table("margin").values()} == {"XBt", "USDt", "BMEx"}
        await client.amend_order(resting.order_id, price=D(41000))
        await until(lambda: any(o.price == D(41000) for o in orders))
        (row,) = stream.orders()
        assert row.price == D(41000) and row.order_qty == 100  # update merged into the row
        await client.cancel_orders([resting.order_id])
        await until(lambda: any(o.ord_status == "Canceled" for o in orders))
        assert stream.orders() == []  # told, and no longer held: only open orders stay
        await stream.cancel_all_after(60000)  # the dead-man's switch over the socket
        await until(lambda: sim.account(key).cancel_at is not None)
        await stream.close()


async def test_private_stream_rejects_bad_login(sim: BitmexSimulator) -> None:
    key, _ = sim.add_account()
    async with aiohttp.ClientSession() as session:
        stream = PrivateStream(sim.ws_url, key, "wrong" * 8, session=session, **FAST_WS)
        await stream.start()
        with pytest.raises(AuthError):
            await stream.wait_ready(5)
        await stream.close()
    assert stream.connects == 1  # a refused key is not retried in a loop


@pytest.mark.parametrize("pooled", [False, True])
async def test_the_login_is_signed_in_exchange_time(sim: BitmexSimulator, pooled: bool) -> None:
    """BitMEX two minutes ahead of this host: a login signed by the host's clock (valid for
    30 s) is already expired there, on the handshake and as authKeyExpires alike. Signed
    with the clock the REST client learned from BitMEX's answers, it is taken."""
    key, secret = sim.add_account()
    sim.clock_skew = 120.0
    orders: list[Order] = []

    async def on_order(o: Order) -> None:
        orders.append(o)

    async with aiohttp.ClientSession() as session:
        client = BitmexClient(sim.url, key, secret, session=session,
                              retry=RetryPolicy(base_delay=0.01))
        await client.positions()  # an answer: the client knows BitMEX's clock now
        pool = StreamPool(sim.ws_url, session=session,
                          options=StreamOptions(**FAST_WS)) if pooled else None
        stream = PrivateStream(sim.ws_url, key, secret, session=session, pool=pool,
                               clock=client.exchange_time,
                               **{**FAST_WS, "auth_timeout": 0.2, "resubscribe_base": 0.02})
        stream.on_order(on_order)
        await stream.start()
        try:
            await stream.wait_ready(3)
            placed = await client.place_order("XBTUSD", "Buy", 100, "Limit", D(40000))
            await until(lambda: any(o.order_id == placed.order_id for o in orders))
        finally:
            await stream.close()
            if pool is not None:
                await pool.close()


@pytest.mark.parametrize("with_history", [True, False])
async def test_fills_exactly_once_across_dropped_sockets(
    sim: BitmexSimulator, with_history: bool
) -> None:
    key, secret = sim.add_account()
    fills: list[Execution] = []

    async def on_fill(ex: Execution) -> None:
        fills.append(ex)

    sim.engine.set_mark("XBTUSD", D(50000))
    async with aiohttp.ClientSession() as session:
        client = BitmexClient(sim.url, key, secret, session=session,
                              retry=RetryPolicy(base_delay=0.01))
        # a fill from before the stream started is history, not news
        before = await client.place_order("XBTUSD", "Buy", 100, "Market")
        stream = PrivateStream(
            sim.ws_url, key, secret, session=session,
            history=client if with_history else None, **{**FAST_WS, "backoff_base": 0.1},
        )
        stream.on_fill(on_fill)
        live: set[str] = set()

        async def on_table(table: str, action: str, rows: list[dict[str, object]]) -> None:
            if table == "execution" and action == "insert":
                live.update(str(r["execID"]) for r in rows)

        stream.on_table(on_table)
        await stream.start()
        await stream.wait_ready(5)
        placed = []
        for i in range(12):
            side = "Buy" if i % 2 else "Sell"
            if i % 3 == 0:
                n = stream.connects
                await sim.faults.close_sockets()
                # this fill lands in the gap, then we wait for the reconnect
                placed.append(await client.place_order("XBTUSD", side, 100, "Market"))
                await until(lambda n=n: stream.connects > n)
            else:
                placed.append(await client.place_order("XBTUSD", side, 100, "Market"))
            if i % 4 == 1:
                await asyncio.sleep(0.02)
        await until(lambda: len(fills) >= len(placed), within=10)
        await asyncio.sleep(0.2)  # a late duplicate would show up here
        await stream.close()
    assert stream.connects == 5
    exec_ids = [f.exec_id for f in fills]
    assert len(exec_ids) == len(set(exec_ids))
    assert sorted(f.order_id for f in fills) == sorted(o.order_id for o in placed)
    assert before.order_id not in {f.order_id for f in fills}
    # some fills happened while disconnected and were recovered, not streamed live
    assert {f.exec_id for f in fills} - live


def test_connection_budget_follows_the_server_and_429s() -> None:
    b = ConnectionBudget(per_hour=60)
    b.record(0.0)
    b.note_remaining(2, 0.0)  # the server counts connects we did not make (a restart)
    b.record(1.0)
    assert b.wait_time(2.0) == 0
    b.record(2.0)
    assert b.wait_time(3.0) == pytest.approx(3597.0)  # none left: wait, don't knock
    assert b.wait_time(3600.0) == 0
    b.refused(120.0, 4000.0)  # a 429 says when
    assert b.wait_time(4001.0) == pytest.approx(119.0)
    assert b.wait_time(4120.0) == 0
    assert b.used == 3
