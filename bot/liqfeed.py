"""The market liquidation feed: BitMEX's `liquidation` topic to `/liqfeed` chats.

A chat subscribes to one symbol or to all, with a minimum USD notional per
liquidation order. Liquidations come in bursts (a cascade is dozens of orders
in a second), so they are not posted one by one: the first one that qualifies
for a chat opens a short window (`window`, 2 s), everything else that qualifies
for that chat during it joins, and one message goes out when it closes, with a
line per symbol and side:

    🔥 Long liquidated: $1.2M XBTUSD @ 60,120

The clock and the flush are injectable (`clock`, `flush(now=...)`,
`autoflush=False`) so that tests drive the window instead of sleeping.

A BitMEX liquidation row is an order: `side` Sell means a long position is being
closed out, Buy a short one. Each order is counted once, on its insert: later rows
only shrink `leavesQty`. The rows of a partial (on subscribing, after a reconnect)
are remembered but not posted: they are liquidations already under way, possibly
seconds old, and a reconnect must not replay a burst the chat has already seen.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal

from sqlalchemy import update
from sqlmodel import col, delete, select

from bot import fmt
from bot.db.engine import Database
from bot.db.models import LiqFeedSubscription
from bot.errors import UserError
from bot.exchange import contracts
from bot.exchange.types import Instrument, Liquidation
from bot.notify import Notifier

log = logging.getLogger(__name__)

InstrumentLookup = Callable[[str], Awaitable[Instrument | None]]

WINDOW_SECONDS = 2.0
MAX_SUBS_PER_CHAT = 20
# Lines per message: 30 lines of at most ~110 characters stay under Telegram's 4,096.
MAX_LINES = 30
_SEEN_LIMIT = 5000
_XBT_IN_SATS = Decimal(100_000_000)


@dataclass(frozen=True, slots=True)
class Subscription:
    chat_id: int
    symbol: str | None  # None: every symbol
    min_usd: Decimal
    thread_id: int | None = None  # the forum topic it was set in; None = General

    def describe(self) -> str:
        what = html.escape(self.symbol) if self.symbol else "all symbols"
        return f"{what} · min ${compact(self.min_usd)}"


@dataclass(frozen=True, slots=True)
class Liq:
    """One qualifying liquidation order, in the feed's terms."""

    symbol: str
    side: str  # "Long" (a Sell order) or "Short" (a Buy order)
    qty: Decimal
    price: Decimal
    usd: Decimal
    inst: Instrument | None = None


@dataclass
class _Pending:
    due: float
    items: list[Liq] = field(default_factory=list)
    # The topic each item goes to: subscriptions of one chat may live in different topics.
    threads: list[int | None] = field(default_factory=list)


def compact(value: Decimal) -> str:
    """1_200_000 -> "1.2M", 500_000 -> "500K", 950 -> "950"."""
    v = abs(value)
    for unit, size in (("B", Decimal(10) ** 9), ("M", Decimal(10) ** 6), ("K", Decimal(1000))):
        if v >= size:
            scaled = v / size
            text = fmt.num(scaled, 1 if scaled < 100 else 0)
            text = text[:-2] if text.endswith(".0") else text
            return text + unit
    return fmt.num(v, 0)


class LiqFeed:
    """Subscriptions (cached from the database), the burst aggregator and its messages."""

    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        *,
        instrument: InstrumentLookup | None = None,
        watch: Callable[[], Awaitable[None]] | None = None,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        autoflush: bool = True,
        network: str = "mainnet",
    ) -> None:
        self.db = db
        self._notifier = notifier
        self._instrument = instrument
        self._watch = watch
        self.window = window
        self.clock = clock
        self.autoflush = autoflush
        self.network = network
        # chat -> symbol (None = all) -> subscription
        self.subs: dict[int, dict[str | None, Subscription]] = {}
        self._pending: dict[int, _Pending] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.received = 0  # liquidation orders seen (after dedupe), for tests
        self.sent = 0

    # --- subscriptions -------------------------------------------------------------------

    async def start(self) -> int:
        async with self.db.session() as s:
            rows = (await s.exec(select(LiqFeedSubscription))).all()
        for r in rows:
            self.subs.setdefault(r.chat_id, {})[r.symbol] = Subscription(
                r.chat_id, r.symbol, r.min_usd, r.thread_id)
        if rows:
            await self._subscribe()
        return len(rows)

    async def _subscribe(self) -> None:
        if self._watch is not None:
            try:
                await self._watch()
            except Exception:
                log.exception("could not subscribe the liquidation topic")

    async def subscribe(self, chat_id: int, symbol: str | None, min_usd: Decimal,
                        user_id: int | None = None,
                        thread_id: int | None = None) -> Subscription:
        """Add or change this chat's subscription to `symbol` (None = all)."""
        if min_usd <= 0:
            raise UserError("The minimum must be above zero, like min $100k.")
        chat = self.subs.get(chat_id, {})
        if symbol not in chat and len(chat) >= MAX_SUBS_PER_CHAT:
            raise UserError(f"This chat follows {len(chat)} liquidation feeds already; "
                            "turn some off with /liqfeed SYMBOL off.")
        async with self.db.session() as s:
            row = (await s.exec(select(LiqFeedSubscription).where(
                LiqFeedSubscription.chat_id == chat_id,
                LiqFeedSubscription.symbol == symbol if symbol is not None
                else col(LiqFeedSubscription.symbol).is_(None)))).first()
            if row is None:
                row = LiqFeedSubscription(chat_id=chat_id, symbol=symbol, min_usd=min_usd,
                                          created_by=user_id, thread_id=thread_id)
            else:
                # Set again (perhaps from another topic): it posts where it was set last.
                row.min_usd, row.created_by, row.thread_id = min_usd, user_id, thread_id
            s.add(row)
            await s.commit()
        sub = Subscription(chat_id, symbol, min_usd, thread_id)
        self.subs.setdefault(chat_id, {})[symbol] = sub
        await self._subscribe()
        return sub

    async def unsubscribe(self, chat_id: int, symbol: str | None = None) -> int:
        """Stop one symbol's feed, or every feed of the chat when `symbol` is None."""
        stmt = delete(LiqFeedSubscription).where(
            col(LiqFeedSubscription.chat_id) == chat_id)
        if symbol is not None:
            stmt = stmt.where(col(LiqFeedSubscription.symbol) == symbol)
        async with self.db.session() as s:
            result = await s.exec(stmt)
            await s.commit()
        chat = self.subs.get(chat_id, {})
        if symbol is None:
            self.subs.pop(chat_id, None)
            self._pending.pop(chat_id, None)
        else:
            chat.pop(symbol, None)
            if not chat:
                self.subs.pop(chat_id, None)
        return int(result.rowcount or 0)

    def for_chat(self, chat_id: int) -> list[Subscription]:
        chat = self.subs.get(chat_id, {})
        return sorted(chat.values(), key=lambda s: (s.symbol is not None, s.symbol or ""))

    def listing(self, chat_id: int) -> str:
        subs = self.for_chat(chat_id)
        if not subs:
            return ("No liquidation feed here. Start one: <code>/liqfeed min $1m</code> or "
                    "<code>/liqfeed XBTUSD min $250k</code>.")
        return "<b>Liquidation feed</b>\n" + "\n".join(s.describe() for s in subs)

    # --- the feed ---------------------------------------------------------------------------

    def _first_sight(self, order_id: str) -> bool:
        if not order_id or order_id in self._seen:
            return False
        self._seen[order_id] = None
        if len(self._seen) > _SEEN_LIMIT:
            self._seen.popitem(last=False)
        return True

    async def on_liquidation(self, network: str, liq: Liquidation) -> None:
        """A market-hub listener: every liquidation row of `network`."""
        if network != self.network:
            return
        if liq.action == "partial":
            self._first_sight(liq.order_id)
            return
        if liq.action != "insert" or not self.subs or liq.price is None or liq.leaves_qty <= 0:
            return
        # Subscribing to all symbols and to one symbol at once makes BitMEX send an
        # order twice; the order id keeps it to one line.
        if not self._first_sight(liq.order_id):
            return
        self.received += 1
        inst = await self._lookup(liq.symbol)
        usd = await self._usd(inst, liq.leaves_qty, liq.price)
        item = Liq(liq.symbol, "Long" if liq.side == "Sell" else "Short", liq.leaves_qty,
                   liq.price, usd, inst)
        await self.add(item)

    async def add(self, item: Liq) -> None:
        """Queue `item` for every chat whose subscription it meets."""
        now = self.clock()
        for chat_id, chat in self.subs.items():
            sub = chat.get(item.symbol) or chat.get(None)
            if sub is None or item.usd < sub.min_usd:
                continue
            pending = self._pending.get(chat_id)
            if pending is None:
                pending = self._pending[chat_id] = _Pending(now + self.window)
            pending.items.append(item)
            pending.threads.append(sub.thread_id)
        if self._pending and self.autoflush and (self._timer is None or self._timer.done()):
            self._timer = asyncio.create_task(self._flush_later(), name="liqfeed-flush")

    async def _flush_later(self) -> None:
        while self._pending:
            due = min(p.due for p in self._pending.values())
            await asyncio.sleep(max(0.0, due - self.clock()))
            try:
                await self.flush()
            except Exception:
                log.exception("liquidation feed flush failed")

    @property
    def pending(self) -> int:
        """Liquidations waiting for their window to close (all chats)."""
        return sum(len(p.items) for p in self._pending.values())

    async def flush(self, now: float | None = None, *, force: bool = False) -> int:
        """Send every window that has closed by `now` (all of them with force); returns sent."""
        async with self._lock:
            t = self.clock() if now is None else now
            due = [c for c, p in self._pending.items() if force or p.due <= t]
            batches: list[tuple[int, int | None, list[Liq]]] = []
            for c in due:
                p = self._pending.pop(c)
                by_thread: dict[int | None, list[Liq]] = {}
                for item, thread in zip(p.items, p.threads, strict=True):
                    by_thread.setdefault(thread, []).append(item)
                batches.extend((c, t, items) for t, items in by_thread.items())
        notifier = self._notifier

        async def post(chat_id: int, thread_id: int | None, items: list[Liq]) -> bool:
            try:
                await notifier.send(chat_id, self.message(items), kind="liqfeed",
                                    thread_id=thread_id)
            except Exception:
                log.exception("liquidation feed message to %s failed", chat_id)
                return False
            return True

        # Chats side by side: the delivery queue paces each chat, not the whole feed.
        sent = sum(await asyncio.gather(*(post(c, t, items) for c, t, items in batches)))
        self.sent += sent
        return sent

    async def move_chat(self, old: int, new: int) -> int:
        """A group became a supergroup: its feed posts to the new id; rows moved."""
        async with self.db.session() as s:
            result = await s.exec(update(LiqFeedSubscription).where(
                col(LiqFeedSubscription.chat_id) == old).values(chat_id=new))
            await s.commit()
        if old in self.subs:
            subs = self.subs.pop(old)
            self.subs[new] = {sym: replace(sub, chat_id=new) for sym, sub in subs.items()}
        return int(result.rowcount or 0)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            try:
                await self._timer
            except (asyncio.CancelledError, Exception):
                pass
            self._timer = None

    # --- words ------------------------------------------------------------------------------

    def message(self, items: list[Liq]) -> str:
        """One line per (symbol, side), biggest first."""
        groups: dict[tuple[str, str], list[Liq]] = {}
        for item in items:
            groups.setdefault((item.symbol, item.side), []).append(item)
        lines = []
        ordered = sorted(groups.items(), key=lambda kv: -sum(i.usd for i in kv[1]))
        for (symbol, side), group in ordered:
            usd = sum((i.usd for i in group), Decimal(0))
            inst = group[0].inst
            prices = sorted(i.price for i in group)
            if len(group) == 1:
                where = f"@ {fmt.price(inst, prices[0])}"
            else:
                lo, hi = fmt.price(inst, prices[0]), fmt.price(inst, prices[-1])
                where = f"({len(group)} orders) @ {lo}" + (f"–{hi}" if hi != lo else "")
            lines.append(f"🔥 {side} liquidated: ${compact(usd)} "
                         f"<b>{html.escape(symbol)}</b> {where}")
        if len(lines) > MAX_LINES:
            # A market-wide cascade touches dozens of symbols: Telegram refuses a message
            # over 4,096 characters, so the smallest groups are summed into one line.
            rest = ordered[MAX_LINES - 1:]
            usd = sum((i.usd for _, group in rest for i in group), Decimal(0))
            more = f"… and {len(rest)} more (symbol, side) pairs: ${compact(usd)}"
            lines = [*lines[:MAX_LINES - 1], more]
        return "\n".join(lines)

    # --- notional -------------------------------------------------------------------------

    async def _lookup(self, symbol: str) -> Instrument | None:
        if self._instrument is None:
            return None
        try:
            return await self._instrument(symbol)
        except Exception:
            log.warning("no instrument %s for the liquidation feed", symbol)
            return None

    async def _usd(self, inst: Instrument | None, qty: Decimal, price: Decimal) -> Decimal:
        """USD notional of a liquidation order (USDT counted as USD)."""
        if inst is None:
            return qty  # inverse USD contracts are the common case: 1 contract = 1 USD
        if inst.kind == "quanto" or (inst.kind == "linear" and inst.settl_currency == "XBt"):
            xbt = abs(contracts.inst_value(inst, qty, price)) / _XBT_IN_SATS
            btc = await self._lookup("XBTUSD")
            btc_price = btc.last_price or btc.mark_price if btc is not None else None
            return xbt * btc_price if btc_price else xbt
        return contracts.usd_notional(inst, qty, price)
