"""Chat number formats: one minus sign, no negative zero, orders written one way."""

from __future__ import annotations

from decimal import Decimal

from bot import fmt
from bot.exchange.types import Order


def _order(ord_type: str, price: str | None, stop: str | None, *,
           exec_inst: tuple[str, ...] = (), cum: int = 0) -> Order:
    return Order(order_id="abcdef0123", cl_ord_id="", symbol="XBTUSD", side="Sell",
                 order_qty=Decimal(1000), price=Decimal(price) if price else None,
                 stop_px=Decimal(stop) if stop else None, ord_type=ord_type,
                 time_in_force="GoodTillCancel", exec_inst=exec_inst, ord_status="New",
                 leaves_qty=Decimal(1000 - cum), cum_qty=Decimal(cum), avg_px=None, text="")


def test_pct_never_shows_negative_zero() -> None:
    assert fmt.pct(Decimal("-0.0001")) == "0.0 %"
    assert fmt.pct(Decimal("-0.04"), 1) == "0.0 %"
    assert fmt.pct(Decimal("-0.06"), 1) == "−0.1 %"
    assert fmt.pct(Decimal("2.5")) == "+2.5 %"


def test_order_text_without_duplicate_words() -> None:
    assert fmt.order(_order("Limit", "45000", None)) == "Sell 1,000 XBTUSD Limit 45,000"
    assert fmt.order(_order("Stop", None, "40000")) == "Sell 1,000 XBTUSD Stop 40,000"
    assert fmt.order(_order("StopLimit", "39900", "40000")) == (
        "Sell 1,000 XBTUSD Stop 40,000 → Limit 39,900")
    assert fmt.order(_order("Limit", "60000", None, exec_inst=("ReduceOnly",), cum=300)) == (
        "Sell 1,000 XBTUSD Limit 60,000 · reduce-only · filled 300 of 1,000")


def test_zero_xbt_lines_up_with_other_balances() -> None:
    from bot import fmt

    assert fmt.money(0, "XBt") == "0.00000 XBT"
    assert fmt.money(100_000_000, "XBt") == "1.00000 XBT"
    assert fmt.money(0, "USDt") == "0.00 USDT"
