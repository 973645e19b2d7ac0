"""Feeds, signals and follows in the database: what /feed, /signal, /follow and a
member leaving change (the fan-out and the record build on it, bot/feeds/service.py)."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from bot import fmt
from bot import parse as P
from bot.accounts import Accounts
from bot.buttons import AutoMode, FollowSignal, button
from bot.db.engine import Database
from bot.db.models import Feed, Follow, Signal, SignalUpdate
from bot.errors import UserError
from bot.feeds.members import SIGNALS_PER_MINUTE, FeedRateLimit, Membership, NotMember
from bot.notify import Keyboard, Notifier, Sent
from bot.parse.signals import risk_reward
from bot.trading import Trading

log = logging.getLogger(__name__)



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


class FeedBook:
    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        trading: Trading,
        notifier: Notifier,
        *,
        allowed: Callable[[int], bool] = lambda _uid: True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        signals_per_minute: int = SIGNALS_PER_MINUTE,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.trading = trading
        self.notifier = notifier
        self.now = now
        self.rate = FeedRateLimit(signals_per_minute)
        self.membership = Membership()
        # Whether a user may use the bot at all (ALLOWED_USER_IDS): a revoked user gets
        # nothing from a feed, whatever their follows say.
        self.allowed = allowed
        self._tasks: set[asyncio.Task[Any]] = set()
        self.last_fanout: FanOut | None = None

    async def move_chat(self, old: int, new: int) -> int:
        """A group became a supergroup: its feed and signals follow it; rows moved."""
        moved = 0
        async with self.db.session() as s:
            for model in (Feed, Signal):
                result = await s.exec(update(model).where(col(model.chat_id) == old)
                                      .values(chat_id=new))
                moved += int(result.rowcount or 0)
            await s.commit()
        return moved

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
        lines = [f"✅ Following <b>{html.escape(feed.name)}</b>: {sizing_text(row)}.",
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
        return (f"<b>{name}</b>: {sizing_text(row)}.\n{_auto_text(on)}",
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
            f"• {html.escape(feed.name)}: {sizing_text(f)}" + (" · auto" if f.auto else "")
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


def _name_from(title: str | None, chat_id: int) -> str:
    # ASCII only: "Ｔｒａｄｅｒｓ", "Тraders" (Cyrillic Т) or "x²" would make names that look
    # like another feed's, or that /follow (ASCII letters and digits) cannot type.
    base = "".join(c for c in (title or "").lower() if c.isascii() and c.isalnum())[:24]
    return base or f"feed{abs(chat_id) % 100000}"


def sizing_text(f: Follow) -> str:
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
