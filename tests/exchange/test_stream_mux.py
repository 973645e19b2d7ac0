"""Streams multiplexed over /realtimemd: a few sockets for many accounts, one connect
budget, login before subscribe, refused subscribes and lost logins retried, never dark."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from typing import Any

import aiohttp
import pytest_asyncio

from bot.exchange.client import BitmexClient
from bot.exchange.stream import (
    ConnectionBudget,
    MarketStream,
    PrivateStream,
    StreamOptions,
    StreamPool,
)
from bot.exchange.types import Execution
from bot.sandbox.bitmex import BitmexSimulator

FAST_POOL = StreamOptions(ping_after=1.0, pong_timeout=1.0, backoff_base=0.02, backoff_max=0.2)
FAST: dict[str, Any] = {"auth_timeout": 0.2, "resubscribe_base": 0.02, "resubscribe_max": 0.1,
                        "backoff_base": 0.02, "backoff_max": 0.2}


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


async def until(pred: Any, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def private(sim: BitmexSimulator, pool: StreamPool, http: aiohttp.ClientSession,
            fills: list[Execution] | None = None, **kw: Any) -> tuple[PrivateStream, str]:
    key, secret = sim.add_account()
    # Its trade history tells old fills from new ones, as in the bot.
    history = BitmexClient(sim.url, key, secret, session=http) if fills is not None else None
    stream = PrivateStream(sim.ws_url, key, secret, session=http, pool=pool, history=history,
                           **{**FAST, **kw})
    if fills is not None:
        async def on_fill(ex: Execution) -> None:
            fills.append(ex)

        stream.on_fill(on_fill)
    return stream, key


def market_buy(sim: BitmexSimulator, key: str, qty: int = 100) -> str:
    row = sim.engine.place_order(sim.account(key).id, {
        "symbol": "XBTUSD", "side": "Buy", "orderQty": qty, "ordType": "Market"})
    return str(row["orderID"])


async def test_many_accounts_few_sockets_every_fill_arrives(
        sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    pool = StreamPool(sim.ws_url, session=http, capacity=120, options=FAST_POOL)
    fills: list[Execution] = []
    market = MarketStream(sim.ws_url, session=http, pool=pool)
    await market.watch("XBTUSD")
    streams = [private(sim, pool, http, fills) for _ in range(300)]
    await asyncio.gather(*(s.start() for s, _ in streams))
    await asyncio.gather(*(s.wait_ready(10) for s, _ in streams), market.wait_ready(10))
    assert sim.ws_limit.used() == 3 == pool.handshakes  # 301 streams, 120 to a socket
    orders = {market_buy(sim, key) for _, key in streams}
    await until(lambda: len(fills) >= 300)
    assert {f.order_id for f in fills} == orders and len(fills) == 300

    await sim.faults.close_sockets()  # all three drop at once: three reconnects, not 301
    await until(lambda: all(s.is_live() for s, _ in streams) and market.is_live())
    assert sim.ws_limit.used() == 6
    orders = {market_buy(sim, key) for _, key in streams}
    await until(lambda: len(fills) >= 600)
    assert {f.order_id for f in fills[300:]} == orders
    for s, _ in streams:
        await s.close()
    await market.close()
    await pool.close()


async def test_refused_private_subscribe_is_retried_and_the_fill_reported(
        sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    pool = StreamPool(sim.ws_url, session=http, options=FAST_POOL)
    fills: list[Execution] = []
    stream, key = private(sim, pool, http, fills)
    sim.faults.ws.refuse_subscribe(table="execution")
    await stream.start()
    await until(lambda: stream.table("order").has_partial)
    assert not stream.table("execution").has_partial  # refused, and not forgotten:
    oid = market_buy(sim, key)
    await stream.wait_ready(5)
    await until(lambda: [f.order_id for f in fills] == [oid])
    await stream.close()
    await pool.close()


async def test_lost_login_is_sent_again_and_nothing_missed(
        sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    pool = StreamPool(sim.ws_url, session=http, options=FAST_POOL)
    fills: list[Execution] = []
    stream, key = private(sim, pool, http, fills)
    sim.faults.ws.drop_auth()
    await stream.start()
    await until(lambda: stream.connected.is_set())
    oid = market_buy(sim, key)  # while the login is lost
    await stream.wait_ready(5)
    assert stream.is_live()
    await until(lambda: [f.order_id for f in fills] == [oid])
    # later fills stream live, once each
    second = market_buy(sim, key)
    await until(lambda: [f.order_id for f in fills] == [oid, second])
    await stream.close()
    await pool.close()


async def test_dark_stream_is_told_once_and_again_when_back(
        sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    pool = StreamPool(sim.ws_url, session=http, options=FAST_POOL)
    fills: list[Execution] = []
    stream, key = private(sim, pool, http, fills, dark_after=0.3)
    told: list[bool] = []

    async def health(live: bool) -> None:
        told.append(live)

    stream.on_health(health)
    sim.faults.ws.refuse_subscribe(n=10_000, table="execution")
    await stream.start()
    await until(lambda: told == [False])
    oid = market_buy(sim, key)  # while dark
    await asyncio.sleep(0.3)  # dark for a while: still told only once
    assert told == [False]
    sim.faults.ws.clear()
    await until(lambda: told == [False, True])
    await until(lambda: [f.order_id for f in fills] == [oid])
    await stream.close()
    await pool.close()


async def test_budget_honours_the_welcomes_remaining(
        sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    # Another process (the bot before a restart) used 59 of the hour's 60 connects.
    sim.ws_limit.fill(59, sim.engine.clock.now())
    budget = ConnectionBudget()
    pool = StreamPool(sim.ws_url, session=http, budget=budget, options=FAST_POOL)
    stream, _ = private(sim, pool, http)
    await stream.start()
    await stream.wait_ready(5)
    assert budget.wait_time(time.monotonic()) > 3000  # welcome said 0 left
    await sim.faults.close_sockets()
    await asyncio.sleep(0.2)  # many backoffs' worth: no attempt, so no 429 either
    assert (sim.ws_limit.used(), sim.ws_limit.refused) == (60, 0)
    assert not stream.connected.is_set()
    await stream.close()
    await pool.close()


async def test_429_retry_after_stops_further_attempts(
        sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    sim.ws_limit.fill(60, sim.engine.clock.now())
    budget = ConnectionBudget()
    pool = StreamPool(sim.ws_url, session=http, budget=budget, options=FAST_POOL)
    stream, _ = private(sim, pool, http)
    await stream.start()
    await until(lambda: sim.ws_limit.refused == 1)
    await asyncio.sleep(0.2)
    assert sim.ws_limit.refused == 1  # waits out Retry-After instead of hammering
    assert budget.wait_time(time.monotonic()) > 3500
    await stream.close()
    await pool.close()


async def test_market_and_private_share_one_socket(
        sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    pool = StreamPool(sim.ws_url, session=http, options=FAST_POOL)
    market = MarketStream(sim.ws_url, session=http, pool=pool)
    await market.watch("XBTUSD")
    stream, _ = private(sim, pool, http)
    await stream.start()
    await asyncio.gather(market.wait_ready(5), stream.wait_ready(5))
    sim.engine.set_mark("XBTUSD", D("51000.5"))
    await until(lambda: (i := market.instrument("XBTUSD")) is not None
                and i.mark_price == D("51000.5"))
    assert sim.ws_limit.used() == 1
    await stream.close()
    await market.close()
    await pool.close()


async def test_sockets_open_one_by_one_on_what_the_welcome_says_is_left(
        sim: BitmexSimulator, http: aiohttp.ClientSession) -> None:
    sim.ws_limit.fill(57, sim.engine.clock.now())  # a crash loop left 3 connects this hour
    pool = StreamPool(sim.ws_url, session=http, capacity=1, options=FAST_POOL)
    streams = [private(sim, pool, http)[0] for _ in range(5)]  # would need five sockets
    await asyncio.gather(*(s.start() for s in streams))
    await until(lambda: sum(s.is_live() for s in streams) == 3)
    await asyncio.sleep(0.2)
    # the other two wait for the hour instead of knocking: nothing refused, nothing over
    assert (sim.ws_limit.used(), sim.ws_limit.refused) == (60, 0)
    assert sum(s.is_live() for s in streams) == 3
    for s in streams:
        await s.close()
    await pool.close()
