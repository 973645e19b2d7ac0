"""Contract math against hand-computed numbers, plus a few properties."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.exchange import contracts as c
from bot.exchange.types import Instrument, format_money

XBTUSD = Instrument.from_row({
    "symbol": "XBTUSD", "state": "Open", "typ": "FFWCSX", "lotSize": 100, "tickSize": D("0.1"),
    "multiplier": -100000000, "settlCurrency": "XBt", "isInverse": True, "isQuanto": False,
    "initMargin": D("0.01"), "maintMargin": D("0.005"), "maxOrderQty": 10000000,
})
ETHUSD = Instrument.from_row({
    "symbol": "ETHUSD", "typ": "FFWCSX", "lotSize": 1, "tickSize": D("0.05"), "multiplier": 100,
    "settlCurrency": "XBt", "isInverse": False, "isQuanto": True,
    "initMargin": D("0.02"), "maintMargin": D("0.01"),
})
XBTUSDT = Instrument.from_row({
    "symbol": "XBTUSDT", "typ": "FFWCSX", "lotSize": 1000, "tickSize": D("0.5"), "multiplier": 1,
    "settlCurrency": "USDt", "isInverse": False, "isQuanto": False,
    "underlyingToPositionMultiplier": 1000000, "quoteToSettleMultiplier": 1000000,
    "initMargin": D("0.01"), "maintMargin": D("0.005"),
})


def test_kinds_parsed() -> None:
    assert (XBTUSD.kind, ETHUSD.kind, XBTUSDT.kind) == ("inverse", "quanto", "linear")


def test_inverse_numbers() -> None:
    # 1000 contracts = $1000 at 50000 = 0.02 XBT
    assert c.inst_value(XBTUSD, D(1000), D(50000)) == D(2_000_000)
    assert c.initial_margin("inverse", D(1000), D(50000), XBTUSD.multiplier, D(10)) == 200_000
    profit = c.pnl("inverse", D(1000), D(50000), D(55000), XBTUSD.multiplier)
    assert round(profit, 2) == D("181818.18")
    loss = c.pnl("inverse", D(-1000), D(50000), D(55000), XBTUSD.multiplier)
    assert round(loss, 2) == D("-181818.18")
    liq = c.liquidation_price("inverse", D(1000), D(50000), D(10), D("0.005"))
    assert round(liq, 1) == D("45662.1")
    assert round(c.bankruptcy_price("inverse", D(1000), D(50000), D(10)), 1) == D("45454.5")
    short_liq = c.liquidation_price("inverse", D(-1000), D(50000), D(10), D("0.005"))
    assert round(short_liq, 1) == D("55248.6")


def test_quanto_numbers() -> None:
    # ETHUSD: value in XBt = qty * 100 * price
    assert c.inst_value(ETHUSD, D(10), D(3000)) == D(3_000_000)
    assert c.initial_margin("quanto", D(10), D(3000), D(100), D(5)) == 600_000
    assert c.pnl("quanto", D(10), D(3000), D(3300), D(100)) == 300_000
    assert c.pnl("quanto", D(-10), D(3000), D(3300), D(100)) == -300_000
    assert c.liquidation_price("quanto", D(10), D(3000), D(10), D("0.01")) == D(2730)
    assert c.liquidation_price("quanto", D(-10), D(3000), D(10), D("0.01")) == D(3270)


def test_linear_numbers() -> None:
    # 1000 contracts of XBTUSDT = 0.001 XBT; at 20933 that is 20.933 USDT
    v = c.inst_value(XBTUSDT, D(1000), D(20933))
    assert v == 20_933_000
    assert format_money(int(v), "USDt") == "20.933 USDT"
    assert c.pnl("linear", D(1000), D(20933), D(21000), D(1)) == 67_000
    assert c.initial_margin("linear", D(1000), D(20000), D(1), D(10)) == 2_000_000
    assert c.liquidation_price("linear", D(1000), D(20000), D(10), D("0.005")) == D(18100)
    assert c.liquidation_price("linear", D(-1000), D(20000), D(10), D("0.005")) == D(21900)
    assert c.bankruptcy_price("linear", D(1000), D(20000), D(10)) == D(18000)


def test_average_entry() -> None:
    # Inverse averages harmonically: $1000 at 40000 and $1000 at 60000 -> 48000
    assert c.average_entry("inverse", [(D(1000), D(40000)), (D(1000), D(60000))]) == D(48000)
    assert c.average_entry("linear", [(D(1000), D(40000)), (D(3000), D(60000))]) == D(55000)
    assert c.average_entry("linear", []) is None


def test_size_conversions() -> None:
    assert c.contracts_for_usd(XBTUSD, D(500), D(50000)) == 500
    assert c.contracts_for_coin(XBTUSD, D("0.01"), D(50000)) == 500
    assert c.contracts_for_coin(XBTUSDT, D("0.01"), D(50000)) == 10_000
    assert c.contracts_for_usd(XBTUSDT, D(500), D(50000)) == 10_000
    # quanto: $300 at XBT=30000 is 0.01 XBT = 1e6 XBt; a contract at 3000 is 300000 XBt
    assert round(c.contracts_for_usd(ETHUSD, D(300), D(3000), xbt_usd=D(30000)), 4) == round(
        D(1_000_000) / D(300_000), 4
    )
    with pytest.raises(ValueError):
        c.contracts_for_usd(ETHUSD, D(300), D(3000))
    # 10% of 1 XBT at 10x, XBTUSD at 50000: 1 XBT of exposure = 50000 contracts
    assert c.contracts_for_margin_fraction(XBTUSD, D("0.1"), 100_000_000, D(50000), D(10)) == 50000
    assert c.coin_notional(XBTUSD, D(500), D(50000)) == D("0.01")
    assert c.coin_notional(XBTUSDT, D(10_000), D(50000)) == D("0.01")
    assert c.usd_notional(XBTUSD, D(-500), D(50000)) == 500


def test_rounding_reports_change() -> None:
    assert c.round_qty(XBTUSD, D(1234)) == c.Rounded(D(1200), True)
    assert c.round_qty(XBTUSD, D(1200)) == c.Rounded(D(1200), False)
    assert c.round_qty(XBTUSD, D(-1299)) == c.Rounded(D(-1200), True)
    assert c.round_price(XBTUSDT, D("50000.07")) == c.Rounded(D("50000.0"), True)
    assert c.round_price(XBTUSD, D("50000.1")) == c.Rounded(D("50000.1"), False)
    assert str(c.round_price(XBTUSD, D("50000.14")).value) == "50000.1"
    assert c.round_price(XBTUSD, D("50000.14"), "up").value == D("50000.2")


def test_money_display() -> None:
    assert format_money(102000, "XBt") == "0.00102 XBT"
    assert format_money(12_340_000, "USDt") == "12.34 USDT"
    assert format_money(0, "XBt") == "0 XBT"
    assert format_money(100_000_000, "XBt") == "1 XBT"


prices = st.decimals(min_value=D("0.5"), max_value=D(1_000_000), places=2)
qtys = st.integers(min_value=-10_000_000, max_value=10_000_000).filter(bool).map(D)
steps = st.sampled_from([D("0.1"), D("0.5"), D("0.05"), D(1), D(100), D(1000)])


@given(st.decimals(min_value=D(-1_000_000), max_value=D(1_000_000), places=4), steps)
def test_round_step_is_a_multiple_within_one_step(value: D, step: D) -> None:
    rounded, changed = c.round_step(value, step)
    assert rounded % step == 0
    assert abs(rounded - value) <= step / 2
    assert changed == (rounded != value)


@given(qtys, prices, st.sampled_from(["inverse", "quanto", "linear"]))
def test_pnl_zero_at_entry_and_antisymmetric(qty: D, price: D, kind: c.Kind) -> None:
    assert c.pnl(kind, qty, price, price, D(100)) == 0
    exit_ = price * D("1.1")
    assert c.pnl(kind, qty, price, exit_, D(100)) == -c.pnl(kind, -qty, price, exit_, D(100))


@given(prices, st.integers(min_value=2, max_value=100), st.sampled_from(["inverse", "linear"]))
def test_liquidation_is_beyond_bankruptcy_side(entry: D, lev: int, kind: c.Kind) -> None:
    mm = D("0.005")
    long_liq = c.liquidation_price(kind, D(1), entry, D(lev), mm)
    short_liq = c.liquidation_price(kind, D(-1), entry, D(lev), mm)
    assert c.bankruptcy_price(kind, D(1), entry, D(lev)) < long_liq < entry < short_liq
