"""The simulator's WebSocket as strict as BitMEX's: the hourly connect limit, /realtimemd
multiplexing, handshake login, login before subscribe, error frames, faults."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bot.exchange import auth
from bot.sandbox.bitmex import BitmexSimulator


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[BitmexSimulator]:
    simulator = BitmexSimulator()
    simulator.rate_limit = None
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def recv(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await ws.receive(timeout=3)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return msg.data if msg.data == "pong" else json.loads(msg.data)


def login_args(key: str, secret: str) -> list[Any]:
    return auth.ws_login_args(key, secret, int(time.time()) + 30)


# --- the connect limit --------------------------------------------------------------------


async def test_sixty_connects_per_rolling_hour_across_endpoints_then_429(
        sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    remaining = []
    for i in range(60):
        url = sim.ws_url if i % 2 else sim.ws_mux_url
        ws = await http.ws_connect(url)
        if i % 2:
            welcome = await recv(ws)
        else:
            await ws.send_str(json.dumps([1, "a", "probe"]))
            kind, sid, topic, welcome = await recv(ws)
            assert (kind, sid, topic) == (0, "a", "probe")
        remaining.append(welcome["limit"]["remaining"])
        await ws.close()
        sim.engine.clock.advance(10)
    assert remaining == list(range(59, -1, -1))  # the truth, counted across both endpoints

    for url in (sim.ws_url, sim.ws_mux_url):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 429
        assert refused.value.headers is not None
        # the oldest connect leaves the window 3600 s after it was made (600 s ago)
        assert int(refused.value.headers["Retry-After"]) == 3000
    assert sim.ws_limit.used() == 60  # refused upgrades are not counted

    sim.engine.clock.advance(3000)  # simulated time, not a wait
    ws = await http.ws_connect(sim.ws_url)
    assert (await recv(ws))["limit"]["remaining"] == 0
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(sim.ws_url)


# --- /realtimemd --------------------------------------------------------------------------


async def test_realtimemd_streams_carry_what_realtime_sends(
        sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    key, secret = sim.add_account()
    other_key, other_secret = sim.add_account()
    plain = await http.ws_connect(sim.ws_url)
    await recv(plain)
    await plain.send_str(json.dumps({"op": "subscribe", "args": ["instrument:XBTUSD"]}))
    plain_ack, plain_partial = await recv(plain), await recv(plain)

    mux = await http.ws_connect(sim.ws_mux_url)
    for sid in ("alice", "bob", "market"):
        await mux.send_str(json.dumps([1, sid, "stream"]))
        kind, got_sid, topic, welcome = await recv(mux)
        assert (kind, got_sid, topic) == (0, sid, "stream")
        assert welcome["info"] == "Welcome to the BitMEX Realtime API."
    await mux.send_str(json.dumps([0, "market", "stream",
                                   {"op": "subscribe", "args": ["instrument:XBTUSD"]}]))
    assert await recv(mux) == [0, "market", "stream", plain_ack]
    kind, sid, _, partial = await recv(mux)
    assert sid == "market" and partial["data"] == plain_partial["data"]

    # each stream logs in on its own, with its own key
    for sid, k, s in (("alice", key, secret), ("bob", other_key, other_secret)):
        await mux.send_str(json.dumps([0, sid, "stream",
                                       {"op": "authKeyExpires", "args": login_args(k, s)}]))
        kind, got, _, ok = await recv(mux)
        assert got == sid and ok["success"] is True
        await mux.send_str(json.dumps([0, sid, "stream",
                                       {"op": "subscribe", "args": ["order"]}]))
        assert (await recv(mux))[3]["subscribe"] == "order"
        assert (await recv(mux))[3]["table"] == "order"

    # a private event reaches only its account's stream
    sim.engine.place_order(sim.account(key).id, {
        "symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 20000,
        "ordType": "Limit"})
    kind, sid, _, insert = await recv(mux)
    assert (kind, sid, insert["table"], insert["action"]) == (0, "alice", "order", "insert")

    # 2 closes one stream; the others carry on
    await mux.send_str(json.dumps([2, "market", "stream"]))
    await mux.send_str("ping")
    assert await recv(mux) == "pong"  # the close was handled (frames are taken in order)
    sim.engine.set_mark("XBTUSD", D("51234.5"))
    update = await recv(plain)
    assert update["table"] == "instrument" and update["data"][0]["markPrice"] == 51234.5
    await mux.send_str("ping")
    assert await recv(mux) == "pong"  # no update for the closed stream came first
    assert sim.ws_limit.used() == 2  # one handshake per socket, not per stream
    await mux.close()
    await plain.close()


async def test_login_takes_a_moment_a_subscribe_right_behind_it_is_refused(
        sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    key, secret = sim.add_account()
    ws = await http.ws_connect(sim.ws_url)
    await recv(ws)
    login = {"op": "authKeyExpires", "args": login_args(key, secret)}
    await ws.send_str(json.dumps(login))
    await ws.send_str(json.dumps({"op": "subscribe", "args": ["execution"]}))
    refused = await recv(ws)
    assert refused == {"status": 401, "error": "You must be authenticated to subscribe to "
                       "execution.", "meta": {},
                       "request": {"op": "subscribe", "args": ["execution"]}}
    assert await recv(ws) == {"success": True, "request": login}
    await ws.send_str(json.dumps({"op": "subscribe", "args": ["execution"]}))
    assert (await recv(ws))["subscribe"] == "execution"
    await ws.close()


async def test_handshake_login_with_headers(sim: BitmexSimulator,
                                            http: aiohttp.ClientSession) -> None:
    key, secret = sim.add_account()
    expires = int(time.time()) + 30
    headers = {"api-expires": str(expires), "api-key": key,
               "api-signature": auth.signature(secret, "GET", "/realtime", expires)}
    ws = await http.ws_connect(sim.ws_url, headers=headers)
    await recv(ws)
    await ws.send_str(json.dumps({"op": "subscribe", "args": ["position"]}))
    assert (await recv(ws))["subscribe"] == "position"  # logged in before the first message
    partial = await recv(ws)
    assert partial["keys"] == ["account", "symbol", "currency"]
    await ws.close()

    headers["api-signature"] = "0" * 64
    ws = await http.ws_connect(sim.ws_url, headers=headers)
    await recv(ws)
    assert (await recv(ws))["error"] == "Signature not valid."
    msg = await ws.receive(timeout=3)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_partials_carry_no_nulls(sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    key, secret = sim.add_account()
    acct = sim.account(key).id
    sim.engine.place_order(acct, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                  "ordType": "Market"})
    sim.engine.place_order(acct, {"symbol": "XBTUSD", "side": "Sell", "orderQty": 100,
                                  "ordType": "Market"})  # flat again: a row full of blanks
    ws = await http.ws_connect(sim.ws_url)
    await recv(ws)
    await ws.send_str(json.dumps({"op": "authKeyExpires", "args": login_args(key, secret)}))
    assert (await recv(ws))["success"] is True
    tables = ["position", "order", "execution", "margin", "wallet", "instrument", "funding"]
    await ws.send_str(json.dumps({"op": "subscribe", "args": tables}))
    partials = {}
    while len(partials) < len(tables):
        msg = await recv(ws)
        if msg.get("action") == "partial":
            partials[msg["table"]] = msg["data"]
    assert partials["position"] and partials["execution"]
    nulls = [(t, k) for t, rows in partials.items() for r in rows for k, v in r.items()
             if v is None]
    assert nulls == []
    await ws.close()


# --- faults -------------------------------------------------------------------------------


async def test_faults_refuse_one_private_subscribe_and_lose_one_login(
        sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    key, secret = sim.add_account()
    sim.faults.ws.refuse_subscribe(table="execution")
    sim.faults.ws.drop_auth()
    ws = await http.ws_connect(sim.ws_url)
    await recv(ws)
    login = {"op": "authKeyExpires", "args": login_args(key, secret)}
    await ws.send_str(json.dumps(login))  # lost: no answer at all
    await ws.send_str("ping")
    await asyncio.sleep(sim.ws_auth_delay * 3)
    assert await recv(ws) == "pong"
    await ws.send_str(json.dumps({"op": "subscribe", "args": ["order"]}))
    assert (await recv(ws))["status"] == 401  # not logged in
    await ws.send_str(json.dumps(login))  # the next login goes through
    assert (await recv(ws))["success"] is True
    await ws.send_str(json.dumps({"op": "subscribe", "args": ["execution", "order"]}))
    refused = await recv(ws)
    assert refused["status"] == 503 and "execution" in refused["error"]
    assert refused["request"] == {"op": "subscribe", "args": ["execution", "order"]}
    assert (await recv(ws))["subscribe"] == "order"
    assert (await recv(ws))["table"] == "order"
    await ws.send_str(json.dumps({"op": "subscribe", "args": ["execution"]}))  # once only
    assert (await recv(ws))["subscribe"] == "execution"
    await ws.close()
