"""Risk sizing (issue #14 item 4): how many contracts lose a given amount at the stop.

Pure contract math on `bot.exchange.contracts`, in settlement units (XBt for XBTUSD and
the quanto ETHUSD, USDt for XBTUSDT). The loss at the stop of one contract is the price
move's PnL plus the taker fee on the entry and on the stop (both fill as takers: a market
entry and a stop-market exit), so the size never risks more than asked. The size is
rounded down to the lot.
"""

from __future__ import annotations

from decimal import Decimal

from bot.exchange import contracts
from bot.exchange.types import Instrument
from bot.side import Side

# BitMEX's taker fee on perpetual swaps (the simulator charges the same, bot/matching/
# terms.py). The instrument list carries no fee field the bot reads, and overstating the
# fee only makes the size smaller, never the loss larger.
TAKER_FEE = Decimal("0.00075")
ZERO = Decimal(0)


def loss_per_contract(inst: Instrument, side: Side, entry: Decimal, stop: Decimal,
                      fee: Decimal = TAKER_FEE) -> Decimal:
    """Settlement units one contract loses from `entry` to `stop`, fees on both legs.

    inverse: |m| * (1/stop - 1/entry) for a long;  quanto/linear: m * (entry - stop);
    fees: fee * (value at entry + value at stop).
    """
    signed = Decimal(1) if side == "Buy" else Decimal(-1)
    move = -contracts.pnl(inst.kind, signed, entry, stop, inst.multiplier)
    fees = fee * (contracts.contract_value_settle(inst, entry)
                  + contracts.contract_value_settle(inst, stop))
    return move + fees


def risk_qty(inst: Instrument, side: Side, entry: Decimal, stop: Decimal,
             risk_units: Decimal, fee: Decimal = TAKER_FEE) -> Decimal:
    """Contracts whose loss at the stop (fees included) is at most `risk_units`,
    rounded down to the lot."""
    per = loss_per_contract(inst, side, entry, stop, fee)
    if per <= 0:
        raise ValueError("the stop is not on the losing side of the entry")
    return contracts.round_qty(inst, risk_units / per, "down").value


def loss_at_stop(inst: Instrument, side: Side, qty: Decimal, entry: Decimal, stop: Decimal,
                 fee: Decimal = TAKER_FEE) -> Decimal:
    """What `qty` contracts lose at the stop, fees included (settlement units)."""
    return qty * loss_per_contract(inst, side, entry, stop, fee)


def r_multiple(inst: Instrument, side: Side, entry: Decimal, stop: Decimal, tp: Decimal,
               fee: Decimal = TAKER_FEE) -> Decimal:
    """A take-profit's gain (after the entry and exit fees) in units of the loss at the
    stop: 2 means the TP wins twice what the stop loses."""
    signed = Decimal(1) if side == "Buy" else Decimal(-1)
    gain = contracts.pnl(inst.kind, signed, entry, tp, inst.multiplier) - fee * (
        contracts.contract_value_settle(inst, entry) + contracts.contract_value_settle(inst, tp))
    per = loss_per_contract(inst, side, entry, stop, fee)
    return gain / per if per > 0 else ZERO
