"""Reports: realised PnL with an equity chart, candlestick charts and prices.

Figures come from the exchange's trade history (pnl.py), drawing from charts.py; this
module fetches, assembles the text, and hands PNG bytes to whoever sends them.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from bot import fmt
from bot import parse as P
from bot.accounts import Accounts
from bot.errors import ExchangeError, UserError
from bot.exchange.types import (
    Candle,
    Exchange,
    Execution,
    Instrument,
    Position,
    display_currency,
    to_unit,
)
from bot.market import MarketHub, PublicMarket
from bot.notify import Notifier
from bot.ratelimit import PublicQuota
from bot.reports import charts
from bot.reports.candles import FETCH, CandleCache
from bot.reports.pnl import CurrencyPnl, compute, period_start
from bot.users import Users

log = logging.getLogger(__name__)

TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
PAGE = 500
MAX_PAGES = 20  # 10,000 fills: more than a summary needs, bounded for the exchange's sake
CAPTION_LIMIT = 1024


@dataclass(frozen=True)
class Report:
    text: str  # HTML
    png: bytes


def _signed(units: int, currency: str) -> str:
    text = fmt.money(units, currency)
    return ("+" + text if units > 0 else text).replace("-", "−")


def pnl_text(period: str, network: str, figures: dict[str, CurrencyPnl],
             positions: list[Position]) -> str:
    lines = [f"📊 <b>PnL · {period} · {network}</b>"]
    if not figures:
        lines.append("No fills or funding in this period.")
    for cur, c in sorted(figures.items()):
        lines.append(f"<b>{display_currency(cur)}</b> realised <b>{_signed(c.net, cur)}</b>")
        lines.append(f"  trading {_signed(c.trading, cur)} · fees {_signed(-c.fees, cur)} · "
                     f"funding {_signed(c.funding, cur)}")
        rate = "—" if c.win_rate is None else f"{c.win_rate * 100:.0f} %"
        lines.append(f"  fills {c.fills} · closing {c.closed} · win rate {rate}")
    open_ = [p for p in positions if p.current_qty != 0]
    if open_:
        lines.append("<b>Open positions</b>")
        for p in open_:
            entry = "—" if p.avg_entry_price is None else fmt.num(p.avg_entry_price)
            lines.append(f"  {html.escape(p.symbol)} {p.side} {fmt.num(abs(p.current_qty))} "
                         f"@ {entry} · uPnL {_signed(p.unrealised_pnl, p.currency)}")
    else:
        lines.append("No open positions.")
    return "\n".join(lines)


def curve_of(figures: dict[str, CurrencyPnl]) -> tuple[list[tuple[datetime, float]], str]:
    """The curve to draw: the currency with the most activity, in coins (float: drawing)."""
    if not figures:
        return [], ""
    c = max(figures.values(), key=lambda f: (len(f.curve), abs(f.net)))
    return ([(t, float(to_unit(v, c.currency))) for t, v in c.curve],
            display_currency(c.currency))


async def fetch_history(ex: Exchange, start: datetime) -> list[Execution]:
    """Every fill and funding row since `start`, oldest first, paging forward."""
    rows: list[Execution] = []
    since = start
    for _ in range(MAX_PAGES):
        page = await ex.executions(start_time=since, count=PAGE)
        rows.extend(page)
        stamps = [r.timestamp for r in page if r.timestamp is not None]
        if len(page) < PAGE or not stamps:
            break
        # Rows sharing the last timestamp come again on the next page; compute() dedups.
        since = max(stamps)
    return rows


class Reports:
    def __init__(self, accounts: Accounts, users: Users, market: PublicMarket, hub: MarketHub,
                 candles: CandleCache, public_quota: PublicQuota, notifier: Notifier) -> None:
        self.accounts = accounts
        self.users = users
        self.market = market
        self.hub = hub
        self.candle_cache = candles
        self.public_quota = public_quota
        self.notifier = notifier

    async def pnl(self, user_id: int, period: str,
                  now: datetime | None = None) -> Report:
        acc = await self.accounts.require_active(user_id)
        ex = await self.accounts.exchange(user_id, acc.network)
        now = now or datetime.now(UTC)
        start = period_start(period, now)
        try:
            history = await fetch_history(ex, start)
            positions = await ex.positions()
        except ExchangeError as e:
            raise UserError(f"BitMEX is not answering right now ({html.escape(e.message)}). "
                            "Please try again in a moment.") from e
        # No upper bound: the exchange's clock, not ours, stamps the rows.
        figures = compute(history, start, datetime.max.replace(tzinfo=UTC))
        series, unit = curve_of(figures)
        png = await charts.render(charts.equity, series, f"Realised PnL · {period}",
                                  unit or "PnL", start=start if period != "all" else None,
                                  end=now)
        return Report(pnl_text(period, acc.network, figures, positions), png)

    async def send_summary(self, user_id: int, chat_id: int, period: str) -> None:
        """The scheduled summary: a photo with the figures as its caption."""
        notifier = self.notifier
        report = await self.pnl(user_id, period)
        text = report.text.replace("📊 <b>PnL", "🗓 <b>Summary", 1)
        if len(text) <= CAPTION_LIMIT:
            await notifier.photo(chat_id, report.png, caption=text, kind="summary")
        else:
            await notifier.send(chat_id, text, kind="summary")
            await notifier.photo(chat_id, report.png, kind="summary")

    async def _network(self, user_id: int) -> str:
        user = await self.users.view(user_id)  # the cached view: asked on every /price
        return (user.active_network if user else None) or "mainnet"

    def _spend_public(self, user_id: int) -> None:
        """One request of the public budget all users share, or a clear refusal."""
        wait, everyone = self.public_quota.take(user_id)
        if not wait:
            return
        secs = math.ceil(wait)
        if everyone:
            raise UserError("Many people are asking BitMEX for market data right now and "
                            f"its public allowance is shared: try again in {secs} s.")
        raise UserError("Market data from BitMEX is shared by everyone here, so it is "
                        f"rationed: you have asked for a lot of it. Try again in {secs} s.")

    async def candles(self, user_id: int, network: str, symbol: str, bin_size: str,
                      count: int) -> list[Candle]:
        """Candles from the shared cache; a miss spends the user's public quota."""
        net = "mainnet" if network == "paper" else network
        cache = self.candle_cache
        rows = cache.get(net, symbol, bin_size, count)
        if rows is not None:
            return rows
        async with cache.lock(net, symbol, bin_size):
            rows = cache.get(net, symbol, bin_size, count)  # fetched while we waited
            if rows is not None:
                return rows
            self._spend_public(user_id)
            fetch = max(count, FETCH)
            got = await self.market.client(net).bucketed(symbol, bin_size, count=fetch,
                                                           partial=True)
            cache.put(net, symbol, bin_size, fetch, got)
        return got[-count:]

    async def chart(self, user_id: int, intent: P.Chart, symbol: str) -> Report:
        network = await self._network(user_id)
        ex = self.market.client(network)
        try:
            rows = await self.candles(user_id, network, symbol, intent.timeframe,
                                      intent.candles)
        except ExchangeError as e:
            raise UserError(f"No chart for {html.escape(symbol)} right now "
                            f"({html.escape(e.message)}).") from e
        ohlc = [(c.timestamp, float(c.open), float(c.high), float(c.low), float(c.close))
                for c in rows
                if c.open is not None and c.high is not None and c.low is not None
                and c.close is not None]
        if not ohlc:
            raise UserError(f"No trades in {html.escape(symbol)} to draw yet.")
        ohlc = ohlc[-intent.candles:]
        levels = await self._position_levels(user_id, symbol)
        png = await charts.render(charts.candles, ohlc, f"{symbol} · {intent.timeframe}",
                                  TIMEFRAME_SECONDS[intent.timeframe], levels)
        try:
            inst: Instrument | None = await ex.instrument(symbol)  # the tick, for the caption
        except ExchangeError:
            inst = None
        whole = [c for c in rows if c.open is not None and c.close is not None][-len(ohlc):]
        first_open, last_close = whole[0].open or Decimal(0), whole[-1].close or Decimal(0)
        change = fmt.pct((last_close - first_open) / first_open * 100, 2) if first_open else "—"
        caption = (f"<b>{html.escape(symbol)}</b> · {intent.timeframe} · {len(ohlc)} candles\n"
                   f"close {fmt.price(inst, last_close)} · {change} over the chart")
        if levels:
            caption += "\n" + " · ".join(f"{html.escape(label)} "
                                         f"{fmt.price(inst, Decimal(str(value)))}"
                                         for label, value in levels)
        return Report(caption, png)

    async def _position_levels(self, user_id: int, symbol: str) -> list[charts.Level]:
        """The user's entry, SL, TPs and estimated liquidation in `symbol` on the active
        account (issue #14 item 8); none without a position, or when they can't be read:
        the chart itself must not depend on the account."""
        try:
            acc = await self.accounts.require_active(user_id)
            ex = await self.accounts.exchange(user_id, acc.network)
            pos = next((p for p in await ex.positions()
                        if p.symbol == symbol and p.current_qty != 0), None)
            if pos is None:
                return []
            orders = await ex.open_orders(symbol)
        except (UserError, ExchangeError) as e:
            log.info("chart without position lines: %s", e)
            return []
        return charts.position_levels(pos, orders)

    async def price(self, user_id: int, symbols: list[str]) -> str:
        """Prices from the shared socket when it has them: no REST call per /price, so many
        users asking cannot exhaust the IP's unauthenticated budget (30/min)."""
        network = await self._network(user_id)
        ex = self.market.client(network)
        hub = self.hub
        net = "mainnet" if network == "paper" else network
        try:
            await hub.watch(net, *symbols)  # this and later /price calls read the socket
        except Exception:  # the socket is an optimisation; REST below still answers
            log.info("could not subscribe %s for /price", symbols)
        blocks = []
        for sym in symbols:
            live = hub.instrument(net, sym)
            try:
                if live is not None and live.last_price is not None:
                    inst = live
                else:
                    spec = await ex.instrument(sym)  # cached specs (tick size)
                    self._spend_public(user_id)
                    t = await ex.ticker(sym)  # fresh prices
                    inst = dataclasses.replace(
                        spec, last_price=t.last, mark_price=t.mark, bid_price=t.bid,
                        ask_price=t.ask, funding_rate=t.funding_rate)
                ref = inst.prev_price_24h
                if not ref:
                    day = await self.candles(user_id, network, sym, "1h", 24)
                    opens = [c.open for c in day if c.open is not None]
                    ref = opens[0] if opens else None
            except ExchangeError as e:
                blocks.append(f"<b>{html.escape(sym)}</b>: unavailable ({html.escape(e.message)})")
                continue
            except UserError as e:  # rationed: the other symbols may still be on the socket
                blocks.append(f"<b>{html.escape(sym)}</b>: {e}")
                continue
            px = fmt.price
            last = inst.last_price
            change = (f"{fmt.pct((last - ref) / ref * 100, 2)}"
                      if ref and last is not None else "—")
            funding = ("—" if inst.funding_rate is None
                       else fmt.pct(inst.funding_rate * 100, 4))
            blocks.append(
                f"<b>{html.escape(sym)}</b> {px(inst, last)}\n"
                f"  mark {px(inst, inst.mark_price)} · bid {px(inst, inst.bid_price)} · "
                f"ask {px(inst, inst.ask_price)}\n"
                f"  24h {change} · funding {funding}")
        return "\n".join(blocks)

