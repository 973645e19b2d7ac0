"""Realised PnL figures from the exchange's trade history (pure; money in exchange units).

BitMEX execution rows carry `realisedPnl` net of commission for fills, and funding as
rows of execType "Funding" whose `realisedPnl` is the payment received (negative when
paid). So per settlement currency: net = Σ realisedPnl, fees = Σ execComm over fills,
funding = Σ realisedPnl over funding rows, trading (gross) = net − funding + fees.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.exchange.types import Execution

PERIODS: dict[str, timedelta | None] = {
    "1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30), "all": None,
}
# BitMEX opened in 2014: "all" asks for history from before then.
EPOCH = datetime(2014, 1, 1, tzinfo=UTC)


def period_start(period: str, now: datetime) -> datetime:
    span = PERIODS.get(period)
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}")
    return EPOCH if span is None else now - span


@dataclass
class CurrencyPnl:
    currency: str  # the exchange unit: XBt, USDt
    net: int = 0  # realised, after fees and funding
    fees: int = 0  # paid (negative: rebates earned)
    funding: int = 0  # received (negative: paid)
    fills: int = 0
    wins: int = 0
    losses: int = 0
    # Cumulative net realised PnL after each event: the equity curve of the period.
    curve: list[tuple[datetime, int]] = field(default_factory=list)

    @property
    def trading(self) -> int:
        """Gross PnL of closing trades, before fees and funding."""
        return self.net - self.funding + self.fees

    @property
    def closed(self) -> int:
        return self.wins + self.losses

    @property
    def win_rate(self) -> float | None:
        """Share of closing trades that made money after fees; None with none closed."""
        return self.wins / self.closed if self.closed else None


def compute(rows: Iterable[Execution], start: datetime, end: datetime) -> dict[str, CurrencyPnl]:
    """Figures per settlement currency for executions in [start, end), oldest first."""
    out: dict[str, CurrencyPnl] = {}
    seen: set[str] = set()
    # One closing order filled in pieces is one trade to a trader: wins and losses are
    # counted per order, from the sum of its fills.
    closing: dict[str, dict[str, int]] = {}
    ordered = sorted((r for r in rows if r.timestamp is not None),
                     key=lambda r: r.timestamp or start)
    for r in ordered:
        assert r.timestamp is not None
        if not start <= r.timestamp < end or r.exec_id in seen:
            continue
        seen.add(r.exec_id)  # pages may overlap at their edges
        if r.exec_type not in ("Trade", "Funding") or not r.settl_currency:
            continue
        c = out.setdefault(r.settl_currency, CurrencyPnl(r.settl_currency))
        c.net += r.realised_pnl
        if r.exec_type == "Funding":
            c.funding += r.realised_pnl
        else:
            if r.last_qty == 0:
                continue
            c.fills += 1
            c.fees += r.exec_comm
            gross = r.realised_pnl + r.exec_comm
            if gross != 0:  # only a fill that reduced a position realised anything
                per_order = closing.setdefault(r.settl_currency, {})
                key = r.order_id or r.exec_id
                per_order[key] = per_order.get(key, 0) + r.realised_pnl
        c.curve.append((r.timestamp, c.net))
    for currency, per_order in closing.items():
        c = out[currency]
        c.wins = sum(1 for v in per_order.values() if v > 0)
        c.losses = len(per_order) - c.wins
    return out
