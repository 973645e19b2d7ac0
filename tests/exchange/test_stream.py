"""WebSocket streams: table semantics, heartbeat, reconnects, fills exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal as D

import aiohttp
import pytest
from aiohttp import web

from bot.exchange.stream import ConnectionBudget, MarketStream, Table, ws_url_for


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
