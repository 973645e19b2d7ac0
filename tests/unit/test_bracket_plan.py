"""The bracket's plan for one symbol (bot/live/bracket.py plan_symbol), pure."""

from __future__ import annotations

from decimal import Decimal as D

from bot.exchange.types import Order, Position
from bot.live.bracket import is_exit, leg_name, plan_symbol


def order(cl: str, side: str = "Sell", qty: int = 200, *, typ: str = "Stop",
          inst: str = "ReduceOnly", cum: int = 0, status: str = "New") -> Order:
    return Order.from_row({"orderID": f"id-{cl}", "clOrdID": cl, "symbol": "XBTUSD",
                           "side": side, "orderQty": qty, "leavesQty": qty - cum,
                           "cumQty": cum, "ordType": typ, "execInst": inst,
                           "ordStatus": status, "stopPx": 40000})


def pos(qty: int) -> Position:
    return Position.from_row({"symbol": "XBTUSD", "currency": "XBt", "currentQty": qty})


def test_flat_cancels_every_exit() -> None:
    legs = [order("tg-1:sl"), order("tg-1:tp1", typ="Limit")]
    plan = plan_symbol("XBTUSD", pos(0), legs)
    assert plan.flat and plan.cancel == legs and plan.shrink == []
    assert plan_symbol("XBTUSD", None, legs).cancel == legs  # no position row at all


def test_stop_only_shrinks_never_grows() -> None:
    sl = order("tg-1:sl", qty=300, cum=0)
    plan = plan_symbol("XBTUSD", pos(200), [sl, order("tg-1:tp1", typ="Limit", qty=300)])
    assert plan.cancel == [] and plan.shrink == [(sl, D(200))]  # TPs are not amended
    assert plan_symbol("XBTUSD", pos(500), [sl]).shrink == []  # the user added: theirs
    assert plan_symbol("XBTUSD", pos(300), [sl]).shrink == []  # already right: idempotent


def test_partly_filled_stop_keeps_its_filled_part() -> None:
    sl = order("tg-1:sl", typ="StopLimit", qty=300, cum=100)  # leaves 200
    assert plan_symbol("XBTUSD", pos(150), [sl]).shrink == [(sl, D(250))]


def test_exit_on_the_wrong_side_of_a_reversed_position_is_cancelled() -> None:
    sell = order("tg-1:sl")
    plan = plan_symbol("XBTUSD", pos(-100), [sell])
    assert not plan.flat and plan.cancel == [sell]


def test_what_counts_as_an_exit() -> None:
    assert is_exit(order("tg-1:sl")) and is_exit(order("tg-2", inst="Close"))
    assert not is_exit(order("tg-3", inst=""))  # not reduce-only: may open a position
    assert not is_exit(order("web-4"))  # not placed through the bot
    assert not is_exit(order("tg-5:sl", status="Filled"))
    assert [leg_name(order(c)) for c in ("tg-1:sl", "tg-1:tp2", "tg-9")] == ["SL", "TP2",
                                                                          "stop"]
