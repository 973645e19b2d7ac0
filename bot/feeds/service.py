"""The feeds service: previews sized for every follower, updates pushed to their orders,
exits for limit entries, and the record."""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot import fmt
from bot import parse as P
from bot.db.models import Feed, Follow, FollowerOrder, OrderCard, Signal, SignalUpdate
from bot.errors import ExchangeError, UserError
from bot.exchange import contracts
from bot.exchange.types import Exchange, Execution
from bot.feeds.book import (
    FanOut,
    FeedBook,
    sizing_text,
)
from bot.feeds.members import NotMember
from bot.feeds.record import Record, Trade, trade_from_fills
from bot.feeds.sizing import size_contracts, whole_lots
from bot.notify import Sent
from bot.parse.values import SizeSpec
from bot.trading import PLACED, WAITING, Card, Plan, exit_cl_ord_id

log = logging.getLogger(__name__)

BUILD_CONCURRENCY = 16  # previews being sized at once (exchange calls, database writes)
QUOTE_TTL = 1.0  # seconds a fan-out reuses a public quote (ticker) for the next follower


class _FanOutReads:
    """What all followers' previews of one signal share: read once per fan-out, not once
    per follower (a thousand followers made it thousands of queries and HTTP calls)."""

    def __init__(self, sig: Signal, feed: Feed, follows: dict[int, Follow],
                 cards: dict[int, OrderCard]) -> None:
        self.sig, self.feed, self.follows, self.cards = sig, feed, follows, cards
        # (network, what, symbol) -> (when, the call under way or done). Public data: any
        # account's client of that network gets the same answer. Contract specs hold for
        # the fan-out; a ticker is asked again after QUOTE_TTL, so sizing uses today's
        # price even when the fan-out takes half a minute. Failures are not kept.
        self._quotes: dict[tuple[str, str, str], tuple[float, asyncio.Future[Any]]] = {}

    async def quote(self, network: str, what: str, symbol: str,
                    ask: Callable[[str], Awaitable[Any]]) -> Any:
        key = (network, what, symbol)
        now = time.monotonic()
        hit = self._quotes.get(key)
        if hit is None or (what == "ticker" and now - hit[0] > QUOTE_TTL) or (
                hit[1].done() and hit[1].exception() is not None):
            hit = (now, asyncio.ensure_future(ask(symbol)))
            self._quotes[key] = hit
        return await asyncio.shield(hit[1])


class Feeds(FeedBook):
    # --- previews -----------------------------------------------------------------------

    async def preview_for(self, user_id: int, signal_id: int,
                          shared: _FanOutReads | None = None) -> Card:
        """The member's private preview for a signal: sized, then built by Trading.
        `shared`: what a fan-out read once for all followers (the signal, the follows, the
        public quotes) instead of once per follower."""
        sig: Signal | None
        feed: Feed | None
        if shared is not None:
            sig, feed = shared.sig, shared.feed
            follow = shared.follows.get(user_id)
            card_row = shared.cards.get(user_id)
        else:
            async with self.db.session() as s:
                sig = await s.get(Signal, signal_id)
                feed = await s.get(Feed, sig.feed_id) if sig else None
                follow = None if feed is None else (await s.exec(select(Follow).where(
                    Follow.user_id == user_id, Follow.feed_id == feed.id,
                    col(Follow.active).is_(True)))).first()
                existing = (await s.exec(select(FollowerOrder).where(
                    FollowerOrder.signal_id == signal_id,
                    FollowerOrder.user_id == user_id))).first()
                card_row = (await s.get(OrderCard, existing.intent_id)
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
        if card_row is not None and card_row.state in WAITING and card_row.expires_at > self.now():
            raise UserError(f"Your preview for signal #{signal_id} is already in our chat.")
        if card_row is not None and card_row.state not in (*WAITING, "cancelled", "expired",
                                                                 "failed"):
            raise UserError(f"You already followed signal #{signal_id}.")
        acc = await self.accounts.require_active(user_id, trading=True)
        ex = await self.accounts.exchange(user_id, acc.network)
        try:
            if shared is not None:
                inst = await shared.quote(acc.network, "instrument", sig.symbol,
                                          ex.instrument)
                ticker = await shared.quote(acc.network, "ticker", sig.symbol, ex.ticker)
            else:
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
            xbt = (await (shared.quote(acc.network, "ticker", "XBTUSD", ex.ticker)
                          if shared is not None else ex.ticker("XBTUSD"))).last
        raw = size_contracts(inst, follow, entry, sig.current_sl,
                             m.available_margin if m else 0, xbt)
        qty = whole_lots(inst, raw)
        order = P.Order(
            side="Buy" if long else "Sell", size=SizeSpec("contracts", qty),
            symbol=sig.symbol, order_type="market" if limit is None else "limit",
            price=limit, tps=tuple(Decimal(t) for t in sig.tps), sl=sig.current_sl,
            leverage=sig.leverage,
        )
        card = await self.trading.preview_order(user_id, user_id, order, sized=True)
        assert card.card_id is not None
        async with self.db.session() as s:
            stored = await s.get(OrderCard, card.card_id)
            assert stored is not None
            row = (await s.exec(select(FollowerOrder).where(
                FollowerOrder.signal_id == signal_id,
                FollowerOrder.user_id == user_id))).first()
            if row is None:
                row = FollowerOrder(signal_id=signal_id, user_id=user_id,
                                    cl_ord_id=stored.cl_ord_id, network=acc.network)
            row.intent_id, row.cl_ord_id, row.network = card.card_id, stored.cl_ord_id, \
                acc.network
            s.add(row)
            try:
                await s.commit()
            except IntegrityError:
                # A Follow press raced the fan-out: the other preview stands, this one goes.
                await self.trading.press(user_id, "x", card.card_id)
                raise UserError(f"Your preview for signal #{signal_id} is already in our "
                                "chat.") from None
        head = (f"📡 <b>{name}</b> · signal #{signal_id} · {sig.side} {sig.symbol}\n"
                f"Sized by your follow: {sizing_text(follow)}")
        if follow.mode == "risk":
            loss = abs(contracts.pnl(inst.kind, qty, entry, sig.current_sl, inst.multiplier))
            head += f" → loss at the stop ≈ {fmt.money(loss, inst.settl_currency)}"
        return Card(card.card_id, head + "\n" + card.text, card.buttons, card.alert)

    async def deliver_preview(self, user_id: int, signal_id: int) -> Sent | None:
        """Build and send one member's preview; a refusal is sent instead, with its reason."""
        try:
            card = await self.preview_for(user_id, signal_id)
        except UserError as e:
            await self._send(user_id, f"Signal #{signal_id}: {e}")
            raise
        sent = await self._send(user_id, card.text, card.buttons)
        if sent is not None and card.card_id is not None and card.buttons:
            await self.trading.attach_message(card.card_id, sent.message_id)
        return sent

    def start_fanout(self, signal_id: int) -> asyncio.Task[FanOut]:
        task = asyncio.create_task(self.fanout(signal_id), name=f"feed-fanout-{signal_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def fanout(self, signal_id: int) -> FanOut:
        """A preview to every follower; sizing runs a few at a time, sending is left to
        the notifier's flood control so slow sends never hold up sizing."""
        started = time.monotonic()
        shared = None
        async with self.db.session() as s:
            sig = await s.get(Signal, signal_id)
            feed = await s.get(Feed, sig.feed_id) if sig else None
            follows = [] if sig is None else list((await s.exec(select(Follow).where(
                Follow.feed_id == sig.feed_id, col(Follow.active).is_(True)))).all())
            if sig is not None and feed is not None:
                # Previews already made for this signal (a Follow press before the fan-out).
                cards = {fo.user_id: card for fo, card in (await s.exec(
                    select(FollowerOrder, OrderCard).join(
                        OrderCard, col(OrderCard.id) == col(FollowerOrder.intent_id)).where(
                        FollowerOrder.signal_id == signal_id))).all()}
                shared = _FanOutReads(sig, feed, {f.user_id: f for f in follows}, cards)
        users = [f.user_id for f in follows]
        report = FanOut()
        gate = asyncio.Semaphore(BUILD_CONCURRENCY)

        async def one(uid: int) -> None:
            if not self.allowed(uid):
                return  # revoked: not even a refusal goes to them
            try:
                async with gate:
                    card = await self.preview_for(uid, signal_id, shared)
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
                if card.card_id is not None:
                    await self.trading.press(uid, "x", card.card_id)
                return
            report.previews += 1
            if card.card_id is not None and card.buttons:
                await self.trading.attach_message(card.card_id, sent.message_id)

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
            card_row = await s.get(OrderCard, fo.intent_id) if fo.intent_id else None
        if card_row is None or card_row.state != PLACED:
            return False
        ex = await self.accounts.exchange(fo.user_id, fo.network)
        long = sig.side == "long"
        pos = next((p for p in await ex.positions() if p.symbol == sig.symbol), None)
        if pos is None or pos.current_qty == 0 or (pos.current_qty > 0) != long:
            return False
        head = f"📡 Signal #{sig.id} update · {html.escape(sig.symbol)}"
        if kind == "close":
            qty = min(abs(pos.current_qty), Decimal(card_row.intent.get("qty") or 0))
            card = await self.trading.preview_close(
                fo.user_id, fo.user_id,
                P.Close(symbol=sig.symbol, size=SizeSpec("contracts", qty)))
            reduces = True
            async with self.db.session() as s:
                row = await s.get(FollowerOrder, fo.id)
                closing = await s.get(OrderCard, card.card_id)
                if row is not None and closing is not None:
                    row.related = [*row.related, closing.cl_ord_id]
                    s.add(row)
                    await s.commit()
            note = "The feed closed this signal: close your position from it."
        else:
            assert price is not None
            stop_cl_ord_id = exit_cl_ord_id(fo.cl_ord_id, "sl")
            stop = await ex.order_by_cl_ord_id(stop_cl_ord_id)
            if stop is None or not stop.is_open:
                return False
            inst = await ex.instrument(sig.symbol)
            new = contracts.round_price(inst, price).value
            current = stop.stop_px or old_sl or sig.sl
            # Toward the price is less risk: up for a long, down for a short.
            reduces = new > current if long else new < current
            summary = f"MOVE STOP {sig.symbol} {fmt.num(current)} → {fmt.num(new)} · {fo.network}"
            plan = Plan(kind="amend_stop", network=fo.network, symbol=sig.symbol,
                        order_ids=(stop_cl_ord_id,), stop_px=new, summary=summary)
            lines = [f"<b>{html.escape(summary)}</b>",
                     f"Your reduce-only stop for {fmt.num(abs(pos.current_qty))} contracts "
                     "is amended; nothing else changes."]
            if not reduces:
                lines.append("⚠️ This moves the stop away from the price: more risk.")
            card = await self.trading.preview_plan(fo.user_id, fo.user_id, plan, lines)
            note = "The feed moved the stop."
        assert card.card_id is not None
        if follow.auto and reduces:
            done = await self.trading.press(fo.user_id, "c", card.card_id)
            await self._send(fo.user_id, f"{head}\n🤖 Auto mode applied it (it only reduces "
                                         f"risk):\n{done.text}")
            return True
        sent = await self._send(fo.user_id, f"{head}\n{note}\n{card.text}", card.buttons)
        if sent is not None and card.buttons:
            await self.trading.attach_message(card.card_id, sent.message_id)
        return sent is not None

    # --- exits for limit entries ------------------------------------------------------------

    async def sweep_exits(self) -> int:
        """Limit entries that have filled since: place their stop and targets. Trading
        does this at once for a market fill; a limit fills later (call this on a timer)."""
        async with self.db.session() as s:
            rows = list((await s.exec(select(FollowerOrder, OrderCard).join(
                OrderCard, col(OrderCard.id) == col(FollowerOrder.intent_id)).where(
                OrderCard.state == PLACED))).all())
        placed = 0
        for fo, card_row in rows:
            if card_row.intent.get("exits_placed") or card_row.intent.get("status") == "Filled":
                continue
            try:
                ex = await self.accounts.exchange(fo.user_id, fo.network)
                order = await ex.order_by_cl_ord_id(fo.cl_ord_id)
                if order is not None and order.ord_status == "Filled" and card_row.id is not None:
                    await self.trading.place_exits(card_row.id)
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
