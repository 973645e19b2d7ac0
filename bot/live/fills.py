"""Fills, stop triggers and TP/SL hits told to their owner; a filled entry gets its exits."""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from bot import fmt
from bot.errors import ExchangeError, Rejected, UserError
from bot.exchange.types import Execution, Order
from bot.live.base import (
    ENTRY_SETTLE_WAIT,
    EXIT_RE,
    REPORTED_LIMIT,
    STOP_TYPES,
    TRIGGERED,
    Watch,
    qty_text,
    to_decimal,
)
from bot.live.bracket import ALL, Bracket
from bot.notify import ON_WIRE, REPEATED, Sent
from bot.trading import CONFIRMED, PLACED, Plan

log = logging.getLogger(__name__)


# A burst: the fills of one position that come within this many seconds of each other
# (one order matched against several resting ones, or filled in quick parts). The card
# waits for the burst to end, so several executions get one card, not one each.
FILL_CARD_QUIET = 0.3


@dataclass
class FillCard:
    """The latest fill notice of a position's burst, which the card will be added to."""

    sent: Sent
    text: str
    fills: int = 1


class Fills(Bracket):
    fill_card_quiet: float = FILL_CARD_QUIET
    fill_card_sleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

    # --- fills --------------------------------------------------------------------------

    async def fills_told(self, user_id: int, exec_ids: Collection[str]) -> None:
        """Return once every fill of `exec_ids` has been told to `user_id`: each marked
        reported, none of the person's being told right now, and no position card still
        to come under one (its edit is queued by then). Tests and the sandbox wait on it:
        no message announces "nothing more comes"."""
        want = set(exec_ids)
        while True:
            watches = [w for (uid, _), w in self._watches.items() if uid == user_id]
            reported = {e for w in watches for e in w.reported}
            # A fill is marked reported before its notice is sent, under the watch's lock;
            # its position card is pending from the moment that lock is let go.
            if (want <= reported and not any(w.lock.locked() for w in watches)
                    and not any(k[0] == user_id for k in self._fill_cards())):
                return
            await self._told.wait()

    async def _report_fill(self, w: Watch, ex: Execution) -> None:
        try:
            await self._tell_fill(w, ex)
        finally:
            self._told_moved()

    async def _tell_fill(self, w: Watch, ex: Execution) -> None:
        async with w.lock:
            if ex.exec_id in w.reported:
                return
            w.reported[ex.exec_id] = None
            if len(w.reported) > REPORTED_LIMIT:
                w.reported.popitem(last=False)
            text, kind = await self._describe_fill(w, ex)
            cursor = w.cursor
            if cursor is not None and cursor.sending == ex.exec_id:
                # Its request was on the wire when the last process died: maybe told.
                text += REPEATED
            # The cursor records how far telling got, as alerts do (bot/alerts/service.py):
            # queued is untold (told at the next start), the request on the wire is
            # `sending` (told again, marked), the answer in moves the cursor past it.
            token = ON_WIRE.set(self._on_wire(w, ex.exec_id) if cursor is not None else None)
            try:
                sent = await self._send(w.user_id, text, kind)
            finally:
                ON_WIRE.reset(token)
            if getattr(self.notifier, "closed", False):
                # Stopped with this one queued or in flight: not told (or maybe told),
                # so the cursor stays behind it and the next start tells it.
                log.info("fill %s waits for the next start", ex.exec_id)
                return
            if cursor is not None:
                changed = cursor.advance(ex)
                if cursor.sending is not None:
                    cursor.sending, changed = None, True
                if changed:
                    await self._save_cursor(w)
        if sent is not None and ex.symbol and kind != "liquidation":
            self._fill_card_soon(w, ex.symbol, sent, text)
        if ex.symbol:
            # Any fill may have closed or shrunk the position: its exits follow (bracket).
            self._bracket_soon(w, ex.symbol)
        if ex.ord_status == "Filled" and ex.cl_ord_id and ":" not in ex.cl_ord_id:
            self._spawn(self._exits_after_entry(w, ex), f"exits-{ex.cl_ord_id}")

    # --- the position card under a fill ---------------------------------------------

    def _fill_cards(self) -> dict[tuple[int, str, str], FillCard]:
        # Kept on the instance without touching LiveBase's constructor (one owner each).
        cards: dict[tuple[int, str, str], FillCard] | None = self.__dict__.get("_fill_cards_")
        if cards is None:
            cards = self.__dict__["_fill_cards_"] = {}
        return cards

    def _fill_card_soon(self, w: Watch, symbol: str, sent: Sent, text: str) -> None:
        """The fill left the position open or changed: its notice gets the position card
        (issue #14 item 1), once the burst is over. Each fill of the burst pushes that
        moment back, and only the burst's last notice carries the card."""
        key = (w.user_id, w.network, symbol)
        pending = self._fill_cards().get(key)
        if pending is not None:
            pending.sent, pending.text, pending.fills = sent, text, pending.fills + 1
            return
        card = self._fill_cards()[key] = FillCard(sent, text)
        self._spawn(self._fill_card(w, key, card), f"fill-card-{w.user_id}-{symbol}")

    async def _fill_card(self, w: Watch, key: tuple[int, str, str], card: FillCard) -> None:
        try:
            while True:  # a moment with no further fill of this position ends the burst
                seen = card.fills
                await self.fill_card_sleep(self.fill_card_quiet)
                if card.fills == seen:
                    break
            # Read back after the burst: a fill that closed the position shows no card.
            shown = await self.trading.position_card_on(w.user_id, w.network, key[2])
        except (ExchangeError, UserError) as e:
            log.info("no position card under the %s fill: %s", key[2], e)
            return
        finally:
            if self._fill_cards().get(key) is card:
                del self._fill_cards()[key]
            self._told_moved()
        if shown is None or w.closed:
            return
        try:
            await self.notifier.edit(card.sent.chat_id, card.sent.message_id,
                                     f"{card.text}\n\n{shown.text}", buttons=shown.buttons)
        except Exception:  # the notice itself was told; the card is a convenience
            log.exception("could not add the position card to a %s fill", key[2])

    def _on_wire(self, w: Watch, exec_id: str) -> Callable[[], Awaitable[None]]:
        async def sending() -> None:
            # Committed before the request leaves: a crash from here on is "maybe told".
            if w.cursor is not None and w.cursor.sending != exec_id:
                w.cursor.sending = exec_id
                try:
                    await self._save_cursor(w)
                except Exception:  # the fill is still told; a crash now repeats it unmarked
                    log.exception("fill %s: could not record its request", exec_id)
        return sending

    async def _describe_fill(self, w: Watch, ex: Execution) -> tuple[str, str]:
        order_qty, cum, avg = ex.order_qty, ex.cum_qty, ex.avg_px
        complete = ex.ord_status == "Filled"
        inst = await self._instrument(w.network, ex.symbol)
        px = fmt.price(inst, ex.last_px)
        sym = html.escape(ex.symbol)
        side = html.escape(ex.side)
        typ = html.escape(ex.ord_type.lower() or "order")
        qty = qty_text(ex.last_qty)
        part = "" if complete or order_qty is None else f" ({qty_text(cum)}/{qty_text(order_qty)})"
        pnl = ""
        exit_leg = EXIT_RE.match(ex.cl_ord_id or "")
        liquidation = "liquidation" in ex.text.lower() or ex.ord_type == "Liquidation"
        closing = exit_leg is not None or liquidation or any(
            x in ex.exec_inst for x in ("ReduceOnly", "Close"))
        # On an opening fill realised PnL is only the fee: noise, not news.
        if closing and ex.realised_pnl and ex.settl_currency:
            sign = "+" if ex.realised_pnl > 0 else "−"
            pnl = f" · PnL {sign}{fmt.money(abs(ex.realised_pnl), ex.settl_currency)}"
        tag = f" · {html.escape(w.network)}"
        if liquidation:
            held = "long" if ex.side == "Sell" else "short"
            return (f"💥 <b>Position liquidated</b>: your {held} {qty} {sym} was closed "
                    f"at {px}{pnl}{tag}", "liquidation")
        if exit_leg is not None and exit_leg["leg"] == "sl":
            return f"🛑 <b>Stop-loss hit</b>: {side} {qty} {sym} @ {px}{part}{pnl}{tag}", "fill"
        if exit_leg is not None:
            return (f"🎯 <b>Take-profit {exit_leg['n']} hit</b>: {side} {qty} {sym} @ {px}"
                    f"{part}{pnl}{tag}", "fill")
        if ex.ord_type in STOP_TYPES and ex.order_id not in w.triggered:
            # The trigger itself was not seen (paper, or while reconnecting): say it now.
            w.triggered.add(ex.order_id)
            state = "filled" if complete else "partly filled"
            return (f"⚡ <b>Stop triggered</b> and {state}: {side} {qty} {sym} @ {px}"
                    f"{part} ({typ}){pnl}{tag}", "fill")
        if complete:
            avg_note = ""
            if avg is not None and cum is not None and cum != ex.last_qty:
                avg_note = f" · {qty_text(cum)} in all, avg {fmt.price(inst, avg)}"
            return (f"✅ <b>Order filled</b>: {side} {qty} {sym} @ {px} ({typ}){avg_note}"
                    f"{pnl}{tag}", "fill")
        of = f"{qty}/{qty_text(order_qty)}" if order_qty is not None else qty
        if cum is not None and order_qty is not None:
            of = f"{qty_text(cum)}/{qty_text(order_qty)}"
        return f"🟢 Filled {of} {sym} @ {px} ({side.lower()}, {typ}){pnl}{tag}", "fill"

    async def _on_table(self, w: Watch, table: str, action: str,
                        rows: list[dict[str, Any]]) -> None:
        """Stop triggers: execType TriggeredOrActivatedBySystem rows (the typed callbacks
        only carry fills); a position partial (start-up, every reconnect) reconciles the
        exits with what happened while the bot or the socket was away."""
        if w.closed:
            return
        if table == "position" and action == "partial":
            self._bracket_soon(w, ALL)
            return
        if table != "execution" or action != "insert":
            return
        for row in rows:
            if row.get("execType") != TRIGGERED:
                continue
            order_id = str(row.get("orderID") or "")
            if not order_id or order_id in w.triggered:
                continue
            w.triggered.add(order_id)
            if EXIT_RE.match(str(row.get("clOrdID") or "")):
                continue  # the bot's own SL: told when it fills, as "Stop-loss hit"
            symbol = str(row.get("symbol") or "")
            inst = await self._instrument(w.network, symbol)
            stop = fmt.price(inst, to_decimal(row.get("stopPx")))
            qty = qty_text(to_decimal(row.get("orderQty")))
            typ = html.escape(str(row.get("ordType") or "stop").lower())
            await self._send(
                w.user_id,
                f"⚡ <b>Stop triggered</b>: {html.escape(str(row.get('side') or ''))} {qty} "
                f"{html.escape(symbol)} · stop {stop} ({typ}) · {html.escape(w.network)}",
                "order")

    async def _on_order(self, w: Watch, order: Order) -> None:
        if order.ord_status == "Canceled" and "cancel all after" in order.text.lower():
            inst = await self._instrument(w.network, order.symbol)
            price = f" @ {fmt.price(inst, order.price)}" if order.price is not None else ""
            await self._send(
                w.user_id,
                f"💀 <b>Dead-man's switch fired</b>: cancelled {html.escape(order.side)} "
                f"{qty_text(order.order_qty)} {html.escape(order.symbol)}{price} "
                f"({html.escape(order.ord_type.lower())}) · {html.escape(w.network)}",
                "deadman")

    async def _exits_after_entry(self, w: Watch, ex: Execution) -> None:
        """A card's entry filled: place its TP/SL unless the press itself already did."""
        trading = self.trading
        row = await trading.card_by_cl_ord_id(ex.cl_ord_id)
        if row is None or row.id is None:
            return
        plan = Plan.from_json(row.intent)
        if not (plan.tps or plan.sl is not None):
            return
        deadline = time.monotonic() + ENTRY_SETTLE_WAIT
        while row.state == CONFIRMED and time.monotonic() < deadline:
            # The press is still placing the entry; it decides from the POST's answer.
            await asyncio.sleep(0.05)
            row = await trading.card_by_cl_ord_id(ex.cl_ord_id) or row
        if row.state != PLACED or row.intent.get("exits_placed"):
            return
        if row.intent.get("status") == "Filled":
            return  # filled at once: Trading placed the exits itself after the POST
        card_id = row.id
        assert card_id is not None
        lock = self._exit_locks.setdefault(card_id, asyncio.Lock())
        self._exit_users[card_id] = self._exit_users.get(card_id, 0) + 1
        try:
            async with lock:
                try:
                    placed = await trading.place_exits(card_id)
                except Rejected as e:
                    # Already there (a restart between placing and recording): nothing to add.
                    log.info("exits for card %s not placed: %s", row.id, e.message)
                    return
                except (ExchangeError, UserError) as e:
                    reason = e.message if isinstance(e, ExchangeError) else str(e)
                    await self._send(w.user_id, "⚠️ Your entry filled but I could not place "
                                     f"its TP/SL: {html.escape(reason)}. Please set them "
                                     "yourself.", "order")
                    return
        finally:
            # One lock per bracketed card, kept for ever, grew a long-running bot: the last
            # fill using it (holding or waiting) drops it.
            left = self._exit_users.pop(card_id) - 1
            if left:
                self._exit_users[card_id] = left
            else:
                del self._exit_locks[card_id]
        if not placed:
            return
        if plan.symbol:
            # The position may have closed while these were being placed (or while the bot
            # was down, before a restart placed them): they must not outlive it.
            self._bracket_soon(w, plan.symbol)
        inst = await self._instrument(w.network, plan.symbol or "")
        parts = []
        if plan.sl is not None:
            parts.append(f"SL {fmt.price(inst, plan.sl)}")
        parts += [f"TP{i + 1} {fmt.price(inst, tp)}" for i, tp in enumerate(plan.tps)]
        await self._send(w.user_id, f"🎯 Exits placed for {html.escape(plan.summary)}: "
                         + " · ".join(parts), "order")
