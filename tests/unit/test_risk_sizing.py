"""Risk sizing and size presets (issue #14 items 4 and 5): sizes against hand-computed
numbers for the three contract kinds, and the parser's refusals."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal as D

import pytest

from bot.errors import UserError
from bot.exchange.types import Instrument
from bot.parse import (
    NO_SIZE,
    Order,
    PickSize,
    Settings,
    SizeSpec,
    SymbolBook,
    Trail,
    help_text,
    parse,
)
from bot.parse.trading import (
    DEFAULT_PRESETS,
    order_from_json,
    order_to_json,
    parse_presets,
    preset_label,
    preset_order,
    preset_token,
    size_from_token,
)
from bot.trading import sizing

# The simulator's specs (bot/matching/instruments.py), so the e2e numbers are these.
XBTUSD = Instrument.from_row({
    "symbol": "XBTUSD", "state": "Open", "typ": "FFWCSX", "lotSize": 100, "tickSize": D("0.1"),
    "multiplier": -100000000, "settlCurrency": "XBt", "isInverse": True, "isQuanto": False,
    "initMargin": D("0.01"), "maintMargin": D("0.005"), "maxOrderQty": 10000000,
})
ETHUSD = Instrument.from_row({
    "symbol": "ETHUSD", "typ": "FFWCSX", "lotSize": 1, "tickSize": D("0.01"), "multiplier": 100,
    "settlCurrency": "XBt", "isInverse": False, "isQuanto": True,
    "initMargin": D("0.02"), "maintMargin": D("0.01"),
})
XBTUSDT = Instrument.from_row({
    "symbol": "XBTUSDT", "typ": "FFWCSX", "lotSize": 100, "tickSize": D("0.1"), "multiplier": 1,
    "settlCurrency": "USDt", "isInverse": False, "isQuanto": False,
    "underlyingToPositionMultiplier": 1000000, "quoteToSettleMultiplier": 1000000,
    "initMargin": D("0.01"), "maintMargin": D("0.005"),
})
FEE = D("0.00075")
BOOK = SymbolBook(["XBTUSD", "ETHUSD", "XBTUSDT", "ETHUSDT", "SOLUSDT"])


def test_inverse_xbtusd_long() -> None:
    # Margin balance 1 XBT = 100,000,000 XBt; 1 % of it = 1,000,000 XBt may be lost.
    # One contract (1 USD) from 60,000 down to 58,000:
    #   move  = 1e8 * (1/58000 - 1/60000)        = 57.4712644 XBt
    #   fees  = 0.00075 * (1e8/60000 + 1e8/58000) = 0.00075 * 3390.8046 = 2.5431034 XBt
    #   total = 60.0143678 XBt a contract
    # 1,000,000 / 60.0143678 = 16,662.7 contracts -> lot 100, down -> 16,600.
    per = sizing.loss_per_contract(XBTUSD, "Buy", D(60000), D(58000))
    assert round(per, 4) == D("60.0144")
    qty = sizing.risk_qty(XBTUSD, "Buy", D(60000), D(58000), D(1_000_000))
    assert qty == 16600
    loss = sizing.loss_at_stop(XBTUSD, "Buy", qty, D(60000), D(58000))
    assert round(loss) == 996239  # 16,600 * 60.0143678, under the 1,000,000 asked
    assert sizing.loss_at_stop(XBTUSD, "Buy", qty + 100, D(60000), D(58000)) > 1_000_000
    # TP 65,000: gain 1e8*(1/60000 - 1/65000) = 128.2051 less fees
    # 0.00075*(1666.667 + 1538.462) = 2.4038 -> 125.8013 / 60.0144 = 2.096R
    assert round(sizing.r_multiple(XBTUSD, "Buy", D(60000), D(58000), D(65000)), 3) == D("2.096")


def test_inverse_xbtusd_short() -> None:
    # Short 60,000 with the stop at 62,000:
    #   move = 1e8 * (1/60000 - 1/62000) = 53.7634409; fees 0.00075 * (1666.667 + 1612.903)
    #   = 2.4596774; total 56.2231183 XBt; 1,000,000 / 56.2231183 = 17,786.3 -> 17,700.
    assert sizing.risk_qty(XBTUSD, "Sell", D(60000), D(62000), D(1_000_000)) == 17700


def test_quanto_ethusd() -> None:
    # ETHUSD: a contract is 100 XBt per USD of ETH's price, whatever XBT's price.
    #   move  = 100 * (3000 - 2900)            = 10,000 XBt
    #   fees  = 0.00075 * (100*3000 + 100*2900) = 0.00075 * 590,000 = 442.5 XBt
    #   total = 10,442.5 XBt; 1 % of 1 XBT = 1,000,000 / 10,442.5 = 95.76 -> lot 1 -> 95.
    assert sizing.loss_per_contract(ETHUSD, "Buy", D(3000), D(2900)) == D("10442.5")
    assert sizing.risk_qty(ETHUSD, "Buy", D(3000), D(2900), D(1_000_000)) == 95


def test_linear_xbtusdt() -> None:
    # XBTUSDT: a contract is 1 USDt (1e-6 USDT) per USD of price (1e-6 XBT).
    #   move  = 1 * (60000 - 58000)         = 2,000 USDt
    #   fees  = 0.00075 * (60000 + 58000)   = 88.5 USDt
    #   total = 2,088.5 USDt; 1 % of 10,000 USDT = 100 USDT = 100,000,000 USDt
    #   100,000,000 / 2,088.5 = 47,881.2 -> lot 100 -> 47,800 contracts (0.0478 XBT).
    assert sizing.loss_per_contract(XBTUSDT, "Buy", D(60000), D(58000)) == D("2088.5")
    qty = sizing.risk_qty(XBTUSDT, "Buy", D(60000), D(58000), D(100_000_000))
    assert qty == 47800
    assert sizing.loss_at_stop(XBTUSDT, "Buy", qty, D(60000), D(58000)) == D(99_830_300)


def test_a_stop_on_the_wrong_side_sizes_nothing() -> None:
    with pytest.raises(ValueError):
        sizing.risk_qty(XBTUSD, "Buy", D(60000), D(61000), D(1_000_000))


def p(text: str) -> object:
    return parse(text, bot_username="MyBot", symbols=BOOK)


@pytest.mark.parametrize(("text", "expected"), [
    ("/buy btc risk 1% sl 58k", Order(side="Buy", size=SizeSpec("risk", D(1)), symbol="XBTUSD",
                                      sl=D(58000))),
    ("/sell eth risk 0.5% sl 3200 @ 3000",
     Order(side="Sell", size=SizeSpec("risk", D("0.5")), symbol="ETHUSD", order_type="limit",
           price=D(3000), sl=D(3200))),
    ("/buy xbtusdt risk 15% force sl 58k",
     Order(side="Buy", size=SizeSpec("risk", D(15)), symbol="XBTUSDT", sl=D(58000), force=True)),
    ("/buy btc", PickSize(Order(side="Buy", size=NO_SIZE, symbol="XBTUSD"))),
    ("/sell eth", PickSize(Order(side="Sell", size=NO_SIZE, symbol="ETHUSD"))),
    ("/buy btc sl 58k", PickSize(Order(side="Buy", size=NO_SIZE, symbol="XBTUSD",
                                       sl=D(58000)))),
    # Everything typed besides the size rides with the preset menu (issue #14 item 5).
    ("/buy btc @ 60k sl -2% tp 65k lev 5 post",
     PickSize(Order(side="Buy", size=NO_SIZE, symbol="XBTUSD", order_type="limit",
                    price=D(60000), sl_pct=D(-2), tps=(D(65000),), leverage=D(5),
                    post_only=True))),
    ("/sell eth stop 2900 sl 3000 trail 1%",
     PickSize(Order(side="Sell", size=NO_SIZE, symbol="ETHUSD", order_type="stop",
                    stop_px=D(2900), sl=D(3000), trail=Trail(D(1), percent=True)))),
    # `sl -2%`: relative to the entry, resolved when the card is sized.
    ("/buy btc risk 1% sl -2%", Order(side="Buy", size=SizeSpec("risk", D(1)), symbol="XBTUSD",
                                      sl_pct=D(-2))),
    ("/sell eth risk 1% sl +2% @ 3000",
     Order(side="Sell", size=SizeSpec("risk", D(1)), symbol="ETHUSD", order_type="limit",
           price=D(3000), sl_pct=D(2))),
    ("/settings presets $50 $200 2% risk 10%",
     Settings(key="presets", value="$50 $200 2%risk 10%")),
    ("/settings presets 100 0.01btc", Settings(key="presets", value="100 0.01xbt")),
    ("/settings presets default", Settings(key="presets", value="default")),
])
def test_parses(text: str, expected: object) -> None:
    assert p(text) == expected


@pytest.mark.parametrize(("text", "fragment"), [
    ("/buy btc risk 1%", "Risk sizing needs a stop-loss"),
    ("/buy btc risk 15% sl 58k", "over 10% of your margin balance. If you mean it: risk 15% "
                                 "force"),
    ("/buy 100 btc risk 1% sl 58k", "Give a size or risk, not both"),
    ("/buy 100 btc force", "force only goes with a risk"),
    ("/buy btc risk 0% sl 58k", "greater than zero"),
    ("/buy btc risk 101% sl 58k force", "at most 100%"),
    ("/buy btc risk abc sl 58k", "not a valid risk"),
    ("/buy btc risk 1% sl 62k @ 60k", "stop-loss must be below"),
    ("/buy btc risk 1% sl +2%", "stop-loss must be below entry for a long: sl -2%"),
    ("/sell btc risk 1% sl -2%", "stop-loss must be above entry for a short: sl +2%"),
    ("/buy btc risk 1% sl -100%", "at most 99%"),
    ("/buy btc @ 60k post reduce tp 65k", "a reduce-only order opens none"),
    ("/buy btc trail 1%", "trail needs a stop"),
    ("/settings presets", "'presets' needs a value"),
    ("/settings presets $1 $2 $3 $4 $5", "Give 1 to 4 presets (you gave 5)"),
    ("/settings presets $50 $50", "same preset is given twice"),
    ("/settings presets 20% risk", "A risk preset is at most 10%"),
    ("/settings presets lots", "lots is not a size"),
    ("/settings presets risk", "Write a risk preset as 1% risk"),
    ("/settings presets 0.5", "Contracts are whole numbers"),
])
def test_refuses(text: str, fragment: str) -> None:
    with pytest.raises(UserError) as e:
        p(text)
    assert fragment in str(e.value)


def test_presets_round_trip_through_their_tokens() -> None:
    assert [preset_label(s) for s in DEFAULT_PRESETS] == [
        "$100", "$500", "1% risk", "5% of margin"]
    for spec in (*DEFAULT_PRESETS, *parse_presets(["100", "0.01btc", "2.5%", "0.5%risk"], BOOK)):
        assert size_from_token(preset_token(spec)) == spec
    assert size_from_token("lots") is None


def test_a_risk_preset_without_a_stop_says_what_to_type() -> None:
    with pytest.raises(UserError) as e:
        preset_order("Buy", "XBTUSD", "1%risk", None)
    assert "1% risk sizes from the stop: send /buy xbtusd sl PRICE" in str(e.value)
    assert preset_order("Sell", "ETHUSD", "$100", None) == Order(
        side="Sell", size=SizeSpec("usd", D(100)), symbol="ETHUSD")
    assert preset_order("Buy", "XBTUSD", "1%risk", D(58000)).sl == 58000


def test_a_preset_keeps_what_was_typed_through_its_stored_menu() -> None:
    picked = p("/buy btc @ 60k sl -2% tp 65k,70k trail 1% lev 5 post")
    assert isinstance(picked, PickSize)
    stored = order_from_json(json.loads(json.dumps(order_to_json(picked.order))))
    assert stored == picked.order
    order = preset_order("Buy", "XBTUSD", "1%risk", None, stored)
    assert order == dataclasses.replace(picked.order, size=SizeSpec("risk", D(1)))
    assert preset_order("Buy", "XBTUSD", "0.01xbt", None, stored).size == SizeSpec(
        "coin", D("0.01"), "XBT")
    with pytest.raises(ValueError):
        order_from_json({"side": "Buy"})


def test_help_tells_risk_and_presets() -> None:
    buy = help_text("buy")
    assert "risk N% sl PX" in buy and "over 10% needs force" in buy
    assert "/settings presets" in buy
    assert "presets default resets them" in help_text("settings")
