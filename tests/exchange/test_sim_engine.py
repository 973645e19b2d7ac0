"""The simulator's engine against hand-computed BitMEX numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from bot.matching import Account, Clock, Engine, EngineError, Event, PriceDriver

START = datetime(2024, 1, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def engine() -> Engine:
    eng = Engine(Clock(START))
    for symbol in eng.instruments:
        eng.set_spread(symbol, D(0))
    eng.set_mark("XBTUSD", 50000)
    eng.set_mark("XBTUSDT", 50000)
    eng.set_mark("ETHUSD", 3000)
    return eng


@pytest.fixture
def acct(engine: Engine) -> Account:
    return engine.add_account("key", "secret", xbt=1, usdt=10000)


def market(engine: Engine, acct: Account, symbol: str, qty: int, **extra: object) -> dict:
    side = "Buy" if qty > 0 else "Sell"
    return engine.place_order(
        acct.id, {"symbol": symbol, "side": side, "orderQty": abs(qty), "ordType": "Market",
                  **extra}
    )


def pos(engine: Engine, acct: Account, symbol: str) -> dict:
    return engine.position_row(engine.positions[(acct.id, symbol)])


def wallet(engine: Engine, acct: Account, currency: str = "XBt") -> int:
    return int(engine.margin_row(acct.id, currency)["walletBalance"])


def test_market_order_fills_at_ask_with_taker_fee(engine: Engine, acct: Account) -> None:
    engine.set_spread("XBTUSD", D(1))
    engine.set_mark("XBTUSD", 50000)
    row = market(engine, acct, "XBTUSD", 1000)
    assert row["ordStatus"] == "Filled"
    assert row["avgPx"] == D("50000.5")
    assert row["cumQty"] == 1000 and row["leavesQty"] == 0
    trade = engine.trade_history(acct.id)[-1]
    assert trade["execType"] == "Trade" and trade["lastPx"] == D("50000.5")
    # 1000 USD at 50000.5 = 1999980 XBt; taker 0.075% = 1500 XBt.
    assert trade["execCost"] == -1999980
    assert trade["execComm"] == 1500
    assert wallet(engine, acct) == 100000000 - 1500


def test_average_entry_inverse_is_harmonic(engine: Engine, acct: Account) -> None:
    market(engine, acct, "XBTUSD", 1000)
    engine.set_mark("XBTUSD", 60000)
    market(engine, acct, "XBTUSD", 1000)
    # 2000 / (1000/50000 + 1000/60000) = 54545.4545...
    assert pos(engine, acct, "XBTUSD")["avgEntryPrice"] == D("54545.4545")


def test_average_entry_linear_is_arithmetic(engine: Engine, acct: Account) -> None:
    market(engine, acct, "XBTUSDT", 1000)
    engine.set_mark("XBTUSDT", 60000)
    market(engine, acct, "XBTUSDT", 3000)
    assert pos(engine, acct, "XBTUSDT")["avgEntryPrice"] == D(57500)


def test_unrealised_and_realised_pnl_inverse(engine: Engine, acct: Account) -> None:
    market(engine, acct, "XBTUSD", 1000)
    engine.set_mark("XBTUSD", 55000)
    p = pos(engine, acct, "XBTUSD")
    # markValue = -1000e8/55000 = -1818182; cost = -2000000.
    assert p["markValue"] == -1818182
    assert p["unrealisedPnl"] == 181818
    assert p["unrealisedPnl"] == p["markValue"] - p["unrealisedCost"] + 0  # rounding of parts
    before = wallet(engine, acct)
    market(engine, acct, "XBTUSD", -1000)
    p = pos(engine, acct, "XBTUSD")
    assert p["currentQty"] == 0 and p["isOpen"] is False
    fee = round(1818182 * 0.00075)
    assert wallet(engine, acct) == before + 181818 - fee
    assert engine.trade_history(acct.id)[-1]["realisedPnl"] == 181818 - fee


def test_unrealised_pnl_linear_in_usdt(engine: Engine, acct: Account) -> None:
    market(engine, acct, "XBTUSDT", 10000)  # 0.01 XBT
    engine.set_mark("XBTUSDT", 51000)
    p = pos(engine, acct, "XBTUSDT")
    assert p["currency"] == "USDt"
    assert p["unrealisedPnl"] == 10_000_000  # 10 USDT
    assert p["homeNotional"] == D("0.01")
    assert p["foreignNotional"] == D(-510)


@pytest.mark.parametrize(
    ("symbol", "price", "qty", "liq", "bankrupt"),
    [
        ("XBTUSD", 50000, 1000, D("45662.1"), D("45454.5")),
        ("XBTUSD", 50000, -1000, D("55248.6"), D("55555.6")),
        ("XBTUSDT", 50000, 1000, D("45250.0"), D("45000.0")),
        ("XBTUSDT", 50000, -1000, D("54750.0"), D("55000.0")),
        ("ETHUSD", 3000, 10, D("2730.00"), D("2700.00")),
        ("ETHUSD", 3000, -10, D("3270.00"), D("3300.00")),
    ],
)
def test_isolated_liquidation_price(
    engine: Engine, acct: Account, symbol: str, price: int, qty: int, liq: D, bankrupt: D
) -> None:
    engine.set_leverage(acct.id, symbol, 10)
    engine.set_mark(symbol, price)
    market(engine, acct, symbol, qty)
    p = pos(engine, acct, symbol)
    assert p["avgEntryPrice"] == D(price)
    assert p["liquidationPrice"] == liq
    assert p["bankruptPrice"] == bankrupt
    assert p["crossMargin"] is False and p["leverage"] == 10


def test_cross_liquidation_uses_whole_balance(engine: Engine, acct: Account) -> None:
    market(engine, acct, "XBTUSD", 1000)  # 0.02 XBT notional on a 1 XBT wallet
    p = pos(engine, acct, "XBTUSD")
    assert p["crossMargin"] is True
    # Backing ~0.99998 XBT on 0.02 XBT: liquidation far below, far beyond 100x.
    assert p["liquidationPrice"] < D(1000)


def test_liquidation_closes_position_and_publishes(engine: Engine, acct: Account) -> None:
    events: list[Event] = []
    engine.listen(events.append)
    engine.set_leverage(acct.id, "XBTUSD", 10)
    market(engine, acct, "XBTUSD", 1000)
    before = wallet(engine, acct)
    margin = pos(engine, acct, "XBTUSD")["posMargin"]
    engine.set_mark("XBTUSD", 45700)
    assert pos(engine, acct, "XBTUSD")["currentQty"] == 1000
    engine.set_mark("XBTUSD", 45600)
    p = pos(engine, acct, "XBTUSD")
    assert p["currentQty"] == 0
    assert before - wallet(engine, acct) == pytest.approx(margin, abs=5)
    liq_rows = [e for e in events if e.table == "liquidation"]
    assert [e.action for e in liq_rows] == ["insert"]
    assert liq_rows[0].data[0]["side"] == "Sell" and liq_rows[0].data[0]["leavesQty"] == 1000
    assert liq_rows[0].account is None
    last = engine.order_rows(acct.id)[-1]
    assert last["text"] == "Liquidation" and last["ordStatus"] == "Filled"
    engine.clock.advance(2)
    assert [e.action for e in events if e.table == "liquidation"] == ["insert", "update",
                                                                     "delete"]


def test_market_liquidation_feed(engine: Engine) -> None:
    events: list[Event] = []
    engine.listen(lambda e: events.append(e) if e.table == "liquidation" else None)
    row = engine.liquidate_market("XBTUSD", "Buy", 1000, D("50000"))
    engine.clock.advance(1)
    engine.clock.advance(1)
    assert [e.action for e in events] == ["insert", "update", "delete"]
    assert events[1].data[0] == {"orderID": row["orderID"], "symbol": "XBTUSD", "leavesQty": 500}


def test_stop_triggers_on_mark_by_default(engine: Engine, acct: Account) -> None:
    market(engine, acct, "XBTUSD", 1000)
    stop = engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Sell", "orderQty": 1000,
                                        "ordType": "Stop", "stopPx": 49000,
                                        "execInst": "ReduceOnly"})
    assert stop["ordStatus"] == "New" and stop["triggered"] == ""
    engine.set_mark("XBTUSD", 49500, last=48000)  # last crosses, mark does not
    assert engine.orders[stop["orderID"]].ord_status == "New"
    engine.set_mark("XBTUSD", 48900)
    order = engine.orders[stop["orderID"]].row()
    assert order["triggered"] == "StopOrderTriggered" and order["ordStatus"] == "Filled"
    kinds = [r["execType"] for r in engine.execution_rows(acct.id)
             if r["orderID"] == stop["orderID"]]
    # BitMEX's real exec types: there is no "Trigger"
    assert kinds == ["New", "TriggeredOrActivatedBySystem", "Trade"]
    assert pos(engine, acct, "XBTUSD")["currentQty"] == 0


def test_stop_with_last_price_trigger(engine: Engine, acct: Account) -> None:
    stop = engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                        "ordType": "Stop", "stopPx": 51000,
                                        "execInst": "LastPrice"})
    engine.set_mark("XBTUSD", 50000, last=51000)
    assert engine.orders[stop["orderID"]].ord_status == "Filled"


def test_post_only_that_would_cross_is_canceled(engine: Engine, acct: Account) -> None:
    row = engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                       "price": 50000, "execInst": "ParticipateDoNotInitiate"})
    assert row["ordStatus"] == "Canceled"
    assert "ParticipateDoNotInitiate" in row["text"]
    assert pos(engine, acct, "XBTUSD")["currentQty"] == 0
    ok = engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                      "price": 49000, "execInst": "ParticipateDoNotInitiate"})
    assert ok["ordStatus"] == "New" and ok["ordType"] == "Limit"


def test_reduce_only_cannot_increase(engine: Engine, acct: Account) -> None:
    row = market(engine, acct, "XBTUSD", -100, execInst="ReduceOnly")
    assert row["ordStatus"] == "Canceled" and "ReduceOnly" in row["text"]
    assert pos(engine, acct, "XBTUSD")["currentQty"] == 0
    market(engine, acct, "XBTUSD", 100)
    row = market(engine, acct, "XBTUSD", -300, execInst="ReduceOnly")
    assert row["cumQty"] == 100 and row["ordStatus"] == "Canceled"
    assert pos(engine, acct, "XBTUSD")["currentQty"] == 0


def test_close_without_qty_closes_position(engine: Engine, acct: Account) -> None:
    market(engine, acct, "XBTUSDT", -5000)
    row = engine.place_order(acct.id, {"symbol": "XBTUSDT", "ordType": "Market",
                                       "execInst": "Close", "side": "Buy"})
    assert row["orderQty"] == 5000 and row["ordStatus"] == "Filled"
    assert pos(engine, acct, "XBTUSDT")["currentQty"] == 0


def test_fill_or_kill_and_immediate_or_cancel(engine: Engine, acct: Account) -> None:
    engine.set_depth("XBTUSD", 100)
    fok = engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 300,
                                       "price": D("50000.1"), "timeInForce": "FillOrKill"})
    assert fok["ordStatus"] == "Canceled" and fok["cumQty"] == 0
    assert "FillOrKill" in fok["text"]
    ioc = engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 300,
                                       "price": D("50000.1"), "timeInForce": "ImmediateOrCancel"})
    assert ioc["ordStatus"] == "Canceled" and ioc["cumQty"] == 200
    assert pos(engine, acct, "XBTUSD")["currentQty"] == 200
    fok2 = engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 200,
                                        "price": D("50000.1"), "timeInForce": "FillOrKill"})
    assert fok2["ordStatus"] == "Filled"


def test_partial_fills_of_resting_order(engine: Engine, acct: Account) -> None:
    engine.set_depth("XBTUSD", 100)
    row = engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 300,
                                       "price": 49000})
    assert row["ordStatus"] == "New"
    engine.set_mark("XBTUSD", 48990)
    order = engine.orders[row["orderID"]]
    assert (order.ord_status, order.cum_qty, order.leaves_qty) == ("PartiallyFilled", 100, 200)
    assert order.avg_px == D(49000)  # a maker fills at its own price
    assert engine.trade_history(acct.id)[-1]["execComm"] < 0  # maker rebate
    engine.fill_order(row["orderID"], 50)
    assert order.cum_qty == 150
    engine.set_mark("XBTUSD", 48980)
    engine.set_mark("XBTUSD", 48970)
    assert order.ord_status == "Filled" and order.cum_qty == 300


def test_client_order_id_rules(engine: Engine, acct: Account) -> None:
    params = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 40000,
              "clOrdID": "abc"}
    engine.place_order(acct.id, params)
    with pytest.raises(EngineError, match="Duplicate clOrdID"):
        engine.place_order(acct.id, params)
    other = engine.add_account("k2", "s2")
    engine.place_order(other.id, params)  # per account
    with pytest.raises(EngineError):
        engine.place_order(acct.id, {**params, "clOrdID": "x" * 37})


def test_client_order_id_is_unique_only_among_open_orders(engine: Engine, acct: Account) -> None:
    # BitMEX: "once an order has been filled or cancelled, the value can be reused"
    mkt = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "ordType": "Market",
           "clOrdID": "m1"}
    assert engine.place_order(acct.id, mkt)["ordStatus"] == "Filled"
    assert engine.place_order(acct.id, mkt)["ordStatus"] == "Filled"  # a re-send fills again
    assert pos(engine, acct, "XBTUSD")["currentQty"] == 200
    limit = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 40000,
             "clOrdID": "l1"}
    first = engine.place_order(acct.id, limit)
    with pytest.raises(EngineError, match=r"^Duplicate clOrdID$"):
        engine.place_order(acct.id, limit)  # New
    engine.fill_order(first["orderID"], 50)
    with pytest.raises(EngineError, match=r"^Duplicate clOrdID$"):
        engine.place_order(acct.id, limit)  # PartiallyFilled
    engine.cancel_orders(acct.id, [first["orderID"]], [])
    again = engine.place_order(acct.id, limit)  # Canceled: reusable
    assert again["orderID"] != first["orderID"]
    stop = {"symbol": "XBTUSD", "side": "Sell", "orderQty": 100, "ordType": "Stop",
            "stopPx": 30000, "clOrdID": "s1"}
    engine.place_order(acct.id, stop)
    with pytest.raises(EngineError, match=r"^Duplicate clOrdID$"):
        engine.place_order(acct.id, stop)  # an untriggered stop is open
    # amending another order to an open order's clOrdID is refused too
    with pytest.raises(EngineError, match=r"^Duplicate clOrdID$"):
        engine.amend_order(acct.id, {"orderID": again["orderID"], "clOrdID": "s1"})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"symbol": "XBTUSD", "side": "Buy", "orderQty": 150, "price": 40000},
         "Order quantity must be a multiple of lot size: 100"),
        ({"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": "40000.05"},
         "Invalid price tickSize"),
        ({"symbol": "XBTUSD", "side": "Buy", "orderQty": 100000000, "price": 40000},
         "Invalid orderQty"),
        ({"symbol": "NOPE", "side": "Buy", "orderQty": 100, "price": 40000}, "Invalid symbol"),
        ({"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "ordType": "Limit"},
         "Invalid price"),
        ({"symbol": "XBTUSD", "side": "Buy", "orderQty": 10000000, "ordType": "Market"},
         "Account has insufficient Available Balance, 2.15 XBT required"),
        ({"symbol": "XBTUSDT", "side": "Buy", "orderQty": 100000000, "ordType": "Market"},
         "Account has insufficient Available Balance, 53750 USDT required"),
    ],
)
def test_validation(engine: Engine, acct: Account, params: dict, message: str) -> None:
    with pytest.raises(EngineError) as info:
        engine.place_order(acct.id, params)
    assert info.value.status == 400
    assert info.value.message.startswith(message) or message in info.value.message


def test_open_orders_reserve_margin(engine: Engine, acct: Account) -> None:
    before = engine.margin_row(acct.id, "XBt")["availableMargin"]
    engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 10000,
                                 "price": 40000})
    after = engine.margin_row(acct.id, "XBt")["availableMargin"]
    # 10000 USD at 40000 = 0.25 XBT; 1% initial margin = 250000 XBt.
    assert before - after == 250000


def test_funding_every_eight_hours(engine: Engine, acct: Account) -> None:
    market(engine, acct, "XBTUSD", 1000)
    engine.set_funding_rate("XBTUSD", D("0.0001"))
    before = wallet(engine, acct)
    engine.clock.advance(3 * 3600 + 59 * 60)  # 03:59, before the 04:00 funding
    assert wallet(engine, acct) == before
    engine.clock.advance(60)
    funding = [r for r in engine.trade_history(acct.id) if r["execType"] == "Funding"]
    assert len(funding) == 1
    assert funding[0]["execComm"] == 200  # 0.02 XBT * 0.01%
    assert wallet(engine, acct) == before - 200
    engine.clock.advance(8 * 3600)
    assert wallet(engine, acct) == before - 400


def test_cancel_all_after_fires_on_simulated_time(engine: Engine, acct: Account) -> None:
    row = engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                       "price": 40000})
    result = engine.cancel_all_after(acct.id, 60000)
    assert result["cancelTime"] == "2024-01-01T00:01:00.000Z"
    engine.clock.advance(59)
    assert engine.orders[row["orderID"]].ord_status == "New"
    engine.clock.advance(1)
    assert engine.orders[row["orderID"]].ord_status == "Canceled"


def test_cancel_all_after_zero_disarms(engine: Engine, acct: Account) -> None:
    row = engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                       "price": 40000})
    engine.cancel_all_after(acct.id, 1000)
    engine.cancel_all_after(acct.id, 0)
    engine.clock.advance(5)
    assert engine.orders[row["orderID"]].ord_status == "New"


def test_amend_and_cancel(engine: Engine, acct: Account) -> None:
    row = engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                       "price": 40000, "clOrdID": "a1"})
    amended = engine.amend_order(acct.id, {"origClOrdID": "a1", "orderQty": 200,
                                           "price": 41000})
    assert (amended["orderQty"], amended["price"], amended["leavesQty"]) == (200, 41000, 200)
    amended = engine.amend_order(acct.id, {"orderID": row["orderID"], "price": 50000})
    assert amended["ordStatus"] == "Filled"  # amended through the market
    rows = engine.cancel_orders(acct.id, [row["orderID"]])
    assert rows[0]["error"].startswith("Unable to cancel order due to existing state: Filled")
    with pytest.raises(EngineError, match="Invalid ordStatus"):
        engine.amend_order(acct.id, {"orderID": row["orderID"], "price": 40000})


def test_events_describe_every_change(engine: Engine, acct: Account) -> None:
    events: list[Event] = []
    engine.listen(events.append)
    market(engine, acct, "XBTUSD", 100)
    tables = {(e.table, e.action) for e in events}
    assert {("order", "insert"), ("order", "update"), ("execution", "insert"),
            ("position", "insert"), ("margin", "update"), ("trade", "insert")} <= tables
    private = [e for e in events if e.table in ("order", "execution", "position", "margin")]
    assert all(e.account == acct.id for e in private)
    events.clear()
    engine.set_mark("XBTUSD", 50100)
    assert ("instrument", "update") in {(e.table, e.action) for e in events}
    assert ("position", "update") in {(e.table, e.action) for e in events}


def test_bucketed_timestamps_are_bucket_end(engine: Engine, acct: Account) -> None:
    engine.clock.advance(10)
    engine.set_mark("XBTUSD", 50000, trade_size=100)
    engine.clock.advance(30)
    engine.set_mark("XBTUSD", 50500, trade_size=200)
    engine.clock.advance(40)  # 00:01:20
    engine.set_mark("XBTUSD", 49000, trade_size=100)
    rows = engine.bucketed("XBTUSD", "1m", partial=False)
    assert rows[-1]["timestamp"] == "2024-01-01T00:01:00.000Z"
    assert rows[-1]["high"] == 50500 and rows[-1]["close"] == 50500
    assert rows[-1]["volume"] == 300
    partial = engine.bucketed("XBTUSD", "1m", partial=True)
    assert partial[-1]["timestamp"] == "2024-01-01T00:02:00.000Z"
    assert partial[-1]["close"] == 49000


def test_price_driver_is_seedable() -> None:
    paths = []
    for _ in range(2):
        eng = Engine(Clock(START))
        driver = PriceDriver(eng, seed=7, volatility=0.01, liquidation_chance=0.5)
        for _ in range(20):
            driver.step()
        paths.append([eng.instruments[s].mark for s in eng.instruments])
    assert paths[0] == paths[1]
    assert paths[0][0] != D(50000)


def test_thousand_orders_rest_and_cancel(engine: Engine, acct: Account) -> None:
    # Speed is bench/orders.py's business (figures side by side); a wall-clock bound here
    # only measured how busy the machine was.
    acct.wallet["XBt"] = 100 * 100000000
    ids = [
        engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                     "price": 40000 - i})["orderID"]
        for i in range(1000)
    ]
    assert all(engine.orders[i].ord_status == "New" for i in ids)
    engine.cancel_orders(acct.id, ids)
    assert all(engine.orders[i].ord_status == "Canceled" for i in ids)


def test_clock_follows_wall_time() -> None:
    clock = Clock(follow_wall=True)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=1)
    clock.advance(3600)
    assert clock.now() - datetime.now(UTC) > timedelta(minutes=59)


def test_amend_a_stop_in_place_as_bitmex_does(engine: Engine, acct: Account) -> None:
    """The bracket's SL follows a TP by PUT /order: same orderID, orderQty or leavesQty,
    stopPx on the tick; a cancelled or filled stop is refused (issue #14 item 2)."""
    market(engine, acct, "XBTUSD", 300)
    stop = engine.place_order(acct.id, {"symbol": "XBTUSD", "side": "Sell", "orderQty": 300,
                                        "ordType": "Stop", "stopPx": 40000,
                                        "execInst": "ReduceOnly", "clOrdID": "e:sl"})
    amended = engine.amend_order(acct.id, {"orderID": stop["orderID"], "orderQty": 200})
    assert (amended["orderID"], amended["orderQty"], amended["leavesQty"]) == (
        stop["orderID"], 200, 200)
    amended = engine.amend_order(acct.id, {"origClOrdID": "e:sl", "leavesQty": 100,
                                           "stopPx": 41000})
    assert (amended["orderQty"], amended["stopPx"], amended["ordStatus"]) == (
        100, 41000, "New")
    with pytest.raises(EngineError, match="Invalid stopPx tickSize"):
        engine.amend_order(acct.id, {"orderID": stop["orderID"], "stopPx": "41000.25"})
    with pytest.raises(EngineError, match="Invalid price"):
        engine.amend_order(acct.id, {"orderID": stop["orderID"], "price": 41000})  # no limit
    replaced = [r for r in engine.execution_rows(acct.id)
                if r["orderID"] == stop["orderID"] and r["execType"] == "Replaced"]
    assert len(replaced) == 2
    engine.cancel_orders(acct.id, [stop["orderID"]])
    with pytest.raises(EngineError, match="Invalid ordStatus"):
        engine.amend_order(acct.id, {"orderID": stop["orderID"], "orderQty": 100})
