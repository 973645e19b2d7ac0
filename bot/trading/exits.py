"""A filled entry's reduce-only TP/SL, placed under clOrdIDs derived from the entry's."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from bot.db.models import OrderCard
from bot.errors import DuplicateClOrdID, ExchangeError
from bot.exchange.types import Exchange, Order
from bot.side import opposite
from bot.trading.cards import PLACED, ZERO, CardBook, Plan, plain_reason
from bot.trading.stops import refused_peg

log = logging.getLogger(__name__)


class Exits(CardBook):
    """A filled entry's exits, placed at most once each (see place_exits)."""

    async def _exits_or_note(self, card_id: int) -> None:
        """Place a filled entry's TP/SL; a failure is told on the card, never turned into a
        "rejected" entry (the entry did fill)."""
        try:
            await self.place_exits(card_id)
        except ExchangeError as e:
            log.warning("exits of card %s not placed: %s", card_id, e.message)
            await self._finish(card_id, PLACED, extra={"exits_error": plain_reason(e)[:300]})

    async def place_exits(self, card_id: int) -> list[Order]:
        """Reduce-only SL and TPs for a filled entry; derived clOrdIDs make this idempotent."""
        async with self.db.session() as s:
            row = await s.get(OrderCard, card_id)
        if row is None or row.intent.get("exits_placed"):
            return []
        plan = Plan.from_json(row.intent)
        if (not (plan.tps or plan.sl is not None) or plan.qty is None or plan.symbol is None
                or plan.side is None):
            return []
        ex = await self.accounts.exchange(row.user_id, plan.network)
        inst = await ex.instrument(plan.symbol)
        exit_side = opposite(plan.side)
        wanted: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        if plan.sl is not None:
            # A trailing stop goes without stopPx: BitMEX sets it from the mark and the
            # offset, and refuses the two together (bot/matching/orders.py).
            wanted.append((exit_cl_ord_id(row.cl_ord_id, "sl"), (plan.qty, "Stop"), {
                "stop_px": plan.sl if plan.peg_offset is None else None,
                "exec_inst": ("ReduceOnly", "MarkPrice"),
                "text": "telegram sl", "peg_offset": plan.peg_offset}))
        for i, (tp, qty) in enumerate(zip(plan.tps, split_qty(plan.qty, len(plan.tps),
                                                             inst.lot_size), strict=True)):
            if qty > 0:
                wanted.append((exit_cl_ord_id(row.cl_ord_id, f"tp{i + 1}"), (qty, "Limit", tp), {
                    "exec_inst": ("ReduceOnly",), "text": "telegram tp"}))
        # An exit placed by an earlier call that failed further on may have filled since,
        # and a filled order's clOrdID is free again: sending it anew would close twice.
        done = set(row.intent.get("exits_done") or [])
        tried = set(row.intent.get("exits_tried") or [])
        placed: list[Order] = []
        for cl, args, kw in wanted:
            if cl in done:
                continue
            found = await ex.order_by_cl_ord_id(cl) if cl in tried else None
            if found is not None:
                placed.append(found)
                done.add(cl)
                await self._finish(card_id, PLACED, extra={"exits_done": sorted(done)})
                continue
            tried.add(cl)
            await self._finish(card_id, PLACED, extra={"exits_tried": sorted(tried)})
            try:
                placed.append(await _place_exit(ex, plan.symbol, exit_side, *args,
                                                cl_ord_id=cl, **kw))
            except ExchangeError as e:
                if kw.get("peg_offset") is None or not refused_peg(e) or plan.sl is None:
                    raise
                # This account may not peg: a plain stop at the typed sl, which the bot
                # trails itself (bot/trading/stops.py trail_stops reads the text).
                placed.append(await _place_exit(
                    ex, plan.symbol, exit_side, *args, cl_ord_id=cl, stop_px=plan.sl,
                    exec_inst=kw["exec_inst"], text=f"telegram trail {plan.peg_offset}"))
            done.add(cl)
            await self._finish(card_id, PLACED, extra={"exits_done": sorted(done)})
        await self._finish(card_id, PLACED, extra={"exits_placed": True})
        return placed


def exit_cl_ord_id(entry_cl_ord_id: str, leg: str) -> str:
    """An exit's clOrdID, derived from its entry's ("sl", "tp1"...): placing the exits
    again after a crash finds the ones already there instead of doubling them (the stream
    reads them back with bot/live.py EXIT_RE)."""
    return f"{entry_cl_ord_id}:{leg}"


async def _place_exit(ex: Exchange, *args: Any, cl_ord_id: str, **kw: Any) -> Order:
    """Place one exit; one already there (placed before a crash, or by a racing caller,
    under the same derived clOrdID) is that order, not a failure to report."""
    try:
        return await ex.place_order(*args, cl_ord_id=cl_ord_id, **kw)
    except DuplicateClOrdID:
        found = await ex.order_by_cl_ord_id(cl_ord_id)
        if found is None:
            raise
        return found


def split_qty(total: Decimal, parts: int, lot: Decimal) -> list[Decimal]:
    """Split a size across `parts` targets in whole lots; the remainder goes to the first."""
    if parts <= 0:
        return []
    lots = int(total / lot)
    base, extra = divmod(lots, parts)
    out = [Decimal(base) * lot for _ in range(parts)]
    out[0] += Decimal(extra) * lot
    # Leftover below one lot (odd sizes) rides on the first target too.
    out[0] += total - sum(out, ZERO)
    return out
