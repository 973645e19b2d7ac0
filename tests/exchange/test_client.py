"""BitmexClient against the BitMEX simulator over 127.0.0.1: every call, every error, retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal as D

import aiohttp
import pytest

from bot.errors import (
    AuthError,
    DuplicateClOrdID,
    ExchangeUnreachable,
    InsufficientBalance,
    NotFound,
    NotPlaced,
    OutcomeUnknown,
    Overloaded,
    PermissionDenied,
    RateLimited,
    Rejected,
)
from bot.exchange import auth
from bot.exchange.client import (
    ORDER_EXPIRES_IN,
    SETTLE_MARGIN,
    BitmexClient,
    InstrumentCatalog,
    RetryPolicy,
)
from bot.exchange.types import Exchange
from bot.sandbox.bitmex.server import BitmexSimulator

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, overload_delay=0.02, max_attempts=4)


@pytest.fixture
async def sim() -> AsyncIterator[BitmexSimulator]:
    simulator = BitmexSimulator()
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def make_client(
    sim: BitmexSimulator, session: aiohttp.ClientSession, **kwargs: object
) -> BitmexClient:
    key, secret = sim.add_account()
    opts: dict[str, object] = {"retry": FAST, "timeout": 3.0}
    opts.update(kwargs)
    return BitmexClient(sim.url, key, secret, session=session, **opts)  # type: ignore[arg-type]


async def test_one_instrument_list_serves_every_account_of_a_network(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    """Kept per client, 1,000 accounts held 1,000 copies of BitMEX's ~130 instruments and
    each spent its own rate limit refreshing them; now the second account's /buy preview
    asks BitMEX nothing for the contract's specs."""
    catalog = InstrumentCatalog(ttl=60.0)
    alice = make_client(sim, session, catalog=catalog)
    bob = make_client(sim, session, catalog=catalog)
    assert (await alice.instrument("XBTUSD")).lot_size == D(100)
    assert (await bob.instrument("XBTUSD")).lot_size == D(100)
    await asyncio.gather(*(bob.instrument("ETHUSD") for _ in range(20)))
    assert catalog.loads == 1
    assert bob.rate.remaining is None  # bob's key has sent nothing at all
    # A typo from many users in a burst asks BitMEX once more, not once each.
    for client in (alice, bob, alice):
        with pytest.raises(NotFound):
            await client.instrument("NOPE")
    assert catalog.loads == 1  # loaded under 5 s ago: the list is fresh enough to say no
    catalog.loaded_at -= 6
    with pytest.raises(NotFound):
        await bob.instrument("NOPE")
    assert catalog.loads == 2 and bob.rate.remaining is not None
    # A client of its own (no catalog given) keeps its own list, as before.
    carol = make_client(sim, session)
    await carol.instrument("XBTUSD")
    assert carol.catalog is not catalog and catalog.loads == 2


async def test_market_data_calls(sim: BitmexSimulator, session: aiohttp.ClientSession) -> None:
    client = make_client(sim, session)
    assert isinstance(client, Exchange)
    symbols = {i.symbol: i for i in await client.instruments()}
    assert {"XBTUSD", "ETHUSD", "XBTUSDT", "ETHUSDT"} <= set(symbols)
    xbt = await client.instrument("XBTUSD")
    assert (xbt.kind, xbt.tick_size, xbt.lot_size, xbt.multiplier) == (
        "inverse", D("0.1"), D(100), D(-100000000),
    )
    assert (await client.instrument("ETHUSD")).kind == "quanto"
    assert (await client.instrument("XBTUSDT")).kind == "linear"
    with pytest.raises(NotFound):
        await client.instrument("NOPE")
    assert await client.round_price("XBTUSD", D("50000.14")) == D("50000.1")
    assert await client.round_qty("XBTUSD", D(1299)) == D(1200)

    sim.engine.set_mark("XBTUSD", D("51234.5"))
    tick = await client.ticker("XBTUSD")
    assert tick.mark == D("51234.5") and tick.symbol == "XBTUSD"
    assert tick.bid is not None and tick.ask is not None and tick.bid < tick.ask

    for price in (50000, 50100, 50200):
        sim.engine.clock.advance(60)
        sim.engine.set_mark("XBTUSD", D(price), trade_size=100)
    candles = await client.bucketed("XBTUSD", "1m", count=10)
    assert len(candles) >= 2
    assert [c.timestamp for c in candles] == sorted(c.timestamp for c in candles)
    assert candles[-1].close in (D(50100), D(50200))


async def test_order_lifecycle(sim: BitmexSimulator, session: aiohttp.ClientSession) -> None:
    client = make_client(sim, session)
    sim.engine.set_mark("XBTUSD", D(50000))
    order = await client.place_order(
        "XBTUSD", "Buy", 100, "Limit", D("49000.0"), exec_inst=["ParticipateDoNotInitiate"],
        text="from test",
    )
    assert order.ord_status == "New" and order.price == D(49000)
    assert order.cl_ord_id.startswith("tg-") and order.exec_inst == ("ParticipateDoNotInitiate",)
    found = await client.order_by_cl_ord_id(order.cl_ord_id)
    assert found is not None and found.order_id == order.order_id
    assert await client.order_by_cl_ord_id("no-such-id") is None
    assert [o.order_id for o in await client.open_orders("XBTUSD")] == [order.order_id]
    assert await client.open_orders("ETHUSD") == []

    amended = await client.amend_order(order.order_id, qty=200, price=D("49500.5"))
    assert amended.order_qty == 200 and amended.price == D("49500.5")
    by_cl = await client.amend_order(orig_cl_ord_id=order.cl_ord_id, price=D(49400))
    assert by_cl.price == D(49400)

    res = await client.cancel_orders([order.order_id])
    assert res[0].ok and res[0].order is not None and res[0].order.ord_status == "Canceled"
    res = await client.cancel_orders([order.order_id], cl_ord_ids=["ghost"])
    assert [r.ok for r in res] == [False, False]
    assert "Canceled" in (res[0].error or "")
    assert await client.open_orders() == []

    await client.place_order("XBTUSD", "Sell", 100, "Limit", D(60000), cl_ord_id="s1")
    await client.place_order("ETHUSD", "Sell", 1, "Limit", D(4000), cl_ord_id="s2")
    assert [o.cl_ord_id for o in await client.cancel_all("XBTUSD")] == ["s1"]
    assert [o.cl_ord_id for o in await client.cancel_all()] == ["s2"]

    await client.cancel_all_after(60000)
    assert sim.account(client.key or "").cancel_at is not None
    await client.cancel_all_after(0)
    assert sim.account(client.key or "").cancel_at is None


async def test_account_calls(sim: BitmexSimulator, session: aiohttp.ClientSession) -> None:
    client = make_client(sim, session)
    margins = {m.currency: m for m in await client.margins()}
    assert margins["XBt"].wallet_balance == 100_000_000
    assert margins["USDt"].available_display == "10000 USDT"
    key = await client.api_key_permissions()
    assert key.key_id == client.key and key.permissions == ("order", "orderCancel")

    pos = await client.set_leverage("XBTUSD", 10)
    assert pos.symbol == "XBTUSD" and pos.leverage == 10 and not pos.cross_margin
    sim.engine.set_mark("XBTUSD", D(50000))
    filled = await client.place_order("XBTUSD", "Buy", 1000, "Market")
    assert filled.ord_status == "Filled" and filled.cum_qty == 1000
    (xbt,) = [p for p in await client.positions() if p.symbol == "XBTUSD"]
    assert xbt.current_qty == 1000 and xbt.avg_entry_price is not None
    assert xbt.liquidation_price is not None and xbt.liquidation_price < xbt.avg_entry_price
    fills = await client.executions("XBTUSD")
    assert [f.order_id for f in fills] == [filled.order_id]
    assert fills[0].last_qty == 1000 and fills[0].exec_comm > 0
    assert await client.trade_history(start_time=fills[0].timestamp) == fills
    after = {m.currency: m for m in await client.margins()}
    assert after["XBt"].available_margin < margins["XBt"].available_margin


async def test_rejections_keep_the_exchange_message(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    client = make_client(sim, session)
    with pytest.raises(Rejected) as rej:
        await client.place_order("XBTUSD", "Buy", 100, "Bogus", D(50000))
    assert rej.value.message == "Invalid ordType" and rej.value.status == 400
    with pytest.raises(InsufficientBalance) as ins:
        await client.place_order("XBTUSD", "Buy", 5_000_000, "Limit", D(50000))
    assert "Not enough available balance" in ins.value.message
    assert "insufficient Available Balance" in ins.value.message
    await client.place_order("XBTUSD", "Buy", 100, "Limit", D(40000), cl_ord_id="same")
    with pytest.raises(DuplicateClOrdID):
        await client.place_order("XBTUSD", "Buy", 100, "Limit", D(40000), cl_ord_id="same")
    assert len(await client.open_orders()) == 1
    with pytest.raises(Rejected):
        await client.amend_order("00000000-0000-0000-0000-000000000000", price=D(1))
    with pytest.raises(NotFound):
        await client._call("GET", "/no/such/route")


async def test_auth_errors(sim: BitmexSimulator, session: aiohttp.ClientSession) -> None:
    key, secret = sim.add_account()
    wrong = BitmexClient(sim.url, key, "x" * 48, session=session, retry=FAST)
    with pytest.raises(AuthError) as e:
        await wrong.positions()
    assert e.value.message == "Signature not valid." and e.value.status == 401
    assert secret not in str(e.value) and "x" * 48 not in str(e.value)

    expired = BitmexClient(sim.url, key, secret, session=session, retry=FAST, expires_in=-10)
    with pytest.raises(AuthError, match="expired"):
        await expired.positions()

    tampered = BitmexClient(sim.url, key, secret, session=session, retry=FAST)

    def change_qty(req: auth.SignedRequest) -> auth.SignedRequest:
        return replace(req, body=req.body.replace('"orderQty":100', '"orderQty":900'))

    tampered.after_sign = change_qty
    with pytest.raises(AuthError):
        await tampered.place_order("XBTUSD", "Buy", 100, "Limit", D(40000))
    assert sim.engine.open_order_rows(sim.account(key).id) == []

    unknown = BitmexClient(sim.url, "nobody", secret, session=session, retry=FAST)
    with pytest.raises(AuthError, match="Invalid API Key"):
        await unknown.margins()
    dkey, dsecret = sim.add_account(enabled=False)
    disabled = BitmexClient(sim.url, dkey, dsecret, session=session, retry=FAST)
    with pytest.raises(AuthError, match="disabled"):
        await disabled.margins()

    rkey, rsecret = sim.add_account(permissions=())
    readonly = BitmexClient(sim.url, rkey, rsecret, session=session, retry=FAST)
    assert (await readonly.api_key_permissions()).can_trade is False
    with pytest.raises(PermissionDenied):
        await readonly.place_order("XBTUSD", "Buy", 100, "Limit", D(40000))
    with pytest.raises(PermissionDenied):
        await readonly.cancel_all()


async def test_two_503_then_success_places_exactly_one_order(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    client = make_client(sim, session)
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    client.sleep = sleep
    sim.faults.fail_next(2, status=503, route="order", method="POST")
    order = await client.place_order("XBTUSD", "Buy", 100, "Limit", D(40000))
    rows = sim.engine.order_rows(sim.account(client.key or "").id)
    assert [r["orderID"] for r in rows] == [order.order_id]
    assert len(slept) == 2 and all(s >= FAST.overload_delay for s in slept)
    # production default honours BitMEX's "retry after ≥ 500 ms"
    assert RetryPolicy().delay(0, overloaded=True) >= 0.5


async def test_503_exhausted_and_5xx_retried_on_get(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    client = make_client(sim, session)
    sim.faults.fail_next(10, status=503, route="position", method="GET")
    with pytest.raises(Overloaded):
        await client.positions()
    sim.faults.clear()
    sim.faults.fail_next(2, status=502, route="position", method="GET")
    assert await client.positions() is not None
    # A POST /order that fails 503 on every attempt was never executed: plain Overloaded.
    sim.faults.fail_next(10, status=503, route="order", method="POST")
    with pytest.raises(Overloaded):
        await client.place_order("XBTUSD", "Buy", 100, "Limit", D(40000))
    sim.faults.clear()
    assert sim.engine.order_rows(sim.account(client.key or "").id) == []


@pytest.mark.parametrize("mode", ["close", "hang"])
async def test_response_lost_after_accept_finds_the_order(
    sim: BitmexSimulator, session: aiohttp.ClientSession, mode: str
) -> None:
    client = make_client(sim, session, timeout=0.5)
    sim.faults.drop_after_accept(1, mode=mode)
    order = await client.place_order("XBTUSD", "Buy", 100, "Limit", D(40000), cl_ord_id=f"d-{mode}")
    rows = sim.engine.order_rows(sim.account(client.key or "").id)
    assert [r["clOrdID"] for r in rows] == [f"d-{mode}"]
    assert order.order_id == rows[0]["orderID"]
    _cancel_hanging_handlers()


def _cancel_hanging_handlers() -> None:
    """The simulator's "hang" fault never returns; end it so server shutdown is quick."""
    for task in asyncio.all_tasks():
        coro: object = task.get_coro()
        while coro is not None:
            code = getattr(coro, "cr_code", None)
            if code is not None and code.co_name == "_post_order":
                task.cancel()
                break
            coro = getattr(coro, "cr_await", None)


def drive_time(client: BitmexClient, sim: BitmexSimulator) -> list[float]:
    """The client's waits pass in simulated time: each one moves the client's clock and the
    simulator's by the same amount, so a 12 s lag costs no real 12 s."""
    offset = [0.0]
    client.clock = lambda: time.time() + offset[0]

    async def sleep(seconds: float) -> None:
        offset[0] += seconds
        sim.engine.clock.advance(seconds)
        sim.clock_skew += seconds  # BitMEX's gateway clock moves on with the engine's
        for _ in range(3):  # let the simulator's held request run first
            await asyncio.sleep(0)

    client.sleep = sleep
    return offset


def position_qty(sim: BitmexSimulator, client: BitmexClient, symbol: str = "XBTUSD") -> int:
    for row in sim.engine.position_rows(sim.account(client.key or "").id):
        if row["symbol"] == symbol:
            return int(row["currentQty"])
    return 0


def posts(sim: BitmexSimulator, client: BitmexClient) -> list[str]:
    return [r["clOrdID"] for r in sim.engine.order_rows(sim.account(client.key or "").id)]


async def test_engine_lag_past_the_timeout_is_waited_out_never_resent(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    # BitMEX reuses a filled order's clOrdID: a re-sent market order would fill twice.
    client = make_client(sim, session, timeout=0.3)
    waited = drive_time(client, sim)
    sim.faults.engine_lag(1, seconds=12)
    order = await client.place_order("XBTUSD", "Buy", 100, "Market", cl_ord_id="lag-once")
    assert order.ord_status == "Filled" and order.cl_ord_id == "lag-once"
    sim.engine.clock.advance(60)  # anything still held would arrive now
    assert posts(sim, client) == ["lag-once"] and position_qty(sim, client) == 100
    assert 12 <= waited[0] <= ORDER_EXPIRES_IN + SETTLE_MARGIN + 3


async def test_lost_order_past_its_api_expires_is_not_placed(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    client = make_client(sim, session, timeout=0.3)
    waited = drive_time(client, sim)
    sim.faults.engine_lag(1, seconds=ORDER_EXPIRES_IN + 30)  # arrives after it expired
    with pytest.raises(NotPlaced):
        await client.place_order("XBTUSD", "Buy", 100, "Market", cl_ord_id="lag-late")
    # looked until it could not arrive any more (real time spent counts too)
    assert waited[0] >= ORDER_EXPIRES_IN + SETTLE_MARGIN - 2
    sim.engine.clock.advance(60)
    assert posts(sim, client) == [] and position_qty(sim, client) == 0


async def test_outcome_unknown_when_lookup_impossible(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    client = make_client(sim, session)
    drive_time(client, sim)
    sim.faults.drop_after_accept(1)
    sim.faults.fail_next(10**6, status=503, route="order", method="GET")
    with pytest.raises(OutcomeUnknown):
        await client.place_order("XBTUSD", "Buy", 100, "Market")
    sim.faults.clear()
    assert len(posts(sim, client)) == 1 and position_qty(sim, client) == 100


async def test_lookup_that_misses_keeps_looking_and_never_resends(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    client = make_client(sim, session)
    drive_time(client, sim)
    sim.faults.drop_after_accept(1)
    calls = 0
    real = client.order_by_cl_ord_id

    async def lookup_misses_once(cl: str) -> object:
        nonlocal calls
        calls += 1
        return None if calls == 1 else await real(cl)

    client.order_by_cl_ord_id = lookup_misses_once  # type: ignore[method-assign,assignment]
    order = await client.place_order("XBTUSD", "Buy", 100, "Market", cl_ord_id="dup-r")
    assert posts(sim, client) == ["dup-r"] and order.ord_status == "Filled"
    assert calls == 2 and position_qty(sim, client) == 100


async def test_order_writes_carry_a_short_api_expires_bounded_by_send_by(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    client = make_client(sim, session)
    drive_time(client, sim)
    seen: list[tuple[str, int]] = []  # (route, api-expires lifetime)
    expiries: list[int] = []

    def note(req: auth.SignedRequest) -> auth.SignedRequest:
        expiries.append(int(req.headers["api-expires"]))
        seen.append((f"{req.verb} {req.path.split('?')[0]}",
                     expiries[-1] - int(client.exchange_time())))  # signed in its time
        return req

    client.after_sign = note
    order = await client.place_order("XBTUSD", "Buy", 100, "Limit", D(40000))
    await client.amend_order(order.order_id, price=D(40001))
    await client.positions()
    lifetimes = dict(seen)
    assert lifetimes["POST /api/v1/order"] <= ORDER_EXPIRES_IN
    assert lifetimes["PUT /api/v1/order"] <= ORDER_EXPIRES_IN
    assert lifetimes["GET /api/v1/position"] > ORDER_EXPIRES_IN
    # BitMEX overloaded past the card's send window: no attempt outlives it
    seen.clear()
    expiries.clear()
    send_by = client.exchange_time() + 3
    sim.faults.fail_next(100, status=503, route="order", method="POST")
    with pytest.raises(Overloaded):
        await client.place_order("XBTUSD", "Buy", 100, "Limit", D(40000), send_by=send_by)
    assert len(expiries) == FAST.max_attempts and max(expiries) <= send_by
    sim.faults.clear()
    # past its send window an order is not sent at all: it could arrive too late
    seen.clear()
    with pytest.raises(NotPlaced) as late:
        await client.place_order("XBTUSD", "Buy", 100, "Limit", D(40000),
                                 send_by=client.exchange_time() + 1)
    assert not late.value.looked_up and seen == []
    assert len(posts(sim, client)) == 1


async def test_full_close_without_quantity_passes_load_shedding(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    client = make_client(sim, session)
    drive_time(client, sim)
    await client.place_order("XBTUSD", "Buy", 300, "Market")
    sim.faults.load_shedding = True
    try:
        with pytest.raises(Overloaded):  # a quantity, even reduce-only: refused every time
            await client.place_order("XBTUSD", "Sell", 100, "Market", exec_inst=["ReduceOnly"])
        assert position_qty(sim, client) == 300
        closed = await client.place_order("XBTUSD", "Sell", None, "Market", exec_inst=["Close"])
    finally:
        sim.faults.load_shedding = False
    assert closed.ord_status == "Filled" and closed.cum_qty == 300
    assert position_qty(sim, client) == 0


async def test_refused_connection_is_certainly_not_sent(
    session: aiohttp.ClientSession
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = BitmexClient(f"http://127.0.0.1:{port}", "k", "s", session=session, retry=FAST)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    client.sleep = sleep
    # tried again (nothing went out), and reported as not sent, not as "may have been placed"
    with pytest.raises(ExchangeUnreachable):
        await client.place_order("XBTUSD", "Buy", 100, "Market")
    assert len(slept) == FAST.max_attempts - 1


async def test_429_waits_retry_after(sim: BitmexSimulator, session: aiohttp.ClientSession) -> None:
    assert sim.rate_limit is not None
    sim.rate_limit.per_second_orders = 2
    client = make_client(sim, session)
    t0 = time.monotonic()
    orders = await asyncio.gather(
        *(client.place_order("XBTUSD", "Buy", 100, "Limit", D(40000)) for _ in range(4))
    )
    assert time.monotonic() - t0 >= 0.9  # Retry-After: 1
    rows = sim.engine.order_rows(sim.account(client.key or "").id)
    assert sorted(r["orderID"] for r in rows) == sorted(o.order_id for o in orders)
    assert len(rows) == 4

    impatient = make_client(sim, session, retry=replace(FAST, max_rate_limit_wait=0.1))
    results = await asyncio.gather(
        *(impatient.place_order("XBTUSD", "Buy", 100, "Limit", D(40000)) for _ in range(4)),
        return_exceptions=True,
    )
    limited = [r for r in results if isinstance(r, RateLimited)]
    assert limited and all(r.retry_after >= 1 for r in limited)


async def test_slows_down_before_the_budget_runs_out(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    assert sim.rate_limit is not None
    sim.rate_limit.per_minute = 5  # one token every 12 s
    client = make_client(sim, session, rate_reserve=1)
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    client.sleep = sleep
    for _ in range(5):
        await client.positions()  # never a 429: the client paused instead
    assert client.rate.remaining == 0
    # One token short of the reserve: about one token's refill time, not a minute.
    assert len(slept) == 1 and 11 < slept[0] <= 12


async def test_waits_only_as_long_as_the_bucket_needs(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    client = make_client(sim, session, rate_reserve=1)
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        await asyncio.sleep(0)

    client.sleep = sleep
    st = client.rate
    st.limit, st.tokens, st.at = 120, 1.0, time.monotonic()
    # Three requests of the same key at once: each waits for its own token (0.5 s apiece
    # at 120/min), none slips through into a 429, none waits for a whole minute.
    await asyncio.gather(*(client._respect_rate_limit(False) for _ in range(3)))
    assert [round(s, 1) for s in slept] == [0.5, 1.0, 1.5]


async def test_dead_man_refresh_does_not_queue_behind_other_calls(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    client = make_client(sim, session, rate_reserve=2)
    release = asyncio.Event()
    sleeping: list[float] = []

    async def sleep(s: float) -> None:
        sleeping.append(s)
        await release.wait()

    client.sleep = sleep
    await client.positions()  # learn the budget
    st = client.rate
    st.tokens, st.at = 2.0, time.monotonic()  # nothing above the reserve left
    reads = [asyncio.create_task(client.positions()) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert len(sleeping) == 5  # every read waits for its token
    await asyncio.wait_for(client.cancel_all_after(60000), 2)  # not 2.5 s behind them
    assert sim.account(client.key or "").cancel_at is not None
    assert len(sleeping) == 5
    release.set()
    await asyncio.gather(*reads)


async def test_second_layer_applies_to_its_routes_only(
    sim: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    assert sim.rate_limit is not None
    sim.rate_limit.per_second_orders = 2
    client = make_client(sim, session)
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        await asyncio.sleep(s)

    client.sleep = sleep
    for _ in range(4):  # reads and the dead-man refresh are not order writes
        await client.open_orders()
        await client.cancel_all_after(60000)
    assert slept == []
    await client.set_leverage("XBTUSD", 10)
    await client.set_leverage("XBTUSD", 5)
    assert client.rate.remaining_1s == 0
    await client.set_leverage("XBTUSD", 10)  # paced past the 1 s layer, not a 429
    assert len(slept) == 1 and 0 < slept[0] <= 1
