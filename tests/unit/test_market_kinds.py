"""Which instruments the bot trades, and money in currencies it learns at run time."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot import fmt
from bot.errors import UserError
from bot.exchange.types import CURRENCY_SCALE, Instrument, register_assets
from bot.parse.values import SymbolBook


def _inst(symbol: str, typ: str, state: str = "Open", settl: str = "USDt") -> Instrument:
    return Instrument.from_row({"symbol": symbol, "typ": typ, "state": state,
                                "settlCurrency": settl, "tickSize": 0.1, "lotSize": 1})


@pytest.mark.parametrize(("typ", "state", "settl", "words"), [
    ("FFWCSX", "Open", "USDt", None),
    ("FFCCSX", "Open", "XBt", None),
    ("FFSCSX", "Open", "USDt", None),
    ("FFCCSX", "Settled", "XBt", "future that has expired"),
    ("FFWCSX", "Unlisted", "USDt", "not open for trading (unlisted)"),
    ("FFICSX", "Open", "USDt", "prediction market"),
    ("IFXXXP", "Open", "", "spot pair"),
    ("FXXXS", "Open", "USDt", "kind of contract I don't trade"),
])
def test_refusal_by_kind_and_state(typ: str, state: str, settl: str, words: str | None) -> None:
    reason = _inst("SYM", typ, state, settl).refusal
    assert (reason is None) if words is None else (reason is not None and words in reason)


def test_symbol_book_names_the_reason_and_keeps_perpetuals() -> None:
    book = SymbolBook(["XBTUSD", "XBTUSDT"], refused={
        "XBT_USDT": "XBT_USDT is a spot pair", "PXBT150KZ26": "PXBT150KZ26 is a prediction"})
    with pytest.raises(UserError, match="spot pair"):
        book.resolve("xbt_usdt")
    with pytest.raises(UserError, match="prediction"):
        book.resolve("pxbt150kz26")
    assert book.resolve("xbt/usdt") == "XBTUSDT"
    assert book.coin("pxbt150k") is None  # a refused symbol adds no coin
    assert book.with_default_btc("XBTUSDT").refused == book.refused


def test_unknown_currency_is_raw_units_and_assets_teach_scales() -> None:
    assert fmt.money(1234567, "ZZz") == "1,234,567 ZZz (raw units)"
    register_assets([{"currency": "ZZz", "scale": 6, "majorCurrency": "ZZZ"},
                     {"currency": "BAD", "scale": "x"}, {"currency": "NEG", "scale": -1}])
    try:
        assert fmt.money(1234567, "ZZz") == "1.23457 ZZZ"
        assert "BAD" not in CURRENCY_SCALE and "NEG" not in CURRENCY_SCALE
    finally:
        CURRENCY_SCALE.pop("ZZz", None)
    assert fmt.money(Decimal(-5), "ZZz") == "−5 ZZz (raw units)"
