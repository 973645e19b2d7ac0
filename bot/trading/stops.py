"""Managing an open position's exits (issue #14 items 1 and 3): the stop-loss moved to a
price, to break-even or onto a trailing peg, the take-profits replaced with shares, and a
close by share. Each is a card: previewed here, placed by `send_stop_plan` after the same
Confirm and atomic claim as /buy (bot/trading/place.py calls it).

Trailing: BitMEX's own trailing stop is a Stop with `pegPriceType: TrailingStopPeg` and a
signed `pegOffsetValue` (negative for a sell stop). Some accounts are refused pegged
orders (BITMEX.md); then the card places a plain stop and says the bot trails it by
amending it itself (`trail_stops`, run on every position update of the account).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot import fmt
from bot import parse as P
from bot.buttons import PositionAction, button
from bot.db.models import OrderCard
from bot.errors import ExchangeError, Rejected, UserError
from bot.exchange import contracts
from bot.exchange.types import Exchange, Instrument, Order, Position
from bot.notify import Keyboard
from bot.side import Side
from bot.trading.cards import PLACED, ZERO, Card, CardBook, Plan

log = logging.getLogger(__name__)

# BitMEX's taker fee on its perpetuals: a break-even stop must pay for the way in and out.
TAKER_FEE = Decimal("0.00075")
STOP_KINDS = ("set_sl", "set_tps")
BOT_TRAIL_NOTE = ("BitMEX refused a pegged (trailing) order on this account, so the bot "
                  "trails this stop itself by amending it as the price moves.")


@dataclass(frozen=True)
class PositionExits:
    """The reduce-only exits in force for a position."""

    sl: Order | None
    tps: tuple[Order, ...]


def exits_of(orders: list[Order], pos: Position) -> PositionExits:
    exit_side = "Sell" if pos.current_qty > 0 else "Buy"
    mine = [o for o in orders if o.symbol == pos.symbol and o.side == exit_side and o.is_open
            and ("ReduceOnly" in o.exec_inst or "Close" in o.exec_inst)]
    stops = [o for o in mine if o.ord_type in ("Stop", "StopLimit")]
    tps = sorted((o for o in mine if o.ord_type == "Limit" and o.price is not None),
                 key=lambda o: o.price or ZERO, reverse=pos.current_qty < 0)
    return PositionExits(stops[0] if stops else None, tuple(tps))


def breakeven_price(inst: Instrument, pos: Position) -> Decimal:
    """Entry plus the taker fees both ways, rounded to the tick away from the entry."""
    assert pos.avg_entry_price is not None
    long = pos.current_qty > 0
    raw = pos.avg_entry_price * (1 + 2 * TAKER_FEE if long else 1 - 2 * TAKER_FEE)
    return contracts.round_step(raw, inst.tick_size, "up" if long else "down").value


def trail_offset(inst: Instrument, trail: P.Trail, price: Decimal, long: bool) -> Decimal:
    """The signed pegOffsetValue: negative for a long's sell stop, a multiple of the tick."""
    raw = trail.offset(price)
    offset = contracts.round_step(raw, inst.tick_size, "nearest").value
    what = f"{fmt.num(trail.value)}%" if trail.percent else f"${fmt.num(trail.value)}"
    if offset < inst.tick_size:
        raise UserError(f"A trailing offset of {what} is below the tick "
                        f"({fmt.num(inst.tick_size)}) of {inst.symbol}.")
    if offset >= price:
        raise UserError(f"A trailing offset of {what} is above the price "
                        f"({fmt.price(inst, price)}).")
    return -offset if long else offset


def breakeven_reached(inst: Instrument | None, pos: Position) -> bool:
    """Whether the mark is past the break-even stop, so that a stop there would not fire at
    once (preview_stop refuses it otherwise)."""
    if inst is None or pos.avg_entry_price is None or pos.mark_price is None:
        return False
    stop = breakeven_price(inst, pos)
    return pos.mark_price > stop if pos.current_qty > 0 else pos.mark_price < stop


def position_buttons(pos: Position, inst: Instrument | None) -> Keyboard:
    """The position card's buttons (issue #14 item 1), also under a /monitor message and
    under a fill that changed the position: one builder, so they never differ. Each opens
    a preview card; SL → break-even only once the mark is past it."""
    symbol = pos.symbol

    def b(label: str, action: str) -> Any:
        return button(label, PositionAction(action, symbol))  # type: ignore[arg-type]
    stops = [b("SL → break-even", "be")] if breakeven_reached(inst, pos) else []
    return [[b("Close 25 %", "c25"), b("Close 50 %", "c50"), b("Close 100 %", "c100")],
            [*stops, b("Trail SL 1 %", "tr")],
            [b("✏️ Edit SL", "es"), b("✏️ Edit TP", "et"), b("🔄 Refresh", "rf")]]


class StopPreviews(CardBook):
    """Preview cards for a position's exits."""

    async def _position(self, user_id: int, symbol: str | None
                        ) -> tuple[Any, Exchange, Position, Instrument]:
        acc = await self.accounts.require_active(user_id, trading=True)
        ex = await self.accounts.exchange(user_id, acc.network)
        open_pos = [p for p in await ex.positions() if p.current_qty != 0]
        if symbol is not None:
            open_pos = [p for p in open_pos if p.symbol == symbol.upper()]
        elif len(open_pos) > 1:
            user = await self._user(user_id)
            default = [p for p in open_pos if p.symbol == user.default_symbol]
            if not default:
                names = ", ".join(p.symbol for p in open_pos)
                raise UserError(f"You have several positions ({names}); say which, "
                                "like /sl btc be.")
            open_pos = default
        if not open_pos:
            where = f" in {symbol.upper()}" if symbol else ""
            raise UserError(f"No open position{where}: it may have closed since.")
        pos = open_pos[0]
        inst = await ex.instrument(pos.symbol)
        if pos.avg_entry_price is None or pos.mark_price is None:
            raise UserError(f"No entry or mark price for {pos.symbol} yet; try again shortly.")
        return acc, ex, pos, inst

    async def preview_stop(self, user_id: int, chat_id: int, s: P.SetStop) -> Card:
        """/sl and the card's SL buttons: move (or place) the position's stop-loss."""
        acc, ex, pos, inst = await self._position(user_id, s.symbol)
        assert pos.mark_price is not None and pos.avg_entry_price is not None
        long = pos.current_qty > 0
        mark = pos.mark_price
        exit_side: Side = "Sell" if long else "Buy"
        peg: Decimal | None = None
        if s.breakeven:
            stop = breakeven_price(inst, pos)
            if stop >= mark if long else stop <= mark:
                raise UserError(f"A break-even stop at {fmt.price(inst, stop)} would trigger at "
                                f"once: the mark ({fmt.price(inst, mark)}) is not past it yet.")
            what = (f"break-even {fmt.price(inst, stop)} "
                    f"(entry {fmt.price(inst, pos.avg_entry_price)} + fees)")
        elif s.trail is not None:
            peg = trail_offset(inst, s.trail, mark, long)
            stop = contracts.round_step(mark + peg, inst.tick_size,
                                        "down" if long else "up").value
            what = (f"trailing {fmt.price(inst, abs(peg))} behind the mark "
                    f"(now {fmt.price(inst, stop)})")
        else:
            assert s.price is not None
            stop = contracts.round_price(inst, s.price.at(mark)).value
            if stop <= 0:
                raise UserError("That stop is at or below zero.")
            if stop >= mark if long else stop <= mark:
                where = "below" if long else "above"
                raise UserError(f"A stop at {fmt.price(inst, stop)} would trigger at once: for a "
                                f"{'long' if long else 'short'} it must be {where} the mark "
                                f"({fmt.price(inst, mark)}).")
            what = fmt.price(inst, stop)
        current = exits_of(await ex.open_orders(pos.symbol), pos).sl
        qty = abs(pos.current_qty)
        head = f"SL {pos.symbol} → {what} · {acc.network}"
        lines = [f"<b>{html.escape(head)}</b>",
                 f"{pos.side} {fmt.num(qty)} · entry {fmt.price(inst, pos.avg_entry_price)} · "
                 f"mark {fmt.price(inst, mark)}"]
        if current is not None:
            how = ("amended in place (PUT /order)"
                   if (current.peg_offset is None) == (peg is None) else "replaced")
            lines.append(f"Stop in force: {fmt.price(inst, current.stop_px)}"
                         + (" trailing" if current.peg_offset is not None else "")
                         + f" · it will be {how}")
        else:
            lines.append("No stop in force: a reduce-only stop for the whole position is placed.")
        if peg is not None:
            lines.append("BitMEX's own trailing stop (TrailingStopPeg): it follows the mark "
                         "only in your favour.")
        est = contracts.pnl(inst.kind, pos.current_qty, pos.avg_entry_price, stop,
                            inst.multiplier)
        lines.append(f"At the stop ≈ {fmt.money(est, inst.settl_currency)}")
        plan = Plan(kind="set_sl", network=acc.network, symbol=pos.symbol, side=exit_side,
                    qty=qty, ord_type="Stop", stop_px=stop, peg_offset=peg,
                    # Triggered (and trailed) on the mark, like the exits /buy places.
                    exec_inst=("ReduceOnly", "MarkPrice"),
                    order_ids=(current.order_id,) if current else (), summary=head)
        return await self._store(await self._user(user_id), chat_id, plan, lines, False)

    async def preview_targets(self, user_id: int, chat_id: int, t: P.SetTargets) -> Card:
        """/tp and the card's Edit TP: replace the position's take-profits."""
        acc, ex, pos, inst = await self._position(user_id, t.symbol)
        assert pos.mark_price is not None and pos.avg_entry_price is not None
        long = pos.current_qty > 0
        mark = pos.mark_price
        prices = tuple(contracts.round_price(inst, p.at(mark)).value for p in t.prices)
        for px in prices:
            if px <= mark if long else px >= mark:
                where = "above" if long else "below"
                raise UserError(f"Take-profit {fmt.price(inst, px)} is on the wrong side: for a "
                                f"{'long' if long else 'short'} it must be {where} the mark "
                                f"({fmt.price(inst, mark)}).")
        if len(set(prices)) != len(prices):
            raise UserError("Two take-profits round to the same price.")
        qty = abs(pos.current_qty)
        shares = t.shares or tuple(Decimal(100) / len(prices) for _ in prices)
        qtys = split_by_shares(qty, shares, inst.lot_size)
        if any(q <= 0 for q in qtys):
            raise UserError(f"The position ({fmt.num(qty)}) is too small for "
                            f"{len(prices)} take-profits in lots of {fmt.num(inst.lot_size)}.")
        current = exits_of(await ex.open_orders(pos.symbol), pos).tps
        head = f"TP {pos.symbol} → " + ", ".join(fmt.price(inst, p) for p in prices) + (
            f" · {acc.network}")
        lines = [f"<b>{html.escape(head)}</b>",
                 f"{pos.side} {fmt.num(qty)} · entry {fmt.price(inst, pos.avg_entry_price)} · "
                 f"mark {fmt.price(inst, mark)}"]
        for px, q in zip(prices, qtys, strict=True):
            est = contracts.pnl(inst.kind, q if long else -q, pos.avg_entry_price, px,
                                inst.multiplier)
            lines.append(f"• {fmt.price(inst, px)} × {fmt.num(q)} (reduce-only limit) ≈ "
                         f"{fmt.money(est, inst.settl_currency)}")
        if current:
            lines.append(f"Replaces {len(current)} take-profit"
                         f"{'' if len(current) == 1 else 's'} in force: "
                         + ", ".join(fmt.price(inst, o.price) for o in current))
        plan = Plan(kind="set_tps", network=acc.network, symbol=pos.symbol,
                    side="Sell" if long else "Buy", qty=qty, ord_type="Limit", tps=prices,
                    tp_qtys=qtys, exec_inst=("ReduceOnly",),
                    order_ids=tuple(o.order_id for o in current), summary=head)
        return await self._store(await self._user(user_id), chat_id, plan, lines, False)

    async def require_position(self, user_id: int, symbol: str) -> None:
        """An Edit SL / Edit TP press asks for a price only while the position is open; a
        card of one that closed since gets the one-line refusal instead (UserError)."""
        await self._position(user_id, symbol)

    async def position_card(self, user_id: int, symbol: str) -> Card:
        """One position as the card shows it (Refresh re-reads it), with its buttons."""
        try:
            acc, ex, pos, inst = await self._position(user_id, symbol)
        except UserError:
            return Card(None, f"No open position in {html.escape(symbol)}: it has closed.", [])
        exits = exits_of(await ex.open_orders(pos.symbol), pos)
        return render_position_card(acc.network, pos, inst, exits)

    async def position_card_on(self, user_id: int, network: str, symbol: str) -> Card | None:
        """The card of the position in `symbol` on that account (the one a fill changed,
        active or not); None once it is flat."""
        ex = await self.accounts.exchange(user_id, network)
        pos = next((p for p in await ex.positions()
                    if p.symbol == symbol and p.current_qty != 0), None)
        if pos is None:
            return None
        inst = await ex.instrument(symbol)
        exits = exits_of(await ex.open_orders(symbol), pos)
        return render_position_card(network, pos, inst, exits)

    async def position_cards(self, user_id: int) -> tuple[str, list[Card]]:
        """Every open position of the active account as a card; the network's name."""
        acc = await self.accounts.require_active(user_id)
        ex = await self.accounts.exchange(user_id, acc.network)
        rows = [p for p in await ex.positions() if p.current_qty != 0]
        orders = await ex.open_orders() if rows else []
        cards = []
        for p in rows:
            inst = await ex.instrument(p.symbol)
            cards.append(render_position_card(acc.network, p, inst, exits_of(orders, p)))
        return acc.network, cards


def render_position_card(network: str, pos: Position, inst: Instrument,
                         exits: PositionExits) -> Card:
    """The position card: its text and its buttons (none for a contract the bot does not
    trade: /close would refuse them)."""
    text = position_text(network, pos, inst, exits)
    if inst.refusal is not None:
        return Card(None, text + f"\n{html.escape(inst.refusal)}: close it on BitMEX itself.",
                    [])
    return Card(None, text, position_buttons(pos, inst))


def position_text(network: str, pos: Position, inst: Instrument, exits: PositionExits) -> str:
    """The card's text: the position as /positions has always shown it, then its exits."""
    px = fmt.price
    lev = "cross" if pos.cross_margin else fmt.num(pos.leverage) + "x"
    lines = [f"<b>{html.escape(pos.symbol)}</b> {pos.side} {fmt.num(abs(pos.current_qty))} · "
             f"{lev} · {network}",
             f"  entry {px(inst, pos.avg_entry_price)} · mark {px(inst, pos.mark_price)}"]
    if pos.liquidation_price and pos.mark_price:
        dist = (pos.liquidation_price - pos.mark_price) / pos.mark_price * 100
        lines.append(f"  liquidation {px(inst, pos.liquidation_price)} ({fmt.pct(dist)})")
    roe = ""
    if pos.pos_margin:
        roe = f" · ROE {fmt.pct(Decimal(pos.unrealised_pnl) / Decimal(pos.pos_margin) * 100)}"
    lines.append(f"  uPnL {fmt.money(pos.unrealised_pnl, pos.currency)}{roe}")
    sl = exits.sl
    if sl is None:
        lines.append("  SL: none")
    elif sl.peg_offset is not None:
        lines.append(f"  SL {fmt.price(inst, sl.stop_px)} · trailing "
                     f"{fmt.price(inst, abs(sl.peg_offset))} (BitMEX trailing stop)")
    elif sl.text.startswith("telegram trail"):
        lines.append(f"  SL {fmt.price(inst, sl.stop_px)} · trailed by the bot "
                     "(BitMEX refused a pegged order)")
    else:
        lines.append(f"  SL {fmt.price(inst, sl.stop_px)}")
    if exits.tps:
        lines.append("  TP " + ", ".join(f"{fmt.price(inst, o.price)} × {fmt.num(o.leaves_qty)}"
                                       for o in exits.tps))
    else:
        lines.append("  TP: none")
    return "\n".join(lines)


def split_by_shares(total: Decimal, shares: tuple[Decimal, ...], lot: Decimal
                    ) -> tuple[Decimal, ...]:
    """Whole lots per share, rounded down; what is left over goes to the last target so the
    targets together close the whole position."""
    lots = int(total / lot)
    parts = [Decimal(int(lots * s / 100)) * lot for s in shares]
    parts[-1] += total - sum(parts, ZERO)
    return tuple(parts)


def refused_peg(e: ExchangeError) -> bool:
    low = e.message.lower()
    return "peg" in low and ("not enabled" in low or "not allowed" in low
                             or "not supported" in low or "invalid pegpricetype" in low)


async def send_stop_plan(book: CardBook, ex: Exchange, row: OrderCard, plan: Plan
                         ) -> dict[str, Any]:
    """Place what a confirmed set_sl / set_tps card holds (one attempt per leg: the
    clOrdIDs derive from the card's, so a retry finds a leg instead of doubling it)."""
    assert row.id is not None and plan.symbol and plan.side and plan.qty is not None
    # Confirmed after the position closed: a reduce-only exit now would only wait for a
    # position to reduce that is not there (or, reversed, a new one): place nothing.
    if not any(p.symbol == plan.symbol and p.current_qty != 0 for p in await ex.positions()):
        raise Rejected(f"the {plan.symbol} position has closed since; nothing was placed")
    if plan.kind == "set_tps":
        return await _send_targets(book, ex, row, plan)
    assert plan.stop_px is not None
    old = None
    if plan.order_ids:
        old = next((o for o in await ex.open_orders(plan.symbol)
                    if o.order_id == plan.order_ids[0]), None)
    bot_trail = False
    if old is not None and (old.peg_offset is None) == (plan.peg_offset is None):
        order = await ex.amend_order(old.order_id, qty=plan.qty,
                                     stop_px=None if plan.peg_offset is not None
                                     else plan.stop_px,
                                     peg_offset=plan.peg_offset)
        note = f"Stop amended to {fmt.num(order.stop_px or plan.stop_px)}."
    else:
        try:
            order = await ex.place_order(
                plan.symbol, plan.side, plan.qty, "Stop", stop_px=None
                if plan.peg_offset is not None else plan.stop_px, exec_inst=plan.exec_inst,
                cl_ord_id=f"{row.cl_ord_id}:sl", text="telegram sl", peg_offset=plan.peg_offset)
        except ExchangeError as e:
            if plan.peg_offset is None or not refused_peg(e):
                raise
            # The exchange will not trail it: a plain stop the bot amends itself.
            bot_trail = True
            order = await ex.place_order(
                plan.symbol, plan.side, plan.qty, "Stop", stop_px=plan.stop_px,
                exec_inst=plan.exec_inst, cl_ord_id=f"{row.cl_ord_id}:sl",
                text=f"telegram trail {plan.peg_offset}")
        if old is not None:
            await ex.cancel_orders([old.order_id])
        note = f"Stop placed at {fmt.num(order.stop_px or plan.stop_px)}."
    if plan.peg_offset is not None:
        note += " " + (BOT_TRAIL_NOTE if bot_trail else
                       "BitMEX trails it (TrailingStopPeg).")
    await book._finish(row.id, PLACED, order_id=order.order_id, error=note,
                       extra={"bot_trail": bot_trail})
    return {"order_id": order.order_id}


async def _send_targets(book: CardBook, ex: Exchange, row: OrderCard, plan: Plan
                        ) -> dict[str, Any]:
    assert row.id is not None and plan.symbol and plan.side
    if plan.order_ids:
        await ex.cancel_orders(list(plan.order_ids))
    placed: list[Order] = []
    for i, (px, qty) in enumerate(zip(plan.tps, plan.tp_qtys, strict=True), 1):
        cl = f"{row.cl_ord_id}:tp{i}"
        found = await ex.order_by_cl_ord_id(cl)
        placed.append(found or await ex.place_order(
            plan.symbol, plan.side, qty, "Limit", px, exec_inst=plan.exec_inst,
            cl_ord_id=cl, text="telegram tp"))
    note = f"{len(placed)} take-profit{'' if len(placed) == 1 else 's'} placed: " + ", ".join(
        f"{fmt.num(px)} × {fmt.num(q)}" for px, q in zip(plan.tps, plan.tp_qtys, strict=True))
    if plan.order_ids:
        note += f" (replacing {len(plan.order_ids)})."
    await book._finish(row.id, PLACED, order_id=placed[0].order_id if placed else None,
                       error=note)
    return {"order_id": placed[0].order_id if placed else ""}


async def trail_stops(ex: Exchange, symbol: str, mark: Decimal, tick: Decimal, *,
                      keep: set[str] | None = None) -> int:
    """The bot's own trailing, where BitMEX refused the peg: every stop it placed with
    text `telegram trail OFFSET` is amended (PUT /order) when mark + offset is better than
    its stop, never backwards. Returns how many moved; `keep` loses `symbol` once no such
    stop is left (it filled or was cancelled)."""
    moved = 0
    mine = [o for o in await ex.open_orders(symbol)
            if o.text.startswith("telegram trail ") and o.stop_px is not None]
    if not mine and keep is not None:
        keep.discard(symbol)
    for o in mine:
        assert o.stop_px is not None
        try:
            offset = Decimal(o.text.removeprefix("telegram trail ").split()[0])
        except ArithmeticError:
            continue
        raw = mark + offset
        new = contracts.round_step(raw, tick, "down" if offset < 0 else "up").value
        if new <= 0 or (new <= o.stop_px if offset < 0 else new >= o.stop_px):
            continue
        await ex.amend_order(o.order_id, stop_px=new)
        moved += 1
    return moved
