"""The simulator's REST and WebSocket protocol, spoken with raw aiohttp."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import pytest_asyncio
from yarl import URL

from bot.sandbox.bitmex import BitmexSimulator, RateLimitConfig

VECTOR_KEY = "LAqUlngMIQkIUjXMUreyu3qn"
VECTOR_SECRET = "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO"


def signature(secret: str, verb: str, path: str, expires: int, body: str = "") -> str:
    return hmac.new(secret.encode(), f"{verb}{path}{expires}{body}".encode(),
                    hashlib.sha256).hexdigest()


@pytest_asyncio.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Api:
    """A tiny signed client: sign exactly the bytes that go on the wire.

    The URL is passed pre-encoded so aiohttp/yarl cannot requote the query
    after it was signed (the server verifies the raw request line).
    """

    def __init__(self, sim: BitmexSimulator, http: aiohttp.ClientSession, key: str,
                 secret: str) -> None:
        self.sim, self.http, self.key, self.secret = sim, http, key, secret

    async def call(
        self,
        verb: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        *,
        expires: int | None = None,
        secret: str | None = None,
        tamper: str | None = None,
        form: bool = False,
        wait: float = 5,
    ) -> tuple[int, Any, Any]:
        full = "/api/v1" + path + ("?" + urlencode(query) if query else "")
        raw = ""
        headers = {}
        if body is not None:
            raw = urlencode(body) if form else json.dumps(body)
            headers["content-type"] = (
                "application/x-www-form-urlencoded" if form else "application/json"
            )
        exp = expires if expires is not None else int(time.time()) + 30
        headers.update({
            "api-key": self.key,
            "api-expires": str(exp),
            "api-signature": signature(secret or self.secret, verb, full, exp, raw),
        })
        async with self.http.request(
            verb,
            URL(self.sim.url + full, encoded=True),
            data=(tamper or raw).encode() if raw else None,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=wait),
        ) as resp:
            text = await resp.text()
            return resp.status, json.loads(text), resp.headers.copy()


@pytest.fixture
def api(simulator: BitmexSimulator, http: aiohttp.ClientSession) -> Api:
    key, secret = simulator.add_account()
    return Api(simulator, http, key, secret)


def test_signing_helper_matches_official_vectors() -> None:
    assert signature(VECTOR_SECRET, "GET", "/api/v1/instrument", 1518064236) == (
        "c7682d435d0cfe87c16098df34ef2eb5a549d4c5a3c2b1f0f77b8af73423bf00")
    assert signature(
        VECTOR_SECRET, "GET", "/api/v1/instrument?filter=%7B%22symbol%22%3A+%22XBTM15%22%7D",
        1518064237) == "e2f422547eecb5b3cb29ade2127e21b858b235b386bfa45e1c1756eb3383919f"
    body = ('{"symbol":"XBTM15","price":219.0,"clOrdID":"mm_bitmex_1a/oemUeQ4CAJZgP3fjHsA",'
            '"orderQty":98}')
    assert signature(VECTOR_SECRET, "POST", "/api/v1/order", 1518064238, body) == (
        "1749cd2ccae4aa49048ae09f0b95110cee706e0944e6a14ad0b3a8cb45bd336b")


async def test_signed_requests_are_accepted(simulator: BitmexSimulator,
                                            http: aiohttp.ClientSession) -> None:
    simulator.add_account(VECTOR_KEY, VECTOR_SECRET)
    api = Api(simulator, http, VECTOR_KEY, VECTOR_SECRET)
    status, body, _ = await api.call("GET", "/instrument",
                                     {"filter": json.dumps({"symbol": "XBTUSD"})})
    assert status == 200 and [r["symbol"] for r in body] == ["XBTUSD"]
    status, body, _ = await api.call("POST", "/order", body={
        "symbol": "XBTUSD", "price": 21900.0, "clOrdID": "mm_bitmex_1a/oemUeQ4CAJZgP3fjHsA",
        "orderQty": 100})
    assert status == 200 and body["ordStatus"] == "New" and body["price"] == 21900


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": "wrong"}, "Signature not valid."),
        ({"tamper": json.dumps({"symbol": "XBTUSD", "orderQty": 900, "side": "Buy"})},
         "Signature not valid."),
        ({"expires": 1518064236}, "This request has expired - `expires` is in the past. "
                                  "Current time: "),
    ],
)
async def test_bad_signatures_are_refused(api: Api, kwargs: dict, message: str) -> None:
    status, body, _ = await api.call(
        "POST", "/order", body={"symbol": "XBTUSD", "orderQty": 100, "side": "Buy"}, **kwargs)
    assert status == 401
    assert body["error"]["message"].startswith(message)
    assert body["error"]["name"] == "HTTPError"
    assert api.sim.engine.order_rows(api.sim.account(api.key).id) == []


async def test_unknown_and_disabled_keys(simulator: BitmexSimulator,
                                         http: aiohttp.ClientSession) -> None:
    status, body, _ = await Api(simulator, http, "nobody", "x").call("GET", "/position")
    assert (status, body["error"]["message"]) == (401, "Invalid API Key.")
    key, secret = simulator.add_account(enabled=False)
    status, body, _ = await Api(simulator, http, key, secret).call("GET", "/position")
    assert (status, body["error"]["message"]) == (401, "This key is disabled.")


async def test_missing_permission_is_403(simulator: BitmexSimulator,
                                         http: aiohttp.ClientSession) -> None:
    key, secret = simulator.add_account(permissions=())
    api = Api(simulator, http, key, secret)
    status, body, _ = await api.call("POST", "/order", body={
        "symbol": "XBTUSD", "orderQty": 100, "side": "Buy", "ordType": "Market"})
    assert status == 403 and body["error"]["message"] == "Access Denied"
    status, body, _ = await api.call("GET", "/apiKey")
    own = [row for row in body if row["id"] == key]
    assert status == 200 and own[0]["permissions"] == []


async def test_order_lifecycle_routes(api: Api) -> None:
    status, order, headers = await api.call("POST", "/order", body={
        "symbol": "XBTUSD", "side": "Buy", "orderQty": 200, "price": 30000, "clOrdID": "o-1"})
    assert status == 200
    assert {"orderID", "clOrdID", "account", "ordStatus", "leavesQty", "cumQty", "avgPx",
            "transactTime", "timestamp", "execInst", "timeInForce"} <= set(order)
    assert "x-ratelimit-remaining-1s" in headers
    status, rows, _ = await api.call("GET", "/order", {"filter": json.dumps({"open": True}),
                                                       "reverse": "true"})
    assert [r["clOrdID"] for r in rows] == ["o-1"]
    status, amended, _ = await api.call("PUT", "/order", body={"origClOrdID": "o-1",
                                                               "price": 30000.5})
    assert status == 200 and amended["price"] == 30000.5
    status, rows, _ = await api.call("DELETE", "/order", body={"clOrdID": "o-1"})
    assert status == 200 and rows[0]["ordStatus"] == "Canceled"
    status, rows, _ = await api.call("DELETE", "/order", body={"orderID": order["orderID"]})
    assert rows[0]["error"] == "Unable to cancel order due to existing state: Canceled"
    # a cancelled order's clOrdID may be used again (BitMEX), an open one's may not
    again = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 200, "price": 30000, "clOrdID": "o-1"}
    status, reused, _ = await api.call("POST", "/order", body=again)
    assert status == 200 and reused["orderID"] != order["orderID"]
    status, dup, _ = await api.call("POST", "/order", body=again)
    assert (status, dup["error"]["message"]) == (400, "Duplicate clOrdID")
    await api.call("DELETE", "/order", body={"clOrdID": "o-1"})


async def test_load_shedding_refuses_every_order_with_a_quantity(api: Api) -> None:
    sim = api.sim
    sim.engine.set_mark("XBTUSD", D(50000))
    status, _, _ = await api.call("POST", "/order", body={
        "symbol": "XBTUSD", "side": "Buy", "orderQty": 300, "ordType": "Market"})
    assert status == 200
    status, resting, _ = await api.call("POST", "/order", body={
        "symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 30000})
    sim.faults.load_shedding = True
    try:
        for extra in ({}, {"execInst": "ReduceOnly"}, {"execInst": "Close"}):
            status, body, _ = await api.call("POST", "/order", body={
                "symbol": "XBTUSD", "side": "Sell", "orderQty": 100, "ordType": "Market",
                **extra})
            assert (status, body["error"]["message"]) == (
                503, "The system is currently overloaded. Please try again later."), extra
        status, rows, _ = await api.call("GET", "/position")
        assert status == 200 and [r["currentQty"] for r in rows
                                  if r["symbol"] == "XBTUSD"] == [300]
        status, rows, _ = await api.call("DELETE", "/order", body={
            "orderID": resting["orderID"]})
        assert status == 200 and rows[0]["ordStatus"] == "Canceled"  # cancels go through
        # a full close names the side and omits orderQty: that one is taken
        status, closed, _ = await api.call("POST", "/order", body={
            "symbol": "XBTUSD", "side": "Sell", "ordType": "Market", "execInst": "Close"})
        assert status == 200 and closed["ordStatus"] == "Filled" and closed["cumQty"] == 300
    finally:
        sim.faults.load_shedding = False
    status, rows, _ = await api.call("GET", "/position")
    assert [r["currentQty"] for r in rows if r["symbol"] == "XBTUSD"] == [0]


async def until(cond: Any) -> None:
    """Loopback round trips (not simulated time): yield until `cond()` holds."""
    for _ in range(400):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def test_engine_lag_holds_the_order_and_its_answer(api: Api) -> None:
    sim = api.sim
    sim.faults.engine_lag(1, seconds=12)
    post = asyncio.create_task(api.call("POST", "/order", body={
        "symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "ordType": "Market",
        "clOrdID": "lag-1"}))
    await until(lambda: sim.faults.held == 1)
    status, rows, _ = await api.call("GET", "/order", {"filter": json.dumps({"clOrdID": "lag-1"})})
    assert (status, rows) == (200, [])  # accepted, but not in the book yet
    assert not post.done()
    sim.engine.clock.advance(11)
    status, rows, _ = await api.call("GET", "/order", {"filter": json.dumps({"clOrdID": "lag-1"})})
    assert rows == [] and sim.faults.held == 1 and not post.done()
    sim.engine.clock.advance(1)
    status, order, _ = await post
    assert status == 200 and order["ordStatus"] == "Filled" and order["clOrdID"] == "lag-1"
    status, rows, _ = await api.call("GET", "/order", {"filter": json.dumps({"clOrdID": "lag-1"})})
    assert [r["orderID"] for r in rows] == [order["orderID"]]
    # a request whose api-expires passes while it waits never reaches the engine
    sim.faults.engine_lag(1, seconds=40)
    post = asyncio.create_task(api.call("POST", "/order", body={
        "symbol": "XBTUSD", "side": "Sell", "orderQty": 100, "ordType": "Market",
        "clOrdID": "lag-2"}, expires=int(time.time()) + 30))
    await until(lambda: sim.faults.held == 1)
    sim.engine.clock.advance(40)
    status, body, _ = await post
    assert status == 401 and "expired" in body["error"]["message"]
    status, rows, _ = await api.call("GET", "/order", {"filter": json.dumps({"clOrdID": "lag-2"})})
    assert rows == []


async def test_form_and_query_params(api: Api) -> None:
    status, order, _ = await api.call("POST", "/order", body={
        "symbol": "XBTUSD", "side": "Sell", "orderQty": "100", "price": "90000"}, form=True)
    assert status == 200 and order["orderQty"] == 100 and order["side"] == "Sell"
    status, order2, _ = await api.call("POST", "/order", query={
        "symbol": "XBTUSD", "side": "Sell", "orderQty": "100", "price": "90000.5"})
    assert status == 200 and order2["price"] == 90000.5
    status, rows, _ = await api.call("DELETE", "/order/all", query={"symbol": "XBTUSD"})
    assert status == 200 and {r["orderID"] for r in rows} == {order["orderID"],
                                                              order2["orderID"]}


async def test_rejections_have_bitmex_bodies(api: Api) -> None:
    status, body, _ = await api.call("POST", "/order", body={
        "symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 30000.05})
    assert (status, body) == (400, {"error": {"message": "Invalid price tickSize",
                                              "name": "HTTPError"}})
    status, body, _ = await api.call("POST", "/order", body={
        "symbol": "XBTUSD", "side": "Buy", "orderQty": 10000000, "ordType": "Market"})
    assert status == 400
    assert body["error"]["message"].startswith("Account has insufficient Available Balance")
    status, body, _ = await api.call("GET", "/execution/tradeHistory", {"count": 1001})
    assert status == 400 and body["error"]["name"] == "ValidationError"
    status, body, _ = await api.call("GET", "/nope")
    assert (status, body["error"]["message"]) == (404, "Not Found")


async def test_account_routes(api: Api) -> None:
    status, filled, _ = await api.call("POST", "/order", body={
        "symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000, "ordType": "Market"})
    assert status == 200 and filled["ordStatus"] == "Filled"
    status, pos, _ = await api.call("POST", "/position/leverage",
                                    body={"symbol": "XBTUSDT", "leverage": 10})
    assert status == 200 and pos["leverage"] == 10 and pos["crossMargin"] is False
    status, rows, _ = await api.call("GET", "/position", {"filter": json.dumps(
        {"symbol": "XBTUSDT"})})
    assert rows[0]["currentQty"] == 1000 and rows[0]["currency"] == "USDt"
    assert rows[0]["liquidationPrice"] > 0
    status, margins, _ = await api.call("GET", "/user/margin", {"currency": "all"})
    assert [m["currency"] for m in margins] == ["XBt", "USDt", "BMEx"]
    assert margins[1]["walletBalance"] < 10000 * 10**6  # paid the taker fee
    status, margin, _ = await api.call("GET", "/user/margin")
    assert margin["currency"] == "XBt" and margin["walletBalance"] == 10**8
    status, wallet, _ = await api.call("GET", "/user/wallet", {"currency": "USDt"})
    assert wallet["amount"] == margins[1]["walletBalance"]
    status, fills, _ = await api.call("GET", "/execution/tradeHistory", {"symbol": "XBTUSDT"})
    assert [f["execType"] for f in fills] == ["Trade"]
    assert fills[0]["execComm"] > 0 and fills[0]["lastQty"] == 1000
    status, execs, _ = await api.call("GET", "/execution", {"columns": json.dumps(["execType"])})
    assert [e["execType"] for e in execs] == ["New", "Trade"]
    assert set(execs[0]) <= {"execID", "symbol", "execType", "timestamp"}
    status, user, _ = await api.call("GET", "/user")
    assert user["id"] == api.sim.account(api.key).id
    status, keys, _ = await api.call("GET", "/apiKey")
    # Every key of the account, the caller's own last (an older withdraw key first).
    assert [k["id"] == api.key for k in keys] == [False, True]
    assert "withdraw" in keys[0]["permissions"]
    assert keys[1]["permissions"] == ["order", "orderCancel"]
    assert keys[0]["enabled"] is True
    status, result, _ = await api.call("POST", "/order/cancelAllAfter", body={"timeout": 60000})
    assert status == 200 and result["cancelTime"] is not None


async def test_public_market_routes(simulator: BitmexSimulator, api: Api) -> None:
    status, rows, _ = await api.call("GET", "/instrument/active")
    xbt = next(r for r in rows if r["symbol"] == "XBTUSD")
    assert xbt["typ"] == "FFWCSX" and xbt["multiplier"] == -100000000
    assert xbt["isInverse"] is True and xbt["lotSize"] == 100 and xbt["tickSize"] == 0.1
    usdt = next(r for r in rows if r["symbol"] == "XBTUSDT")
    assert usdt["settlCurrency"] == "USDt" and usdt["underlyingToPositionMultiplier"] == 10**6
    simulator.engine.set_mark("ETHUSD", 3001, trade_size=5)
    status, trades, _ = await api.call("GET", "/trade", {"symbol": "ETHUSD", "reverse": "true",
                                                         "count": 1})
    assert trades[0]["size"] == 5 and trades[0]["price"] == 3001
    status, bars, _ = await api.call("GET", "/trade/bucketed", {
        "binSize": "1m", "symbol": "ETHUSD", "partial": "true", "reverse": "true", "count": 1})
    assert status == 200 and bars[0]["close"] == 3001 and bars[0]["timestamp"].endswith(":00.000Z")


async def test_rate_limits(simulator: BitmexSimulator, api: Api) -> None:
    old = simulator.rate_limit
    simulator.rate_limit = RateLimitConfig(per_minute=4, per_second_orders=2)
    try:
        statuses = []
        for _ in range(3):
            status, _, headers = await api.call("GET", "/order")
            statuses.append(status)
        assert headers["x-ratelimit-limit"] == "4"
        assert headers["x-ratelimit-remaining"] == "1"
        assert int(headers["x-ratelimit-reset"]) >= int(time.time())
        status, body, headers = await api.call("DELETE", "/order/all")
        status, body, headers = await api.call("DELETE", "/order/all")
        assert status == 429 and "Retry-After" in headers
        assert body["error"]["message"].startswith("Rate limit exceeded")
        assert statuses == [200, 200, 200]
        simulator.rate_limit = RateLimitConfig(per_minute=100, per_second_orders=2)
        await asyncio.sleep(1.05)
        codes = [(await api.call("DELETE", "/order/all"))[0] for _ in range(3)]
        assert codes == [200, 200, 429]
    finally:
        simulator.rate_limit = old


async def test_fault_overloaded(simulator: BitmexSimulator, api: Api) -> None:
    simulator.faults.fail_next(1)
    order = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 30000,
             "clOrdID": "retry-me"}
    status, body, _ = await api.call("POST", "/order", body=order)
    assert status == 503
    assert body["error"]["message"] == "The system is currently overloaded. Please try again later."
    assert simulator.engine.order_rows(simulator.account(api.key).id) == []
    status, body, _ = await api.call("POST", "/order", body=order)
    assert status == 200 and body["clOrdID"] == "retry-me"


async def test_fault_latency(simulator: BitmexSimulator, api: Api) -> None:
    simulator.faults.latency = 0.3
    try:
        started = time.monotonic()
        status, _, _ = await api.call("GET", "/position")
        assert status == 200 and time.monotonic() - started >= 0.3
    finally:
        simulator.faults.latency = 0.0


@pytest.mark.parametrize("mode", ["close", "hang"])
async def test_fault_drop_after_accept(simulator: BitmexSimulator, api: Api, mode: str) -> None:
    simulator.faults.drop_after_accept(1, mode=mode)
    with pytest.raises((aiohttp.ClientError, asyncio.TimeoutError)):
        await api.call("POST", "/order", body={
            "symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 30000,
            "clOrdID": f"lost-{mode}"}, wait=0.5)
    # The order reached the engine: looking it up by clOrdID settles the outcome.
    status, rows, _ = await api.call("GET", "/order", {"filter": json.dumps(
        {"clOrdID": f"lost-{mode}"})})
    assert status == 200 and rows[0]["ordStatus"] == "New"


# ------------------------------------------------------------------ WebSocket
class Socket:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, op: str, args: Any) -> None:
        await self.ws.send_str(json.dumps({"op": op, "args": args}))

    async def recv(self) -> Any:
        msg = await self.ws.receive(timeout=3)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        return msg.data if msg.data == "pong" else json.loads(msg.data)

    async def until(self, table: str, action: str) -> dict:
        for _ in range(50):
            msg = await self.recv()
            if isinstance(msg, dict) and msg.get("table") == table and msg["action"] == action:
                return msg
        raise AssertionError(f"no {table} {action}")


async def connect(sim: BitmexSimulator, http: aiohttp.ClientSession, query: str = "") -> Socket:
    ws = await http.ws_connect(sim.ws_url + query)
    sock = Socket(ws)
    welcome = await sock.recv()
    assert welcome["info"] == "Welcome to the BitMEX Realtime API."
    assert "limit" in welcome and "timestamp" in welcome
    return sock


async def test_ws_public_subscribe_partial_and_updates(
    simulator: BitmexSimulator, http: aiohttp.ClientSession
) -> None:
    sock = await connect(simulator, http)
    await sock.send("subscribe", ["instrument:XBTUSD", "foo"])
    ack = await sock.recv()
    assert ack["success"] is True and ack["subscribe"] == "instrument:XBTUSD"
    assert ack["request"] == {"op": "subscribe", "args": ["instrument:XBTUSD", "foo"]}
    partial = await sock.recv()
    assert partial["table"] == "instrument" and partial["action"] == "partial"
    assert partial["keys"] == ["symbol"] and [r["symbol"] for r in partial["data"]] == ["XBTUSD"]
    assert partial["types"]["symbol"] == "symbol" and partial["filter"] == {"symbol": "XBTUSD"}
    err = await sock.recv()
    # BitMEX's error frame: status, error, meta, the request; no "success"
    assert err == {"status": 400, "error": "Unknown table: foo", "meta": {},
                   "request": {"op": "subscribe", "args": ["instrument:XBTUSD", "foo"]}}
    simulator.engine.set_mark("XBTUSD", D("51234.5"))
    simulator.engine.set_mark("ETHUSD", 3100)  # not subscribed: must not arrive
    update = await sock.until("instrument", "update")
    assert update["data"][0]["symbol"] == "XBTUSD" and update["data"][0]["markPrice"] == 51234.5
    await sock.ws.send_str("ping")
    assert await sock.recv() == "pong"
    await sock.send("subscribe", ["order"])
    err = await sock.recv()
    assert err["status"] == 401 and "must be authenticated" in err["error"]
    await sock.ws.close()


async def test_ws_private_after_login(simulator: BitmexSimulator,
                                      http: aiohttp.ClientSession, api: Api) -> None:
    sock = await connect(simulator, http)
    expires = int(time.time()) + 30
    await sock.send("authKeyExpires", [api.key, expires, "0" * 64])
    bad = await sock.recv()
    assert bad["status"] == 401 and bad["error"] == "Signature not valid."
    sig = signature(api.secret, "GET", "/realtime", expires)
    await sock.send("authKeyExpires", [api.key, expires, sig])
    assert (await sock.recv())["success"] is True
    await sock.send("subscribe", ["order", "position", "margin", "execution:XBTUSD"])
    partials: dict[str, Any] = {}
    while len(partials) < 4:
        msg = await sock.recv()
        if msg.get("action") == "partial":
            partials[msg["table"]] = msg
    assert partials["order"]["keys"] == ["orderID"] and partials["order"]["data"] == []
    assert partials["position"]["keys"] == ["account", "symbol", "currency"]
    assert partials["margin"]["keys"] == ["account", "currency"]
    assert len(partials["margin"]["data"]) == 3  # XBt, USDt, BMEx
    _, order, _ = await api.call("POST", "/order", body={
        "symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 20000})
    insert = await sock.until("order", "insert")
    assert insert["data"][0]["orderID"] == order["orderID"]
    execution = await sock.until("execution", "insert")
    assert execution["data"][0]["execType"] == "New"
    await api.call("DELETE", "/order", body={"orderID": order["orderID"]})
    update = await sock.until("order", "update")
    assert update["data"][0]["ordStatus"] == "Canceled"
    await sock.ws.send_str(json.dumps({"op": "cancelAllAfter", "args": 60000}))
    msg = await sock.recv()
    while "cancelTime" not in msg:
        msg = await sock.recv()
    assert msg["cancelTime"] is not None
    await sock.ws.close()


async def test_ws_query_auth_and_liquidation_feed(simulator: BitmexSimulator,
                                                  http: aiohttp.ClientSession,
                                                  api: Api) -> None:
    expires = int(time.time()) + 30
    sig = signature(api.secret, "GET", "/realtime", expires)
    sock = await connect(simulator, http,
                         f"?api-expires={expires}&api-signature={sig}&api-key={api.key}")
    await sock.send("subscribe", ["liquidation", "wallet"])
    await sock.until("liquidation", "partial")
    row = simulator.engine.liquidate_market("XBTUSD", "Sell", 1000, D("50000"))
    insert = await sock.until("liquidation", "insert")
    assert insert["data"] == [{"orderID": row["orderID"], "symbol": "XBTUSD", "side": "Sell",
                               "price": 50000, "leavesQty": 1000}]
    simulator.engine.clock.advance(1)
    assert (await sock.until("liquidation", "update"))["data"][0]["leavesQty"] == 500
    simulator.engine.clock.advance(1)
    assert (await sock.until("liquidation", "delete"))["data"][0]["orderID"] == row["orderID"]
    await simulator.faults.close_sockets()
    msg = await sock.ws.receive(timeout=3)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_ws_bad_query_auth_is_refused(simulator: BitmexSimulator,
                                            http: aiohttp.ClientSession, api: Api) -> None:
    expires = int(time.time()) + 30
    sock = await connect(simulator, http,
                         f"?api-expires={expires}&api-signature={'0' * 64}&api-key={api.key}")
    err = await sock.recv()
    assert err["error"] == "Signature not valid."
    msg = await sock.ws.receive(timeout=3)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_second_layer_covers_exactly_its_routes(api: Api) -> None:
    """POST/PUT/DELETE /order, /order/bulk, DELETE /order/all and the position writes."""
    layered = []
    for verb, path, body in (
        ("GET", "/order", None),
        ("POST", "/order/cancelAllAfter", {"timeout": 0}),
        ("GET", "/position", None),
        ("DELETE", "/order/all", None),
        ("POST", "/position/leverage", {"symbol": "XBTUSD", "leverage": 5}),
    ):
        _, _, headers = await api.call(verb, path, body=body)
        layered.append("x-ratelimit-remaining-1s" in headers)
    assert layered == [False, False, False, True, True]


async def test_minute_limit_is_a_token_bucket(simulator: BitmexSimulator, api: Api) -> None:
    old = simulator.rate_limit
    simulator.rate_limit = RateLimitConfig(per_minute=120, per_second_orders=10)
    try:
        status, _, headers = await api.call("GET", "/position")
        assert status == 200 and headers["x-ratelimit-limit"] == "120"
        simulator._buckets[api.key].tokens = 0.0  # as after 120 quick calls
        status, _, headers = await api.call("GET", "/position")
        assert status == 429
        assert headers["Retry-After"] == "1"  # a token every 0.5 s, not a minute's wait
        await asyncio.sleep(0.55)
        status, _, headers = await api.call("GET", "/position")
        assert status == 200 and headers["x-ratelimit-remaining"] == "0"
    finally:
        simulator.rate_limit = old
