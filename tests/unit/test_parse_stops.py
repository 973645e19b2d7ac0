"""The /sl and /tp grammar (issue #14 items 1 and 3) and the Edit SL / Edit TP replies."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.errors import UserError
from bot.parse import (
    Order,
    PriceRef,
    SetStop,
    SetTargets,
    SymbolBook,
    Trail,
    parse,
    stop_value,
    targets_value,
)

BOOK = SymbolBook(["XBTUSD", "ETHUSD", "XBTUSDT"])


@pytest.mark.parametrize(("text", "intent"), [
    ("/sl btc be", SetStop(symbol="XBTUSD", breakeven=True)),
    ("/sl be", SetStop(breakeven=True)),
    ("sl eth breakeven", SetStop(symbol="ETHUSD", breakeven=True)),
    ("/sl btc 58k", SetStop(symbol="XBTUSD", price=PriceRef(D(58000)))),
    ("/sl xbtusdt $58,000", SetStop(symbol="XBTUSDT", price=PriceRef(D(58000)))),
    ("/sl btc -2%", SetStop(symbol="XBTUSD", price=PriceRef(D(-2), relative=True))),
    ("/sl btc trail 1%", SetStop(symbol="XBTUSD", trail=Trail(D(1), percent=True))),
    ("/sl btc trail $500", SetStop(symbol="XBTUSD", trail=Trail(D(500), percent=False))),
    ("/sl trail 0.5%", SetStop(trail=Trail(D("0.5"), percent=True))),
    ("/tp btc 65k,70k", SetTargets(symbol="XBTUSD", prices=(PriceRef(D(65000)),
                                                            PriceRef(D(70000))))),
    ("/tp btc 65k:50%,70k:50%", SetTargets(symbol="XBTUSD", prices=(
        PriceRef(D(65000)), PriceRef(D(70000))), shares=(D(50), D(50)))),
    ("/tp btc 65k:30%, 70k:70%", SetTargets(symbol="XBTUSD", prices=(
        PriceRef(D(65000)), PriceRef(D(70000))), shares=(D(30), D(70)))),
    ("/tp eth +5%", SetTargets(symbol="ETHUSD", prices=(PriceRef(D(5), relative=True),))),
    ("/tp 60,000", SetTargets(prices=(PriceRef(D(60000)),))),
])
def test_sl_tp_parse(text: str, intent: object) -> None:
    assert parse(text, symbols=BOOK) == intent


def test_buy_with_a_trailing_stop() -> None:
    o = parse("/buy 100 btc sl 58k trail 1%", symbols=BOOK)
    assert isinstance(o, Order) and o.sl == D(58000) and o.trail == Trail(D(1), percent=True)


@pytest.mark.parametrize(("text", "words"), [
    ("/sl btc", "Which stop?"),
    ("/sl btc be now", "Nothing goes after be"),
    ("/sl btc 58k 57k", "One stop price"),
    ("/sl btc 5%", "needs a sign"),
    ("/sl btc trail", "one trailing offset"),
    ("/sl btc trail 80%", "at most 50%"),
    ("/sl btc soon", "soon"),
    ("/tp btc", "Which take-profits?"),
    ("/tp btc 65k:50%,70k:40%", "add up to 90%"),
    ("/tp btc 65k:50%,70k", "share"),
    ("/tp btc 65k,65k", "given twice"),
    ("/tp btc 65k:50", "% sign"),
    ("/buy 100 btc trail 1%", "trail needs a stop"),
])
def test_bad_sl_tp_input_is_one_clear_line(text: str, words: str) -> None:
    with pytest.raises(UserError) as e:
        parse(text, symbols=BOOK)
    assert words in str(e.value).split("\n")[0], str(e.value)


def test_edit_replies_read_like_the_commands() -> None:
    assert stop_value(["60k"]) == (False, PriceRef(D(60000)), None)
    assert stop_value(["-2%"]) == (False, PriceRef(D(-2), relative=True), None)
    assert stop_value(["trail", "1%"]) == (False, None, Trail(D(1), percent=True))
    assert targets_value(["65k:50%,70k:50%"])[1] == (D(50), D(50))
    for bad in (["nope"], ["1e999"], []):
        with pytest.raises(UserError):
            stop_value(bad)
    assert PriceRef(D(-2), relative=True).at(D(60000)) == D(58800)
