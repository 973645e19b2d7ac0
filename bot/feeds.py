"""Group signal feeds: admins post signals, members follow with their own key and sizing.

A group becomes a feed (`/feed on NAME`). A signal posted there is stored as first
posted and answered with a card; every follower gets a private preview sized by their
own settings, built by `Trading.preview_order` - the same card, expiry and exactly-once
confirm as `/buy`. Nothing is placed without the member's own press, except that a
follow in `auto` mode applies updates that only reduce risk (a tighter stop, a close).

`/feedstats` reads the followers' real fills from the exchange (matched by the clOrdID
of each follower's entry, which prefixes its exits' ids) and shows beside them what the
same trades would have made at the posted entry.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot import fmt
from bot.accounts import Accounts
from bot.buttons import AutoMode, FollowSignal, button
from bot.db.engine import Database
from bot.db.models import Feed, Follow, FollowerOrder, OrderIntent, Signal, SignalUpdate
from bot.errors import ExchangeError, UserError
from bot.exchange import contracts
from bot.exchange.types import Exchange, Execution, Instrument
from bot.notify import Keyboard, Notifier, Sent
from bot.parsing import intents as P
from bot.parsing.values import SizeSpec
from bot.signals import risk_reward
from bot.trading import PLACED, WAITING, Card, Plan, Trading

log = logging.getLogger(__name__)

ZERO = Decimal(0)
SIGNALS_PER_MINUTE = 7
BUILD_CONCURRENCY = 16  # previews being sized at once (exchange calls, database writes)
# A feed's record never shows amounts (PnL, sizes), only counts, win rate and R
# multiples: any sum over members, however many, is read by subtraction once all but one
# of them collude (their own figures are known to them), and rounding or bucketing is
# probed the same way by sizing their own trades around the edges. R says nothing of size.


# --- rates -------------------------------------------------------------------


# Seconds a getChatMember answer is trusted. chat_member updates (left, kicked, joined)
# correct it at once where the bot hears them; the TTL bounds it where it does not.
MEMBER_TTL = 60.0
MEMBER_CACHE_MAX = 50_000
# (group chat id, user id) -> is that user a member of the group now? The Telegram side
# answers it with getChatMember (creator, administrator, member, restricted member).
MemberLookup = Callable[[int, int], Awaitable[bool]]


class NotMember(UserError):
    """A feed is only for the members of its group."""


class Membership:
    """Who is in a feed's group, as Telegram says, kept briefly per (chat, user).

    With no lookup attached nobody counts as a member: a feed's signals never go to
    people who could not be checked."""

    def __init__(self, ttl: float = MEMBER_TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self.lookup: MemberLookup | None = None
        self._seen: dict[tuple[int, int], tuple[float, bool]] = {}

    async def is_member(self, chat_id: int, user_id: int) -> bool:
        now = self.clock()
        hit = self._seen.get((chat_id, user_id))
        if hit is not None and now - hit[0] <= self.ttl:
            return hit[1]
        if self.lookup is None:
            return False
        member = await self.lookup(chat_id, user_id)
        self.note(chat_id, user_id, member)
        return member

    def note(self, chat_id: int, user_id: int, member: bool) -> None:
        """What a chat_member update (or a lookup) just said."""
        if len(self._seen) >= MEMBER_CACHE_MAX:
            cutoff = self.clock() - self.ttl
            self._seen = {k: v for k, v in self._seen.items() if v[0] > cutoff}
            if len(self._seen) >= MEMBER_CACHE_MAX:
                self._seen.clear()
        self._seen[(chat_id, user_id)] = (self.clock(), member)


class FeedRateLimit:
    """At most `limit` signals per feed in any `window` seconds (a sliding window)."""

    def __init__(self, limit: int = SIGNALS_PER_MINUTE, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self._posts: dict[int, deque[float]] = {}

    def take(self, feed_id: int) -> float:
        """0 when a post is allowed (and counted), else seconds until one is."""
        now = self.clock()
        q = self._posts.setdefault(feed_id, deque())
        while q and now - q[0] >= self.window:
            q.popleft()
        if len(q) >= self.limit:
            return self.window - (now - q[0])
        q.append(now)
        return 0.0


# --- sizing ---------------------------------------------------------------------------


def size_contracts(inst: Instrument, follow: Follow, entry: Decimal, sl: Decimal,
                   available_units: int, xbt_usd: Decimal | None = None) -> Decimal:
    """Contracts for one signal, by the member's follow settings (unrounded).

    risk: the loss at the stop is `value`% of the available margin, so the size comes
    from the entry-to-stop distance; `max_usd` caps the notional.
    """
    if follow.mode == "contracts":
        return follow.value
    if follow.mode == "usd":
        return contracts.contracts_for_usd(inst, follow.value, entry, xbt_usd=xbt_usd)
    loss_per_contract = abs(contracts.pnl(inst.kind, Decimal(1), entry, sl, inst.multiplier))
    if loss_per_contract == 0 or available_units <= 0:
        return ZERO
    qty = Decimal(available_units) * follow.value / 100 / loss_per_contract
    if follow.max_usd is not None:
        qty = min(qty, contracts.contracts_for_usd(inst, follow.max_usd, entry, xbt_usd=xbt_usd))
    return qty


def _lots(inst: Instrument, qty: Decimal) -> Decimal:
    lots = (qty / inst.lot_size).to_integral_value(rounding=ROUND_DOWN)
    return lots * inst.lot_size


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


# --- the service ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    signal_id: int
    text: str
    buttons: Keyboard


@dataclass
class FanOut:
    previews: int = 0
    told: int = 0  # members told why they got no preview (no key, read-only ...)
    unreachable: int = 0
    seconds: float = 0.0


class Feeds:
    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        trading: Trading,
        notifier: Callable[[], Notifier | None],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        signals_per_minute: int = SIGNALS_PER_MINUTE,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.trading = trading
        self._notifier = notifier
        self.now = now
        self.rate = FeedRateLimit(signals_per_minute)
        self.membership = Membership()
        # Whether a user may use the bot at all (ALLOWED_USER_IDS): a revoked user gets
        # nothing from a feed, whatever their follows say.
        self.allowed: Callable[[int], bool] = lambda _uid: True
        self._tasks: set[asyncio.Task[Any]] = set()
        self.last_fanout: FanOut | None = None

    @property
    def notifier(self) -> Notifier:
        n = self._notifier()
        if n is None:
            raise RuntimeError("no notifier attached")
        return n

    # --- feeds ------------------------------------------------------------------------

    async def feed_of_chat(self, chat_id: int) -> Feed | None:
        async with self.db.session() as s:
            return (await s.exec(select(Feed).where(Feed.chat_id == chat_id))).first()

    async def feed_by_name(self, name: str) -> Feed | None:
        async with self.db.session() as s:
            return (await s.exec(select(Feed).where(Feed.name == name.lower()))).first()

    async def set_feed(self, chat_id: int, title: str | None, user_id: int, on: bool,
                       name: str | None) -> str:
        """`/feed on [NAME]` / `/feed off` (the caller has checked the admin list)."""
        async with self.db.session() as s:
            feed = (await s.exec(select(Feed).where(Feed.chat_id == chat_id))).first()
            if not on:
                if feed is None or not feed.active:
                    return "This group is not a signal feed."
                feed.active = False
                s.add(feed)
                await s.commit()
                return (f"Feed <b>{html.escape(feed.name)}</b> is off: signals are no longer "
                        "read here. Followers keep their settings.")
            wanted = (name or (feed.name if feed else None) or _name_from(title, chat_id)).lower()
            other = (await s.exec(select(Feed).where(Feed.name == wanted))).first()
            if other is not None and other.chat_id != chat_id:
                raise UserError(f"The name <b>{html.escape(wanted)}</b> is taken by another "
                                "feed; choose another: /feed on NAME.")
            if feed is None:
                feed = Feed(chat_id=chat_id, name=wanted, title=title, created_by=user_id)
            feed.name, feed.title, feed.active = wanted, title, True
            s.add(feed)
            await s.commit()
        return (f"📡 This group is now the signal feed <b>{html.escape(wanted)}</b>.\n"
                f"Admins: post <code>/signal long BTC entry 60000 tp 62000 sl 59000</code> or a "
                f"signal in the usual shape. Members: send me <code>/follow {wanted} risk 1%"
                "</code> in a private chat.")

    # --- signals ----------------------------------------------------------------------

    async def post_signal(self, chat_id: int, message_id: int | None, user_id: int,
                          sig: P.Signal, *, source: str, text: str,
                          thread_id: int | None = None) -> Posted:
        """Store a signal as first posted; the card for the group. Starts no fan-out."""
        feed = await self.feed_of_chat(chat_id)
        if feed is None or not feed.active:
            raise UserError("This group is not a signal feed. An admin can turn it on: "
                            "/feed on NAME.")
        assert feed.id is not None
        wait = self.rate.take(feed.id)
        if wait:
            raise UserError(f"Too many signals: at most {self.rate.limit} a minute per feed. "
                            f"Try again in {max(1, round(wait))} s.")
        row = Signal(
            feed_id=feed.id, chat_id=chat_id, message_id=message_id, posted_by=user_id,
            symbol=sig.symbol, side=sig.side, entry_low=sig.entry_low,
            entry_high=sig.entry_high, sl=sig.sl, current_sl=sig.sl,
            tps=[str(t) for t in sig.tps], leverage=sig.leverage,
            risk_percent=sig.risk_percent, source=source, text=text[:4096],
            thread_id=thread_id,
        )
        async with self.db.session() as s:
            s.add(row)
            await s.commit()
            await s.refresh(row)
        assert row.id is not None
        return Posted(row.id, self.card_text(row, feed, sig),
                      [[button("📥 Follow", FollowSignal(row.id))]])

    @staticmethod
    def card_text(row: Signal, feed: Feed, sig: P.Signal) -> str:
        arrow = "🟢 LONG" if row.side == "long" else "🔴 SHORT"
        entry = (fmt.num(row.entry_low) if row.entry_low == row.entry_high
                 else f"{fmt.num(row.entry_low)} – {fmt.num(row.entry_high)}")
        lines = [f"<b>{arrow} {html.escape(row.symbol)}</b> · signal #{row.id} · "
                 f"{html.escape(feed.name)}",
                 f"Entry {entry}"]
        if sig.tps:
            lines.append("Targets " + ", ".join(fmt.num(t) for t in sig.tps))
        lines.append(f"Stop {fmt.num(row.sl)}")
        extra = []
        rr = risk_reward(sig)
        if rr is not None:
            extra.append(f"R:R {rr.quantize(Decimal('0.1'))}")
        if row.leverage is not None:
            extra.append(f"{fmt.num(row.leverage)}x")
        if row.risk_percent is not None:
            extra.append(f"risk {fmt.num(row.risk_percent)}%")
        if extra:
            lines.append(" · ".join(extra))
        lines.append("<i>Followers get a private preview to confirm; nothing is placed "
                     "without your press.</i>")
        return "\n".join(lines)

    async def attach_card(self, signal_id: int, message_id: int) -> None:
        async with self.db.session() as s:
            row = await s.get(Signal, signal_id)
            if row is not None:
                row.card_message_id = message_id
                s.add(row)
                await s.commit()

    async def record_edit(self, chat_id: int, message_id: int, text: str | None,
                          *, deleted: bool = False) -> bool:
        """An edit (or deletion) of a signal's group message: recorded, never applied."""
        async with self.db.session() as s:
            row = (await s.exec(select(Signal).where(
                Signal.chat_id == chat_id, Signal.message_id == message_id))).first()
            if row is None or row.id is None:
                return False
            s.add(SignalUpdate(signal_id=row.id, kind="deleted" if deleted else "edited",
                               text=(text or "")[:4096]))
            await s.commit()
        return True

    async def signal(self, signal_id: int) -> Signal | None:
        async with self.db.session() as s:
            return await s.get(Signal, signal_id)

    async def updates_of(self, signal_id: int) -> list[SignalUpdate]:
        async with self.db.session() as s:
            return list((await s.exec(select(SignalUpdate).where(
                SignalUpdate.signal_id == signal_id).order_by(col(SignalUpdate.id)))).all())

    # --- following ----------------------------------------------------------------------

    async def follow(self, user_id: int, f: P.Follow) -> tuple[str, Keyboard]:
        feed = await self.feed_by_name(f.feed)
        if feed is None or feed.id is None:
            raise UserError(f"No feed called <b>{html.escape(f.feed)}</b>. Its name is on "
                            "every signal card in the group.")
        await self.require_member(feed, user_id)
        async with self.db.session() as s:
            row = (await s.exec(select(Follow).where(
                Follow.user_id == user_id, Follow.feed_id == feed.id))).first()
            if row is None:
                row = Follow(user_id=user_id, feed_id=feed.id, mode=f.mode, value=f.value)
            row.mode, row.value, row.max_usd, row.active = f.mode, f.value, f.max_usd, True
            if f.auto is not None:
                row.auto = f.auto
            s.add(row)
            await s.commit()
            await s.refresh(row)
        acc = await self.accounts.active(user_id)
        lines = [f"✅ Following <b>{html.escape(feed.name)}</b>: {_sizing_text(row)}.",
                 "Each new signal comes here as a preview; nothing is placed until you "
                 "press Confirm."]
        if acc is None:
            lines.append("⚠️ You have no account connected yet: /connect testnet (or "
                         "/connect paper to practise).")
        elif acc.read_only:
            lines.append(f"⚠️ Your {acc.network} key is read-only: connect a key with Order "
                         "permission to trade signals.")
        lines.append(_auto_text(row.auto))
        return "\n".join(lines), _auto_buttons(feed.id, row.auto)

    async def set_auto(self, user_id: int, feed_id: int, on: bool) -> tuple[str, Keyboard]:
        async with self.db.session() as s:
            row = (await s.exec(select(Follow).where(
                Follow.user_id == user_id, Follow.feed_id == feed_id,
                col(Follow.active).is_(True)))).first()
            if row is None:
                raise UserError("You don't follow this feed any more.")
            row.auto = on
            s.add(row)
            await s.commit()
            feed = await s.get(Feed, feed_id)
        name = html.escape(feed.name if feed else "?")
        return (f"<b>{name}</b>: {_sizing_text(row)}.\n{_auto_text(on)}",
                _auto_buttons(feed_id, on))

    async def unfollow(self, user_id: int, name: str) -> str:
        feed = await self.feed_by_name(name)
        async with self.db.session() as s:
            row = None if feed is None else (await s.exec(select(Follow).where(
                Follow.user_id == user_id, Follow.feed_id == feed.id))).first()
            if row is None or not row.active:
                raise UserError(f"You don't follow <b>{html.escape(name)}</b>.")
            row.active = False
            s.add(row)
            await s.commit()
        return (f"Unfollowed <b>{html.escape(name)}</b>. Open positions and their stops stay "
                "as they are.")

    async def list_follows(self, user_id: int) -> str:
        async with self.db.session() as s:
            rows = (await s.exec(select(Follow, Feed).join(
                Feed, col(Feed.id) == col(Follow.feed_id)).where(
                Follow.user_id == user_id, col(Follow.active).is_(True)))).all()
        if not rows:
            return "You follow no feed. In a private chat: /follow NAME risk 1%."
        return "<b>Feeds you follow</b>\n" + "\n".join(
            f"• {html.escape(feed.name)}: {_sizing_text(f)}" + (" · auto" if f.auto else "")
            for f, feed in rows)

    # --- membership -------------------------------------------------------------------

    async def require_member(self, feed: Feed, user_id: int) -> None:
        """Signals are the group's: only its members follow, preview or receive them."""
        if not self.allowed(user_id) or not await self.membership.is_member(feed.chat_id,
                                                                            user_id):
            raise NotMember(f"Only members of the group behind <b>{html.escape(feed.name)}"
                            "</b> can follow its signals: join the group first.")

    async def require_member_of_signal(self, user_id: int, signal_id: int) -> None:
        """For a Follow press: refuse an outsider before anything is priced or queued
        (a getChatMember, usually cached, so the press can still be answered at once)."""
        async with self.db.session() as s:
            sig = await s.get(Signal, signal_id)
            feed = await s.get(Feed, sig.feed_id) if sig else None
        if feed is not None:
            await self.require_member(feed, user_id)

    async def member_left(self, chat_id: int, user_id: int) -> int:
        """A member left or was removed from a feed's group: their follow of it ends, and
        they are told once, in private. How many follows ended (0 or 1)."""
        self.membership.note(chat_id, user_id, False)
        async with self.db.session() as s:
            feed = (await s.exec(select(Feed).where(Feed.chat_id == chat_id))).first()
            row = None if feed is None else (await s.exec(select(Follow).where(
                Follow.user_id == user_id, Follow.feed_id == feed.id,
                col(Follow.active).is_(True)))).first()
            if feed is None or row is None:
                return 0
            row.active = False
            s.add(row)
            await s.commit()
        if self.allowed(user_id):
            name = html.escape(feed.name)
            await self._send(user_id, f"📡 You are no longer in the group behind <b>{name}</b>, "
                                      "so its signals stop here. Open positions and their stops "
                                      f"stay as they are. Rejoin the group, then /follow {name} "
                                      "to start again.")
        return 1

    # --- previews -----------------------------------------------------------------------

    async def preview_for(self, user_id: int, signal_id: int) -> Card:
        """The member's private preview for a signal: sized, then built by Trading."""
        async with self.db.session() as s:
            sig = await s.get(Signal, signal_id)
            feed = await s.get(Feed, sig.feed_id) if sig else None
            follow = None if feed is None else (await s.exec(select(Follow).where(
                Follow.user_id == user_id, Follow.feed_id == feed.id,
                col(Follow.active).is_(True)))).first()
            existing = (await s.exec(select(FollowerOrder).where(
                FollowerOrder.signal_id == signal_id,
                FollowerOrder.user_id == user_id))).first()
            intent = (await s.get(OrderIntent, existing.intent_id)
                      if existing and existing.intent_id else None)
        if sig is None or feed is None:
            raise UserError("This signal no longer exists.")
        name = html.escape(feed.name)
        await self.require_member(feed, user_id)
        if follow is None:
            raise UserError(f"To copy signals from <b>{name}</b>, first tell me how big: "
                            f"<code>/follow {name} risk 1%</code> (or <code>size $200</code>, "
                            "or <code>size 100</code> contracts). Then press Follow again.")
        if sig.state != "open":
            raise UserError(f"Signal #{signal_id} is closed.")
        if intent is not None and intent.state in WAITING and intent.expires_at > self.now():
            raise UserError(f"Your preview for signal #{signal_id} is already in our chat.")
        if intent is not None and intent.state not in (*WAITING, "cancelled", "expired",
                                                                 "failed"):
            raise UserError(f"You already followed signal #{signal_id}.")
        acc = await self.accounts.require_active(user_id, trading=True)
        ex = await self.accounts.exchange(user_id, acc.network)
        try:
            inst = await ex.instrument(sig.symbol)
            ticker = await ex.ticker(sig.symbol)
        except ExchangeError as e:
            raise UserError(f"{html.escape(sig.symbol)} is not available on your "
                            f"{acc.network} account ({html.escape(e.message)}).") from e
        long = sig.side == "long"
        ref = (ticker.ask if long else ticker.bid) or ticker.last or ticker.mark
        if ref is None:
            raise UserError(f"No price for {sig.symbol} yet; try again in a moment.")
        if (ref <= sig.current_sl) if long else (ref >= sig.current_sl):
            raise UserError(f"{sig.symbol} is already beyond the stop of signal #{signal_id} "
                            f"({fmt.num(ref)}); not entering.")
        # Inside (or better than) the zone: at market. Outside: a limit at its near edge.
        in_zone = ref <= sig.entry_high if long else ref >= sig.entry_low
        limit = None if in_zone else (sig.entry_high if long else sig.entry_low)
        entry = limit if limit is not None else ref
        margins = {m.currency: m for m in await ex.margins()}
        m = margins.get(inst.settl_currency)
        xbt = None
        if inst.kind == "quanto" or (follow.mode != "contracts" and inst.kind != "inverse"
                                     and inst.settl_currency != "USDt"):
            xbt = (await ex.ticker("XBTUSD")).last
        raw = size_contracts(inst, follow, entry, sig.current_sl,
                             m.available_margin if m else 0, xbt)
        qty = _lots(inst, raw)
        order = P.Order(
            side="buy" if long else "sell", size=SizeSpec("contracts", qty),
            symbol=sig.symbol, order_type="market" if limit is None else "limit",
            price=limit, tps=tuple(Decimal(t) for t in sig.tps), sl=sig.current_sl,
            leverage=sig.leverage,
        )
        card = await self.trading.preview_order(user_id, user_id, order, sized=True)
        assert card.intent_id is not None
        async with self.db.session() as s:
            stored = await s.get(OrderIntent, card.intent_id)
            assert stored is not None
            row = (await s.exec(select(FollowerOrder).where(
                FollowerOrder.signal_id == signal_id,
                FollowerOrder.user_id == user_id))).first()
            if row is None:
                row = FollowerOrder(signal_id=signal_id, user_id=user_id,
                                    cl_ord_id=stored.cl_ord_id, network=acc.network)
            row.intent_id, row.cl_ord_id, row.network = card.intent_id, stored.cl_ord_id, \
                acc.network
            s.add(row)
            try:
                await s.commit()
            except IntegrityError:
                # A Follow press raced the fan-out: the other preview stands, this one goes.
                await self.trading.press(user_id, "x", card.intent_id)
                raise UserError(f"Your preview for signal #{signal_id} is already in our "
                                "chat.") from None
        head = (f"📡 <b>{name}</b> · signal #{signal_id} · {sig.side} {sig.symbol}\n"
                f"Sized by your follow: {_sizing_text(follow)}")
        if follow.mode == "risk":
            loss = abs(contracts.pnl(inst.kind, qty, entry, sig.current_sl, inst.multiplier))
            head += f" → loss at the stop ≈ {fmt.money(loss, inst.settl_currency)}"
        return Card(card.intent_id, head + "\n" + card.text, card.buttons, card.alert)

    async def deliver_preview(self, user_id: int, signal_id: int) -> Sent | None:
        """Build and send one member's preview; a refusal is sent instead, with its reason."""
        try:
            card = await self.preview_for(user_id, signal_id)
        except UserError as e:
            await self._send(user_id, f"Signal #{signal_id}: {e}")
            raise
        sent = await self._send(user_id, card.text, card.buttons)
        if sent is not None and card.intent_id is not None and card.buttons:
            await self.trading.attach_message(card.intent_id, sent.message_id)
        return sent

    async def _send(self, chat_id: int, text: str, buttons: Keyboard | None = None,
                    kind: str = "signal") -> Sent | None:
        for attempt in range(6):
            try:
                return await self.notifier.send(chat_id, text, buttons=buttons, kind=kind)
            except Exception as e:  # a 429 from a notifier without a queue
                wait = getattr(e, "retry_after", None) or getattr(e, "seconds", None)
                if wait is None or attempt == 5:
                    raise
                delay = wait.total_seconds() if hasattr(wait, "total_seconds") else float(wait)
                await asyncio.sleep(delay)
        return None

    def start_fanout(self, signal_id: int) -> asyncio.Task[FanOut]:
        task = asyncio.create_task(self.fanout(signal_id), name=f"feed-fanout-{signal_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def fanout(self, signal_id: int) -> FanOut:
        """A preview to every follower; sizing runs a few at a time, sending is left to
        the notifier's flood control so slow sends never hold up sizing."""
        started = time.monotonic()
        async with self.db.session() as s:
            sig = await s.get(Signal, signal_id)
            users = [] if sig is None else list((await s.exec(select(Follow.user_id).where(
                Follow.feed_id == sig.feed_id, col(Follow.active).is_(True)))).all())
        report = FanOut()
        gate = asyncio.Semaphore(BUILD_CONCURRENCY)

        async def one(uid: int) -> None:
            if not self.allowed(uid):
                return  # revoked: not even a refusal goes to them
            try:
                async with gate:
                    card = await self.preview_for(uid, signal_id)
            except NotMember:
                if sig is not None:
                    await self.member_left(sig.chat_id, uid)
                return
            except UserError as e:
                sent = await self._send(uid, f"Signal #{signal_id}: {e}")
                report.told += 1 if sent else 0
                report.unreachable += 0 if sent else 1
                return
            sent = await self._send(uid, card.text, card.buttons)
            if sent is None:
                report.unreachable += 1
                if card.intent_id is not None:
                    await self.trading.press(uid, "x", card.intent_id)
                return
            report.previews += 1
            if card.intent_id is not None and card.buttons:
                await self.trading.attach_message(card.intent_id, sent.message_id)

        results = await asyncio.gather(*(one(u) for u in users), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                log.warning("feed preview failed: %r", r)
        report.seconds = time.monotonic() - started
        self.last_fanout = report
        return report

    async def drain(self) -> None:
        """Wait for every background delivery started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- updates ------------------------------------------------------------------------

    async def update_signal(self, chat_id: int, user_id: int,
                            u: P.SignalClose | P.SignalMoveSl) -> str:
        """Record a close or stop move (the caller checked the admin list); followers with
        an open position from the signal get it as a card (see `start_update`)."""
        feed = await self.feed_of_chat(chat_id)
        async with self.db.session() as s:
            sig = await s.get(Signal, u.signal_id)
            if sig is None or feed is None or sig.feed_id != feed.id:
                raise UserError(f"No signal #{u.signal_id} in this feed.")
            if sig.state != "open":
                raise UserError(f"Signal #{u.signal_id} is already closed.")
            if isinstance(u, P.SignalMoveSl):
                entry_far = sig.entry_high if sig.side == "long" else sig.entry_low
                tps = [Decimal(t) for t in sig.tps]
                if tps and (u.sl >= tps[-1] if sig.side == "long" else u.sl <= tps[-1]):
                    raise UserError("The new stop is beyond the last target.")
                old = sig.current_sl
                sig.current_sl = u.sl
                s.add(SignalUpdate(signal_id=u.signal_id, kind="move_sl", price=u.sl,
                                   by_user=user_id))
                text = (f"Signal #{u.signal_id} {sig.symbol}: stop {fmt.num(old)} → "
                        f"{fmt.num(u.sl)}" + (" (break-even)" if u.sl == entry_far else ""))
            else:
                sig.state = "closed"
                sig.closed_at = self.now()
                s.add(SignalUpdate(signal_id=u.signal_id, kind="close", by_user=user_id))
                text = f"Signal #{u.signal_id} {sig.symbol}: closed."
            s.add(sig)
            await s.commit()
        # On its own line: "stop 53,000 → 52,500" must not run into the next sentence.
        return text + "\nFollowers with an open position get it to confirm."

    def start_update(self, signal_id: int, kind: Literal["close", "move_sl"],
                     price: Decimal | None, old_sl: Decimal | None = None) -> asyncio.Task[int]:
        task = asyncio.create_task(self.push_update(signal_id, kind, price, old_sl))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def push_update(self, signal_id: int, kind: Literal["close", "move_sl"],
                          price: Decimal | None, old_sl: Decimal | None = None) -> int:
        """A card for each follower with an open position from the signal; an `auto`
        follow confirms it at once when it only reduces risk. Returns the cards sent."""
        async with self.db.session() as s:
            sig = await s.get(Signal, signal_id)
            rows = list((await s.exec(select(FollowerOrder, Follow).join(
                Follow, (col(Follow.user_id) == col(FollowerOrder.user_id))
                & (col(Follow.feed_id) == (sig.feed_id if sig else -1))).where(
                FollowerOrder.signal_id == signal_id))).all())
        if sig is None:
            return 0
        count = 0
        for fo, follow in rows:
            try:
                # A revoked user or one who left the group gets no more of its news.
                if not self.allowed(fo.user_id) or not await self.membership.is_member(
                        sig.chat_id, fo.user_id):
                    continue
            except Exception:  # Telegram could not say: skip rather than leak
                log.warning("membership of user %s in chat %s unknown; update skipped",
                            fo.user_id, sig.chat_id, exc_info=True)
                continue
            try:
                if await self._update_one(sig, fo, follow, kind, price, old_sl):
                    count += 1
            except (UserError, ExchangeError) as e:
                log.info("signal update for user %s skipped: %s", fo.user_id, e)
        return count

    async def _update_one(self, sig: Signal, fo: FollowerOrder, follow: Follow,
                          kind: str, price: Decimal | None, old_sl: Decimal | None) -> bool:
        async with self.db.session() as s:
            intent = await s.get(OrderIntent, fo.intent_id) if fo.intent_id else None
        if intent is None or intent.state != PLACED:
            return False
        ex = await self.accounts.exchange(fo.user_id, fo.network)
        long = sig.side == "long"
        pos = next((p for p in await ex.positions() if p.symbol == sig.symbol), None)
        if pos is None or pos.current_qty == 0 or (pos.current_qty > 0) != long:
            return False
        head = f"📡 Signal #{sig.id} update · {html.escape(sig.symbol)}"
        if kind == "close":
            qty = min(abs(pos.current_qty), Decimal(intent.intent.get("qty") or 0))
            card = await self.trading.preview_close(
                fo.user_id, fo.user_id,
                P.Close(symbol=sig.symbol, size=SizeSpec("contracts", qty)))
            reduces = True
            async with self.db.session() as s:
                row = await s.get(FollowerOrder, fo.id)
                closing = await s.get(OrderIntent, card.intent_id)
                if row is not None and closing is not None:
                    row.related = [*row.related, closing.cl_ord_id]
                    s.add(row)
                    await s.commit()
            note = "The feed closed this signal: close your position from it."
        else:
            assert price is not None
            stop = await ex.order_by_cl_ord_id(f"{fo.cl_ord_id}:sl")
            if stop is None or not stop.is_open:
                return False
            inst = await ex.instrument(sig.symbol)
            new = contracts.round_price(inst, price).value
            current = stop.stop_px or old_sl or sig.sl
            # Toward the price is less risk: up for a long, down for a short.
            reduces = new > current if long else new < current
            summary = f"MOVE STOP {sig.symbol} {fmt.num(current)} → {fmt.num(new)} · {fo.network}"
            plan = Plan(kind="amend_stop", network=fo.network, symbol=sig.symbol,
                        order_ids=(f"{fo.cl_ord_id}:sl",), stop_px=new, summary=summary)
            lines = [f"<b>{html.escape(summary)}</b>",
                     f"Your reduce-only stop for {fmt.num(abs(pos.current_qty))} contracts "
                     "is amended; nothing else changes."]
            if not reduces:
                lines.append("⚠️ This moves the stop away from the price: more risk.")
            card = await self.trading.preview_plan(fo.user_id, fo.user_id, plan, lines)
            note = "The feed moved the stop."
        assert card.intent_id is not None
        if follow.auto and reduces:
            done = await self.trading.press(fo.user_id, "c", card.intent_id)
            await self._send(fo.user_id, f"{head}\n🤖 Auto mode applied it (it only reduces "
                                         f"risk):\n{done.text}")
            return True
        sent = await self._send(fo.user_id, f"{head}\n{note}\n{card.text}", card.buttons)
        if sent is not None and card.buttons:
            await self.trading.attach_message(card.intent_id, sent.message_id)
        return sent is not None

    # --- exits for limit entries ------------------------------------------------------------

    async def sweep_exits(self) -> int:
        """Limit entries that have filled since: place their stop and targets. Trading
        does this at once for a market fill; a limit fills later (call this on a timer)."""
        async with self.db.session() as s:
            rows = list((await s.exec(select(FollowerOrder, OrderIntent).join(
                OrderIntent, col(OrderIntent.id) == col(FollowerOrder.intent_id)).where(
                OrderIntent.state == PLACED))).all())
        placed = 0
        for fo, intent in rows:
            if intent.intent.get("exits_placed") or intent.intent.get("status") == "Filled":
                continue
            try:
                ex = await self.accounts.exchange(fo.user_id, fo.network)
                order = await ex.order_by_cl_ord_id(fo.cl_ord_id)
                if order is not None and order.ord_status == "Filled" and intent.id is not None:
                    await self.trading.place_exits(intent.id)
                    placed += 1
            except (ExchangeError, UserError) as e:
                log.info("exits for %s not placed yet: %s", fo.cl_ord_id, e)
        return placed

    # --- the record -----------------------------------------------------------------------

    async def record(self, feed_id: int, *, user_id: int | None = None) -> Record:
        """The feed's record from followers' fills (one member's trades when user_id)."""
        async with self.db.session() as s:
            sigs = {x.id: x for x in (await s.exec(select(Signal).where(
                Signal.feed_id == feed_id))).all()}
            q = select(FollowerOrder).where(col(FollowerOrder.signal_id).in_(list(sigs)))
            if user_id is not None:
                q = q.where(FollowerOrder.user_id == user_id)
            orders = list((await s.exec(q)).all())
        rec = Record(posted=len(sigs))
        followed: set[int] = set()
        by_user: dict[tuple[int, str], list[FollowerOrder]] = {}
        for fo in orders:
            by_user.setdefault((fo.user_id, fo.network), []).append(fo)
        for (uid, network), fos in by_user.items():
            try:
                ex = await self.accounts.exchange(uid, network)
                fills = await self._fills(ex, {sigs[f.signal_id].symbol for f in fos})
            except (ExchangeError, UserError) as e:
                log.info("no fills for user %s: %s", uid, e)
                continue
            for fo in fos:
                sig = sigs[fo.signal_id]
                inst = await ex.instrument(sig.symbol)
                t = trade_from_fills(sig, inst, uid, fo.cl_ord_id, fo.related,
                                     fills.get(sig.symbol, []))
                if t is None:
                    continue
                followed.add(fo.signal_id)
                rec.entries += 1
                if isinstance(t, Trade):
                    rec.trades.append(t)
        rec.followed = len(followed)
        return rec

    @staticmethod
    async def _fills(ex: Exchange, symbols: set[str]) -> dict[str, list[Execution]]:
        return {sym: await ex.executions(sym, count=500) for sym in sorted(symbols)}

    async def stats_text(self, chat_id: int | None, user_id: int | None,
                         name: str | None = None) -> str:
        """`/feedstats`: the group's feed (aggregates only), or in private every feed the
        member follows with their own trades beside it; `name`: one feed's public record
        (aggregates only), so a member can look before following."""
        if name is not None:
            named = await self.feed_by_name(name)
            if named is None or named.id is None:
                raise UserError(f"No feed called <b>{html.escape(name)}</b>.")
            return self._stats_block(named, await self.record(named.id))
        if chat_id is not None:
            feed = await self.feed_of_chat(chat_id)
            if feed is None or feed.id is None:
                raise UserError("This group is not a signal feed.")
            return self._stats_block(feed, await self.record(feed.id))
        assert user_id is not None
        async with self.db.session() as s:
            feeds = (await s.exec(select(Feed).join(
                Follow, col(Follow.feed_id) == col(Feed.id)).where(
                Follow.user_id == user_id))).all()
        if not feeds:
            return "You follow no feed yet: /follow NAME risk 1%."
        blocks = []
        for feed in feeds:
            assert feed.id is not None
            block = self._stats_block(feed, await self.record(feed.id))
            mine = await self.record(feed.id, user_id=user_id)
            block += "\n<b>Your trades</b>: " + (
                "\n".join(mine.summary()) if mine.trades else "none closed yet.")
            blocks.append(block)
        return "\n\n".join(blocks)

    @staticmethod
    def _stats_block(feed: Feed, rec: Record) -> str:
        lines = [f"📊 <b>{html.escape(feed.name)}</b> — the record from followers' fills",
                 f"Signals posted: {rec.posted} · followed: {rec.followed} · "
                 f"member entries filled: {rec.entries}"]
        lines += rec.summary(money=False)
        if rec.trades:
            lines.append("<i>No amounts here, so no member's result or size can be read from "
                         "the record; each member sees their own with /feedstats in a private "
                         "chat.</i>")
        return "\n".join(lines)


def _name_from(title: str | None, chat_id: int) -> str:
    # ASCII only: "Ｔｒａｄｅｒｓ", "Тraders" (Cyrillic Т) or "x²" would make names that look
    # like another feed's, or that /follow (ASCII letters and digits) cannot type.
    base = "".join(c for c in (title or "").lower() if c.isascii() and c.isalnum())[:24]
    return base or f"feed{abs(chat_id) % 100000}"


def _sizing_text(f: Follow) -> str:
    if f.mode == "risk":
        cap = f" (max ${fmt.num(f.max_usd)})" if f.max_usd is not None else ""
        return f"risk {fmt.num(f.value)}% of available margin per signal{cap}"
    if f.mode == "usd":
        return f"${fmt.num(f.value)} per signal"
    return f"{fmt.num(f.value)} contracts per signal"


def _auto_text(on: bool) -> str:
    return ("🤖 Auto mode is <b>on</b>: stop moves toward the price and closes from the feed "
            "are applied without a press (never new or bigger positions)." if on else
            "Updates from the feed (stop moves, closes) come to you to confirm.")


def _auto_buttons(feed_id: int, on: bool) -> Keyboard:
    label = "Turn auto mode off" if on else "🤖 Apply risk-reducing updates automatically"
    return [[button(label, AutoMode(feed_id, not on))]]


def feeds_of(services: Any) -> Feeds:
    """The feeds service of a `Services` container, built on first use."""
    feeds = services.extras.get("feeds")
    if feeds is None:
        feeds = Feeds(services.db, services.accounts, services.trading,
                      lambda: services.notifier)
        feeds.allowed = services.is_allowed
        services.extras["feeds"] = feeds
    assert isinstance(feeds, Feeds)
    return feeds
