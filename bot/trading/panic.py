"""/panic (issue #14 item 6): one card that, after one Confirm, closes every position of
the active account and cancels every open order, then says per symbol what happened.

The card is an ordinary `OrderCard` of kind "panic": the same atomic claim as an order
card decides who sends it, so a second or stale press sends nothing twice, and a card
left in flight by a crash is settled as "may or may not have happened" (place.py).
"""

from __future__ import annotations

import collections
import html
from decimal import Decimal

from bot import fmt
from bot.buttons import PanicOpen, PanicPress, button
from bot.db.models import OrderCard
from bot.errors import ExchangeError, UserError
from bot.exchange.types import Exchange, Order, Position
from bot.notify import Button, Keyboard
from bot.side import Side
from bot.trading.cards import Card, CardBook, Plan, plain_reason

KIND = "panic"
# Stored in the card's intent next to the plan: the handler reads it after the send to
# turn the dead-man's switch off (that lives in bot.live, which trading cannot import).
DEADMAN_OFF = "deadman_off"

NOTHING_OPEN = "Nothing to close: no open positions and no open orders on {network}."


def panic_cl_ord_id(card_cl_ord_id: str, n: int) -> str:
    """The Close order of the card's n-th position: derived from the card's clOrdID, so a
    lookup after a lost answer finds it (≤ 36 chars: 23 + ':p' + digits)."""
    return f"{card_cl_ord_id}:p{n}"


def _closing_side(pos: Position) -> Side:
    return "Sell" if pos.current_qty > 0 else "Buy"


def panic_row() -> list[Button]:
    """The keyboard row /positions shows under the positions: one press opens the card."""
    return [button("🚨 Panic: close all", PanicOpen())]


def panic_buttons(card_id: int) -> Keyboard:
    return [[button("🚨 Confirm panic", PanicPress("c", card_id)),
             button("✖️ Cancel", PanicPress("x", card_id))]]


class PanicCards(CardBook):
    """The preview half: what a panic would do now, as a pending card."""

    async def preview_panic(self, user_id: int, chat_id: int, *,
                            deadman_off: bool = False) -> Card:
        acc = await self.accounts.require_active(user_id, trading=True)
        user = await self._user(user_id)
        ex = await self.accounts.exchange(user_id, acc.network)
        positions = [p for p in await ex.positions() if p.current_qty != 0]
        orders = await ex.open_orders()
        if not positions and not orders:
            raise UserError(NOTHING_OPEN.format(network=acc.network))
        head = f"🚨 PANIC · {acc.network}"
        lines = [f"<b>{html.escape(head)}</b>"]
        for p in positions:
            lines.append(f"Close {html.escape(p.symbol)} {p.side.lower()} "
                         f"{fmt.num(abs(p.current_qty))} at market")
        if positions:
            lines.append("<i>Closed with BitMEX 'Close' orders without a size, which BitMEX "
                         "executes even while it sheds load.</i>")
        if orders:
            per = collections.Counter(o.symbol for o in orders)
            lines.append(f"Cancel all {fmt.num(len(orders))} open order"
                         f"{'' if len(orders) == 1 else 's'} ("
                         + ", ".join(f"{html.escape(s)} {n}" for s, n in sorted(per.items()))
                         + ")")
        lines.append("Dead-man's switch: turned <b>off</b>" if deadman_off
                     else "Dead-man's switch: left as it is")
        plan = Plan(kind=KIND, network=acc.network, summary=head,
                    order_ids=tuple(o.order_id for o in orders))
        card = await self._store(user, chat_id, plan, lines, False)
        assert card.card_id is not None
        if deadman_off:
            await self._finish_intent(card.card_id, {DEADMAN_OFF: True})
        return Card(card.card_id, card.text, panic_buttons(card.card_id))

    async def _finish_intent(self, card_id: int, extra: dict[str, object]) -> None:
        async with self.db.session() as s:
            row = await s.get(OrderCard, card_id)
            assert row is not None
            row.intent = {**row.intent, **extra}
            s.add(row)
            await s.commit()

    async def panic_wants_deadman_off(self, card_id: int) -> bool:
        """Whether this panic card, now sent, asked for the dead-man's switch off."""
        async with self.db.session() as s:
            row = await s.get(OrderCard, card_id)
        return bool(row is not None and row.kind == KIND and row.state == "placed"
                    and row.intent.get(DEADMAN_OFF))


async def send_panic(ex: Exchange, card_cl_ord_id: str) -> str:
    """Close every position, then cancel every open order; the per-symbol report.

    Closes first: until a position is flat its own stop still protects it, so a close that
    fails leaves it guarded rather than naked. The positions are read now, not from the
    preview: what is open at Confirm is what must be closed."""
    positions = [p for p in await ex.positions() if p.current_qty != 0]
    report: dict[str, list[str]] = collections.defaultdict(list)
    for n, pos in enumerate(positions):
        report[pos.symbol].append(await _close_one(ex, pos, panic_cl_ord_id(card_cl_ord_id, n)))
    try:
        cancelled = await ex.cancel_all()
    except ExchangeError as e:
        report["orders"].append(f"❌ not cancelled: {plain_reason(e)}")
    else:
        per = collections.Counter(o.symbol for o in cancelled)
        for symbol, k in sorted(per.items()):
            report[symbol].append(f"{fmt.num(k)} order{'' if k == 1 else 's'} cancelled")
    if not report:
        return "Nothing was open any more."
    # Plain text: the card escapes it when it shows the outcome (cards.py _placed_text).
    return "\n".join(f"{sym}: " + " · ".join(parts)
                     for sym, parts in report.items())


async def _close_one(ex: Exchange, pos: Position, cl_ord_id: str) -> str:
    # No orderQty: BitMEX refuses every order with one while it sheds load.
    try:
        order = await ex.place_order(pos.symbol, _closing_side(pos), None, "Market",
                                     exec_inst=("Close",), cl_ord_id=cl_ord_id,
                                     text="telegram panic")
    except ExchangeError as e:
        return (f"❌ {pos.side.lower()} {fmt.num(abs(pos.current_qty))} NOT closed: "
                f"{plain_reason(e)}")
    return _closed_text(pos, order)


def _closed_text(pos: Position, order: Order) -> str:
    size = fmt.num(abs(pos.current_qty))
    if order.ord_status == "Filled":
        at = f" @ {fmt.num(order.avg_px)}" if order.avg_px else ""
        return f"✅ {pos.side.lower()} {size} closed{at}"
    if order.cum_qty and Decimal(order.cum_qty) > 0:
        return (f"⚠️ {pos.side.lower()} {size}: {fmt.num(order.cum_qty)} closed, "
                f"order {order.ord_status.lower()}")
    return (f"❌ {pos.side.lower()} {size} NOT closed: BitMEX {order.ord_status.lower()} "
            f"it" + (f" ({order.text})" if order.text
                     and not order.text.startswith("telegram") else ""))
