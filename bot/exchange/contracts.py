"""Contract math for inverse, quanto and linear BitMEX contracts, in Decimal.

Values are in the settlement currency's smallest unit (XBt for XBTUSD and
ETHUSD, USDt for XBTUSDT/ETHUSDT), as BitMEX reports them. Quantities are
signed contracts (long > 0). Liquidation estimates ignore fees and funding,
as the formulas in BITMEX.md do.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from typing import Literal, NamedTuple

from bot.exchange.types import Instrument, Kind, from_unit, to_unit

ZERO = Decimal(0)
ONE = Decimal(1)

RoundMode = Literal["down", "up", "nearest", "toward_zero"]


class Rounded(NamedTuple):
    value: Decimal
    changed: bool


def round_step(value: Decimal, step: Decimal, mode: RoundMode = "nearest") -> Rounded:
    """Round `value` to a multiple of `step`; `changed` tells the caller to say so."""
    if step <= 0:
        return Rounded(value, False)
    rounding = {
        "down": ROUND_FLOOR,
        "up": ROUND_CEILING,
        "nearest": ROUND_HALF_EVEN,
        "toward_zero": ROUND_DOWN,
    }[mode]
    steps = (value / step).quantize(ONE, rounding=rounding)
    rounded = steps * step
    # Keep the step's exponent so 50000.1 stays "50000.1", not "50000.10000".
    if step.as_tuple().exponent < 0:  # type: ignore[operator]
        rounded = rounded.quantize(step)
    else:
        rounded = rounded.quantize(ONE)
    return Rounded(rounded, rounded != value)


def round_price(inst: Instrument, price: Decimal, mode: RoundMode = "nearest") -> Rounded:
    return round_step(price, inst.tick_size, mode)


def round_qty(inst: Instrument, qty: Decimal, mode: RoundMode = "toward_zero") -> Rounded:
    """Contracts rounded to lotSize; toward zero by default so a size never grows."""
    return round_step(qty, inst.lot_size, mode)


# --- value, margin, PnL ----------------------------------------------------------


def value(kind: Kind, qty: Decimal, price: Decimal, multiplier: Decimal) -> Decimal:
    """Signed position value in settlement units (long positive).

    inverse: qty * |multiplier| / price   (XBTUSD: 1 contract = 1 USD)
    quanto/linear: qty * multiplier * price
    """
    if kind == "inverse":
        return qty * abs(multiplier) / price
    return qty * multiplier * price


def inst_value(inst: Instrument, qty: Decimal, price: Decimal) -> Decimal:
    return value(inst.kind, qty, price, inst.multiplier)


def initial_margin(
    kind: Kind, qty: Decimal, price: Decimal, multiplier: Decimal, leverage: Decimal
) -> Decimal:
    """Margin to open at `leverage` (settlement units); leverage 0 means cross at 100x."""
    lev = leverage if leverage > 0 else Decimal(100)
    return abs(value(kind, qty, price, multiplier)) / lev


def pnl(kind: Kind, qty: Decimal, entry: Decimal, exit_: Decimal, multiplier: Decimal) -> Decimal:
    """Profit (settlement units) of `qty` contracts from entry to exit; long = qty > 0.

    inverse: qty * |m| * (1/entry - 1/exit)   linear/quanto: qty * m * (exit - entry)
    """
    if kind == "inverse":
        return qty * abs(multiplier) * (ONE / entry - ONE / exit_)
    return qty * multiplier * (exit_ - entry)


def unrealised_pnl(kind: Kind, qty: Decimal, entry: Decimal, mark: Decimal, m: Decimal) -> int:
    """As BitMEX reports it: markValue - unrealisedCost, in whole units."""
    return int(pnl(kind, qty, entry, mark, m).to_integral_value(rounding=ROUND_DOWN))


def average_entry(kind: Kind, fills: Iterable[tuple[Decimal, Decimal]]) -> Decimal | None:
    """Average entry of (qty, price) fills of the same side.

    Inverse contracts average harmonically (value is qty/price), the others
    arithmetically, so that PnL at the average equals the sum of PnLs.
    """
    total_qty = ZERO
    acc = ZERO
    for qty, price in fills:
        q = abs(qty)
        total_qty += q
        acc += q / price if kind == "inverse" else q * price
    if total_qty == 0 or acc == 0:
        return None
    return total_qty / acc if kind == "inverse" else acc / total_qty


# --- liquidation ---------------------------------------------------------------


def liquidation_price(
    kind: Kind, qty: Decimal, entry: Decimal, leverage: Decimal, maint_margin: Decimal
) -> Decimal:
    """Isolated liquidation estimate (no fees/funding). IM = 1/leverage.

    inverse long E/(1+IM-MM), short E/(1-IM+MM); linear/quanto long E*(1-IM+MM),
    short E*(1+IM-MM). Inverse long 50000 at 10x, MM 0.5% -> 45662.1.
    """
    if leverage <= 0:
        raise ValueError("isolated liquidation needs a leverage > 0")
    im = ONE / leverage
    mm = maint_margin
    long = qty > 0
    with localcontext() as ctx:
        ctx.prec = 28
        if kind == "inverse":
            if long:
                return entry / (ONE + im - mm)
            denom = ONE - im + mm
            # At 1x an inverse short can never be liquidated by a rising price.
            return entry / denom if denom > 0 else Decimal("Infinity")
        return entry * (ONE - im + mm) if long else entry * (ONE + im - mm)


def bankruptcy_price(kind: Kind, qty: Decimal, entry: Decimal, leverage: Decimal) -> Decimal:
    """Price at which the initial margin is lost entirely (liquidation with MM = 0)."""
    return liquidation_price(kind, qty, entry, leverage, ZERO)


# --- size conversions ----------------------------------------------------------


def contract_value_settle(inst: Instrument, price: Decimal) -> Decimal:
    """Settlement units one contract is worth at `price` (positive)."""
    return abs(inst_value(inst, ONE, price))


def contracts_for_settle(inst: Instrument, amount_units: Decimal, price: Decimal) -> Decimal:
    """How many contracts (unrounded) a settlement amount (XBt/USDt) buys at `price`."""
    return amount_units / contract_value_settle(inst, price)


def needs_xbt_price(inst: Instrument) -> bool:
    """XBt-settled but not inverse (a quanto like ETHUSD, or a linear contract priced in
    XBT like ETHXBT): a USD amount becomes contracts only through XBT's own price."""
    return inst.kind != "inverse" and inst.settl_currency == "XBt"


def contracts_for_usd(
    inst: Instrument, usd: Decimal, price: Decimal, *, xbt_usd: Decimal | None = None
) -> Decimal:
    """Contracts for a USD notional, unrounded.

    inverse: 1 contract = |multiplier| / 1e8 USD (XBTUSD: 1 USD). linear (USDT):
    notional in USDt is usd * 1e6. quanto (XBt-settled): needs the XBT price to
    turn USD into XBt.
    """
    if inst.kind == "inverse":
        return usd * Decimal(100_000_000) / abs(inst.multiplier)
    if inst.settl_currency == "USDt":
        return contracts_for_settle(inst, Decimal(from_unit(usd, "USDt")), price)
    if xbt_usd is None:
        raise ValueError(f"{inst.symbol}: a USD size needs the XBT price")
    xbt = usd / xbt_usd
    return contracts_for_settle(inst, xbt * Decimal(100_000_000), price)


def contracts_for_coin(inst: Instrument, coin: Decimal, price: Decimal) -> Decimal:
    """Contracts for an amount of the underlying coin (e.g. 0.01 BTC), unrounded."""
    if inst.kind == "inverse":
        # coin * price USD, and each contract is |m|/1e8 USD.
        return coin * price * Decimal(100_000_000) / abs(inst.multiplier)
    if inst.underlying_to_position_multiplier:
        return coin * inst.underlying_to_position_multiplier
    # Quanto without the field: a contract is worth multiplier*price XBt; the
    # coin amount is taken as its USD value in the quote currency.
    raise ValueError(f"{inst.symbol}: cannot size in coin without underlyingToPositionMultiplier")


def contracts_for_margin_fraction(
    inst: Instrument,
    fraction: Decimal,
    available_units: int,
    price: Decimal,
    leverage: Decimal,
) -> Decimal:
    """Contracts whose initial margin at `leverage` is `fraction` of available margin."""
    lev = leverage if leverage > 0 else ONE
    budget = Decimal(available_units) * fraction * lev
    return contracts_for_settle(inst, budget, price)


def usd_notional(inst: Instrument, qty: Decimal, price: Decimal) -> Decimal:
    """USD (or USDT) notional of a position, for display; quanto needs no XBT price here
    since its quote is USD-denominated per contract: multiplier*price XBt = value."""
    if inst.kind == "inverse":
        return abs(qty) * abs(inst.multiplier) / Decimal(100_000_000)
    if inst.settl_currency == "USDt":
        return to_unit(abs(inst_value(inst, qty, price)), "USDt")
    return abs(inst_value(inst, qty, price)) / Decimal(100_000_000)  # in XBT for quanto


def coin_notional(inst: Instrument, qty: Decimal, price: Decimal) -> Decimal:
    """Underlying coin amount of a position (XBT for XBTUSD/XBTUSDT)."""
    if inst.kind == "inverse":
        return to_unit(abs(inst_value(inst, qty, price)), "XBt")
    if inst.underlying_to_position_multiplier:
        return abs(qty) / inst.underlying_to_position_multiplier
    return abs(qty) * abs(inst.multiplier) / Decimal(100_000_000)
