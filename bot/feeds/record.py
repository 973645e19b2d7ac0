"""A feed's record: each member's trade from a signal, and the counts /feedstats shows."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from bot import fmt
from bot.db.models import Signal
from bot.exchange import contracts
from bot.exchange.types import Execution, Instrument
from bot.feeds.sizing import ZERO

log = logging.getLogger(__name__)

# A feed's record never shows amounts (PnL, sizes), only counts, win rate and R
# multiples: any sum over members, however many, is read by subtraction once all but one
# of them collude (their own figures are known to them), and rounding or bucketing is
# probed the same way by sizing their own trades around the edges. R says nothing of size.


# --- the record --------------------------------------------------------------------------


@dataclass
class Trade:
    """One follower's closed (or partly closed) trade from one signal."""

    signal_id: int
    user_id: int
    currency: str
    pnl: Decimal  # settlement units, from real fills
    r: Decimal | None
    pnl_posted: Decimal  # the same exits, entered at the posted entry
    r_posted: Decimal | None


@dataclass
class Record:
    posted: int = 0
    followed: int = 0
    entries: int = 0  # follower entries that filled
    trades: list[Trade] = field(default_factory=list)

    @property
    def members(self) -> int:
        """Distinct members whose closed trades are in the record."""
        return len({t.user_id for t in self.trades})

    def summary(self, trades: list[Trade] | None = None, *, money: bool = True) -> list[str]:
        """The record's lines; `money=False` leaves out every amount (win rate and R only)."""
        rows = self.trades if trades is None else trades
        if not rows:
            return ["No closed follower trades yet."]

        def block(pnls: list[Decimal], rs: list[Decimal], currencies: list[str]) -> str:
            wins = sum(1 for p in pnls if p > 0)
            rate = Decimal(wins * 100) / len(pnls)
            avg_r = (sum(rs, ZERO) / len(rs)) if rs else None
            totals: dict[str, Decimal] = {}
            for p, c in zip(pnls, currencies, strict=True):
                totals[c] = totals.get(c, ZERO) + p
            money = ", ".join(_signed_money(v, c) for c, v in sorted(totals.items()))
            r_text = f"{avg_r.quantize(Decimal('0.01'))}R" if avg_r is not None else "—"
            if not money_shown:
                return f"win rate {fmt.num(rate, 0)}% · avg {r_text}"
            return f"win rate {fmt.num(rate, 0)}% · avg {r_text} · PnL {money}"

        money_shown = money

        cur = [t.currency for t in rows]
        real = block([t.pnl for t in rows], [t.r for t in rows if t.r is not None], cur)
        posted = block([t.pnl_posted for t in rows],
                       [t.r_posted for t in rows if t.r_posted is not None], cur)
        gap: dict[str, Decimal] = {}
        for t in rows:
            gap[t.currency] = gap.get(t.currency, ZERO) + t.pnl - t.pnl_posted
        gap_text = ", ".join(_signed_money(v, c) for c, v in sorted(gap.items()))
        lines = [f"From real fills ({len(rows)} closed): {real}",
                 f"At the posted entry: {posted}"]
        if money:
            return [*lines, f"Gap (fills − posted): {gap_text}"]
        gap_r = [t.r - t.r_posted for t in rows if t.r is not None and t.r_posted is not None]
        if gap_r:
            avg_gap = (sum(gap_r, ZERO) / len(gap_r)).quantize(Decimal("0.01"))
            lines.append(f"Gap (fills − posted): {'+' if avg_gap > 0 else ''}{avg_gap}R a trade")
        return lines


def _signed_money(units: Decimal, currency: str) -> str:
    text = fmt.money(units, currency)
    return text if units < 0 or text.startswith("0 ") else "+" + text


def _r_multiple(long: bool, entry: Decimal, exit_: Decimal, sl: Decimal) -> Decimal | None:
    risk = entry - sl if long else sl - entry
    if risk <= 0:
        return None
    gain = exit_ - entry if long else entry - exit_
    return (gain / risk).quantize(Decimal("0.0001"))


def trade_from_fills(sig: Signal, inst: Instrument, user_id: int, cl_ord_id: str,
                     related: Iterable[str], fills: Iterable[Execution]) -> Trade | bool | None:
    """A follower's trade from their executions: the entry is the order with `cl_ord_id`,
    the exits those whose ids it prefixes (`:sl`, `:tpN`) or the update cards' closes.
    None when nothing filled, True when the entry filled but nothing closed yet."""
    rel = set(related)
    ins: list[tuple[Decimal, Decimal]] = []
    outs: list[tuple[Decimal, Decimal]] = []
    for e in fills:
        if not e.is_fill or e.last_px is None:
            continue
        if e.cl_ord_id == cl_ord_id:
            ins.append((e.last_qty, e.last_px))
        elif e.cl_ord_id.startswith(cl_ord_id + ":") or e.cl_ord_id in rel:
            outs.append((e.last_qty, e.last_px))
    if not ins:
        return None
    qty_in = sum((abs(q) for q, _ in ins), ZERO)
    qty_out = sum((abs(q) for q, _ in outs), ZERO)
    closed = min(qty_in, qty_out)
    if closed == 0:
        return True
    avg_in = contracts.average_entry(inst.kind, ins)
    avg_out = contracts.average_entry(inst.kind, outs)
    assert avg_in is not None and avg_out is not None
    long = sig.side == "long"
    signed = closed if long else -closed
    posted = (sig.entry_low + sig.entry_high) / 2
    return Trade(
        signal_id=sig.id or 0, user_id=user_id, currency=inst.settl_currency,
        pnl=contracts.pnl(inst.kind, signed, avg_in, avg_out, inst.multiplier),
        r=_r_multiple(long, avg_in, avg_out, sig.sl),
        pnl_posted=contracts.pnl(inst.kind, signed, posted, avg_out, inst.multiplier),
        r_posted=_r_multiple(long, posted, avg_out, sig.sl),
    )
