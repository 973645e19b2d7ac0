"""Number formatting for chat cards: thousands separators, sensible precision, Decimal only."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from bot.exchange.types import Instrument, Order, display_currency, known_currency, to_unit


def num(value: Decimal | int, places: int | None = None) -> str:
    """97850 -> "97,850"; 97850.5 -> "97,850.5"; places fixes the decimals."""
    d = Decimal(value)
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
        return f"{d:,.{places}f}"
    text = f"{d:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def price(inst: Instrument | None, value: Decimal | None) -> str:
    """A price with the instrument's tick precision (97,850.0 for a 0.1 tick)."""
    if value is None:
        return "—"
    if inst is None:
        return num(value)
    exp = inst.tick_size.normalize().as_tuple().exponent
    places = max(0, -exp) if isinstance(exp, int) else 2
    return num(value, places)


def money(units: int | Decimal, currency: str, sig: int = 6) -> str:
    """Exchange units as coins with enough digits to be meaningful on a phone."""
    if not known_currency(currency):
        # No scale for it: the exchange's own integer, labelled as such, is honest; a guess
        # could be a million times off.
        return f"{num(Decimal(units).to_integral_value())} {currency} (raw units)".replace(
            "-", "−")
    # Whole exchange units are the finest the exchange can hold; anything finer is noise.
    amount = to_unit(Decimal(units).to_integral_value(), currency)
    code = display_currency(currency)
    if code == "USDT":
        text = num(amount, 2)
    elif amount == 0:
        text = num(0, 5)  # lines up with "1.00000 XBT" in the same balance card
    else:
        # Significant digits, not fixed places: 0.000102 XBT must not show as 0.0001.
        places = max(4, sig - amount.adjusted() - 1)
        text = num(amount, min(places, 8))
    # The typographic minus, as percentages show it: "−0.0005 XBT", never "-0.0005".
    return f"{text.replace('-', '−')} {code}"


def pct(value: Decimal, places: int = 1, signed: bool = True) -> str:
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if q == 0:
        q = abs(q)  # a tiny loss rounds to "0.0 %", never "−0.0 %"
    sign = "+" if signed and q > 0 else ""
    return f"{sign}{q}".replace("-", "−") + " %"


def order(o: Order, inst: Instrument | None = None) -> str:
    """One open order as the cards write it, in the instrument's tick precision:
    "Buy 1,000 XBTUSD Limit 45,000.0", "Sell 500 XBTUSD Stop 40,000.0 → Limit 39,900.0"."""
    px, stop = price(inst, o.price), price(inst, o.stop_px)
    kind = {
        "Market": "Market",
        "Limit": f"Limit {px}",
        "Stop": f"Stop {stop}",
        "StopLimit": f"Stop {stop} → Limit {px}",
        "MarketIfTouched": f"If touched {stop}",
        "LimitIfTouched": f"If touched {stop} → Limit {px}",
    }.get(o.ord_type, f"{o.ord_type} {px if o.price is not None else stop}")
    text = f"{o.side} {num(o.order_qty)} {o.symbol} {kind}"
    flags = [f for f, inst_flag in (("post-only", "ParticipateDoNotInitiate"),
                                    ("reduce-only", "ReduceOnly"), ("close", "Close"))
             if inst_flag in o.exec_inst]
    if flags:
        text += " · " + ", ".join(flags)
    if o.cum_qty:
        text += f" · filled {num(o.cum_qty)} of {num(o.order_qty)}"
    return text
