"""Exits that behave like a bracket (issue #14 item 2).

BitMEX has had no linked orders (OCO/OTO) since 2018, so the bot keeps a position's
reduce-only exits consistent itself: when the position is flat its remaining exits are
cancelled (an orphan stop or TP could open a new position later, or trigger on nothing),
and when a TP took part of it the stop-loss is amended (PUT /order, same orderID) down to
what is left.

The reconciliation reads the exchange's state (positions and open orders), never the
fills it was told about: a fill replayed after a reconnect, or told again after a restart,
computes the same target and finds nothing left to do, so nothing is amended twice
(exactly-once by construction, not by bookkeeping). It runs after every fill of a symbol,
on every private-stream position partial (start-up and each reconnect: what happened while
the bot was down or the socket was dark), and when a paper account is first watched.
"""

from __future__ import annotations

import asyncio
import html
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from bot import fmt
from bot.errors import ExchangeError, UserError
from bot.exchange.types import Exchange, Order, Position
from bot.live.base import EXIT_RE, LiveBase, Watch, qty_text

log = logging.getLogger(__name__)

ALL = "*"  # a reconciliation of every symbol of the account
BOT_PREFIX = "tg-"  # bot/exchange/client.py new_cl_ord_id: orders the bot placed
SL_TYPES = frozenset({"Stop", "StopLimit"})


def is_exit(order: Order) -> bool:
    """An open reduce-only order the bot placed: a card's SL/TP or a user's stop/TP."""
    return (order.is_open and order.cl_ord_id.startswith(BOT_PREFIX)
            and ("ReduceOnly" in order.exec_inst or "Close" in order.exec_inst))


def leg_name(order: Order) -> str:
    m = EXIT_RE.match(order.cl_ord_id)
    if m is not None:
        return "SL" if m["leg"] == "sl" else f"TP{m['n']}"
    return "stop" if order.ord_type in SL_TYPES else order.ord_type.lower() or "order"


@dataclass
class BracketPlan:
    """What one symbol needs: exits to cancel, stops to shrink (order, new orderQty)."""

    symbol: str
    flat: bool
    cancel: list[Order] = field(default_factory=list)
    shrink: list[tuple[Order, Decimal]] = field(default_factory=list)


def plan_symbol(symbol: str, position: Position | None, exits: list[Order]) -> BracketPlan:
    """Pure: what keeps `symbol`'s exits consistent with its position."""
    qty = position.current_qty if position is not None else Decimal(0)
    plan = BracketPlan(symbol, flat=qty == 0)
    if qty == 0:
        plan.cancel = list(exits)
        return plan
    closing_side = "Sell" if qty > 0 else "Buy"
    size = abs(qty)
    for o in exits:
        if o.side != closing_side:
            # The position reversed: this exit would now add to it (BitMEX would cancel it
            # only when it triggers, at the worst moment).
            plan.cancel.append(o)
        elif o.ord_type in SL_TYPES and o.leaves_qty > size:
            # Only shrink: a stop that covers less than the position (the user added to it)
            # is the user's choice, not an inconsistency.
            plan.shrink.append((o, o.cum_qty + size))
    return plan


class Bracket(LiveBase):
    """The reconciliation, mixed into `LiveUpdates` through `Fills`."""

    def _bracket_dirty(self) -> set[tuple[int, str, str]]:
        # Built lazily so that LiveBase (shared by every live part) needs no field for it.
        dirty: set[tuple[int, str, str]] | None = getattr(self, "_bracket_pending", None)
        if dirty is None:
            dirty = set()
            self._bracket_pending = dirty
        return dirty

    def _bracket_lock(self, w: Watch) -> asyncio.Lock:
        locks: dict[tuple[int, str], asyncio.Lock] | None = getattr(
            self, "_bracket_locks", None)
        if locks is None:
            locks = {}
            self._bracket_locks = locks
        return locks.setdefault((w.user_id, w.network), asyncio.Lock())

    def _bracket_soon(self, w: Watch, symbol: str = ALL) -> None:
        """Reconcile `symbol` (or all) of the account in the background, coalesced: a run
        that has not begun yet will read the state this call was made for."""
        key = (w.user_id, w.network, symbol)
        dirty = self._bracket_dirty()
        if key in dirty or w.closed:
            return
        dirty.add(key)
        self._spawn(self._bracket_run(w, key), f"bracket-{w.user_id}-{w.network}-{symbol}")

    async def _bracket_run(self, w: Watch, key: tuple[int, str, str]) -> None:
        # One run per account at a time: two fills told together must not both amend.
        async with self._bracket_lock(w):
            self._bracket_dirty().discard(key)
            if w.closed:
                return
            try:
                await self.reconcile_exits(w, None if key[2] == ALL else key[2])
            except (ExchangeError, UserError) as e:
                # The next fill or reconnect reconciles again; nothing was guessed. (A
                # UserError: the key was disconnected meanwhile.)
                log.warning("exits of user %s on %s not reconciled: %s", w.user_id,
                            w.network, e.message if isinstance(e, ExchangeError) else e)

    async def reconcile_exits(self, w: Watch, symbol: str | None = None) -> list[BracketPlan]:
        """Cancel orphaned exits and shrink stops to the position; tell the user per symbol."""
        ex = await self.accounts.exchange(w.user_id, w.network)
        orders = [o for o in await ex.open_orders(symbol) if is_exit(o)]
        if symbol is not None:
            orders = [o for o in orders if o.symbol == symbol]
        if not orders:
            return []
        positions = {p.symbol: p for p in await ex.positions()}
        by_symbol: dict[str, list[Order]] = {}
        for o in orders:
            by_symbol.setdefault(o.symbol, []).append(o)
        plans = [plan_symbol(sym, positions.get(sym), exits)
                 for sym, exits in sorted(by_symbol.items())]
        for plan in plans:
            await self._apply_plan(w, ex, plan)
        return plans

    async def _apply_plan(self, w: Watch, ex: Exchange, plan: BracketPlan) -> None:
        inst = await self._instrument(w.network, plan.symbol)
        sym, net = html.escape(plan.symbol), html.escape(w.network)
        cancelled: list[Order] = []
        if plan.cancel:
            results = await ex.cancel_orders([o.order_id for o in plan.cancel])
            # A row with an error was filled or cancelled meanwhile: not ours to report.
            done = {r.order_id for r in results if r.error is None}
            cancelled = [o for o in plan.cancel if o.order_id in done]
        if cancelled:
            names = " · ".join(
                f"{leg_name(o)} {qty_text(o.leaves_qty)} @ "
                f"{fmt.price(inst, o.stop_px if o.stop_px is not None else o.price)}"
                for o in cancelled)
            why = "position closed" if plan.flat else "position reversed"
            await self._send(w.user_id, f"🧹 <b>{sym} {why}</b>: cancelled its remaining "
                             f"exits ({html.escape(names)}) · {net}", "order")
        for order, qty in plan.shrink:
            try:
                amended = await ex.amend_order(order.order_id, qty=qty)
            except ExchangeError as e:
                # Filled or cancelled since it was read: the next reconciliation sees that.
                log.info("stop %s not amended: %s", order.order_id, e.message)
                continue
            await self._send(
                w.user_id,
                f"🛡 <b>{sym} {leg_name(order)} follows the position</b>: now "
                f"{qty_text(amended.leaves_qty)} (was {qty_text(order.leaves_qty)}) @ "
                f"{fmt.price(inst, order.stop_px)} · {net}", "order")
