"""Trading commands: previews with Confirm/Cancel, listings with per-row buttons."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal

from telegram import CallbackQuery, Update
from telegram.constants import ChatAction
from telegram.error import BadRequest, TelegramError

from bot import parse as P
from bot.buttons import (
    ButtonData,
    CancelOrderRow,
    CardPress,
    ClosePositionRow,
    PresetPick,
    PresetPress,
    button,
)
from bot.errors import ExchangeError, UserError
from bot.exchange.types import Exchange, Instrument
from bot.notify import Edited
from bot.trading import Card
from bot.trading.panic import panic_row
from handlers.common import Context, answer_press, reply, topic
from handlers.notifier import refused_edit
from handlers.presses import PressHandler
from handlers.render import balances, markup, order_block
from handlers.router import IntentHandler

log = logging.getLogger(__name__)


async def show_card(update: Update, context: Context, card: Card) -> None:
    msg = await reply(update, card.text, reply_markup=markup(card.buttons))
    if msg is not None and card.card_id is not None and card.buttons:
        await context.services.trading.attach_message(card.card_id, msg.message_id)



async def order(update: Update, context: Context, intent: P.Order) -> None:
    """/buy /sell /long /short: a preview card."""
    uid, cid = context.user_id, context.chat_id
    await show_card(update, context, await context.services.trading.preview_order(uid, cid,
                                                                                   intent))


async def pick_size(update: Update, context: Context, intent: P.PickSize) -> None:
    """/buy SYM without a size: the user's size presets as buttons."""
    text, rows = await context.services.prefs.pick_size(context.user_id, context.chat_id,
                                                        intent)
    await reply(update, text, reply_markup=markup(rows))


async def on_preset_pick(update: Update, context: Context, press: PresetPick) -> None:
    """A size preset: the preview of the order as typed with that size (nothing is placed
    without its Confirm)."""
    await answer_press(update)  # at once: the card needs BitMEX, which may be slow
    await _preview_preset(update, context,
                          lambda: context.services.prefs.preset_order(context.user_id, press))


async def on_preset_press(update: Update, context: Context, press: PresetPress) -> None:
    """A size preset of a menu sent before menus were stored (its button carries the
    symbol and the stop): the usual preview card."""
    await answer_press(update)  # at once: the card needs BitMEX, which may be slow
    sl = None if press.sl == "-" else Decimal(press.sl)

    async def typed() -> P.Order:
        return P.preset_order(press.side, press.symbol, press.size, sl)

    await _preview_preset(update, context, typed)


async def _preview_preset(update: Update, context: Context,
                          order: Callable[[], Awaitable[P.Order]]) -> None:
    """The preview card of a preset's order; a refusal (a preset gone stale, a size the
    instrument cannot take) is one line in the chat."""
    try:
        card = await context.services.trading.preview_order(context.user_id, context.chat_id,
                                                            await order())
    except UserError as e:
        await reply(update, str(e))
        return
    await show_card(update, context, card)


async def close(update: Update, context: Context, intent: P.Close) -> None:
    """/close: a reduce-only preview card."""
    uid, cid = context.user_id, context.chat_id
    await show_card(update, context, await context.services.trading.preview_close(uid, cid,
                                                                                   intent))


async def cancel(update: Update, context: Context, intent: P.CancelOrder | P.CancelAll) -> None:
    """/cancel ID | all [SYM]: a cancel card."""
    uid, cid = context.user_id, context.chat_id
    trading = context.services.trading
    if isinstance(intent, P.CancelOrder):
        card = await trading.preview_cancel(uid, cid, intent.ref)
    else:
        card = await trading.preview_cancel(uid, cid, None, intent.symbol)
    await show_card(update, context, card)


async def leverage(update: Update, context: Context, intent: P.Leverage) -> None:
    """/leverage SYM N|cross: immediate when flat, a card when a position is open."""
    uid, cid = context.user_id, context.chat_id
    result = await context.services.trading.preview_leverage(uid, cid, intent)
    if isinstance(result, str):
        await reply(update, html.escape(result))
    else:
        await show_card(update, context, result)


async def orders(update: Update, context: Context, intent: P.Orders) -> None:
    """/orders: open orders, each with a Cancel button."""
    uid = context.user_id
    svc = context.services
    acc = await svc.accounts.require_active(uid)
    ex = await svc.accounts.exchange(uid, acc.network)
    rows = await svc.trading.sorted_orders(ex, intent.symbol)
    if not rows:
        await reply(update, f"No open orders ({acc.network}).")
        return
    insts = {sym: await _instrument_or_none(ex, sym) for sym in {o.symbol for o in rows[:20]}}
    text = f"<b>Open orders · {acc.network}</b>\n" + "\n".join(
        order_block(i, o, insts[o.symbol]) for i, o in enumerate(rows[:20], 1))
    if len(rows) > 20:
        text += f"\n… and {len(rows) - 20} more; /orders SYM narrows the list."
    buttons = [[button(f"Cancel {i}", CancelOrderRow(o.order_id[:36]))]
               for i, o in enumerate(rows[:20], 1)]
    await reply(update, text, reply_markup=markup(buttons))


async def _instrument_or_none(ex: Exchange, symbol: str) -> Instrument | None:
    """The contract for its tick precision; a plain number format when it can't be had."""
    try:
        return await ex.instrument(symbol)
    except ExchangeError:
        return None


async def positions(update: Update, context: Context, intent: P.Positions) -> None:
    """/positions: one card per open position, with its buttons (bot/trading/stops.py)."""
    network, cards = await context.services.trading.position_cards(context.user_id)
    if not cards:
        await reply(update, f"No open positions ({network}).")
        return
    for n, card in enumerate(cards, 1):
        # The Panic row (issue #14 item 6) once, under the last position's card.
        rows = [*card.buttons, panic_row()] if n == len(cards) else card.buttons
        await reply(update, card.text, reply_markup=markup(rows))


async def balance(update: Update, context: Context, intent: P.Balance) -> None:
    """/balance: wallet, margin balance, available, uPnL per currency."""
    uid = context.user_id
    svc = context.services
    acc = await svc.accounts.require_active(uid)
    ex = await svc.accounts.exchange(uid, acc.network)
    await reply(update, f"<b>Balance · {acc.network}</b>\n" + balances(await ex.margins()))


async def on_card_press(update: Update, context: Context, press: CardPress) -> None:
    """Confirm / Cancel on a card: answered at once, then sent, then the card edited."""
    q = update.callback_query
    assert q is not None
    action, card_id = press.action, press.card_id
    trading = context.services.trading
    if q.message is not None:
        await trading.pressed_on(card_id, q.message.chat.id, q.message.message_id)
    taken = await trading.take_press(context.user_id, action, card_id)
    card = taken.card
    if card is not None:
        await q.answer(taken.alert)
    else:
        # Telegram drops an unanswered press after ~15 s and BitMEX alone may take longer:
        # answered now, while the order goes out (not after the answer's round trip: that
        # would only delay the order).
        answering = context.application.create_task(q.answer(taken.alert), update=update)
        if update.effective_chat is not None:
            context.application.create_task(  # "typing…" while BitMEX answers
                context.bot.send_chat_action(update.effective_chat.id, ChatAction.TYPING),
                update=update)
        interim = None
        if taken.interim is not None:
            # Off the card at once (no Confirm while BitMEX works), without the order
            # waiting for Telegram.
            interim = context.application.create_task(
                edit_card(q, taken.interim), update=update)
        try:
            card = await trading.execute(card_id, taken.claimed)
        finally:
            # Even when the send fails: the press keeps its "Sending…" answer and the error
            # handler's apology goes to the chat, not into a race with that answer.
            await asyncio.gather(answering, *([interim] if interim is not None else []),
                                 return_exceptions=True)
    if card.text:
        await show_pressed_card(update, context, card, card.text)


async def show_pressed_card(update: Update, context: Context, card: Card, shows: str) -> None:
    """Edit the pressed card to `card` (`shows`: what its row says). A card whose message
    was deleted while its order was in flight gets its outcome as a new message at once,
    not from the repair sweep seconds later."""
    q = update.callback_query
    if q is None or q.message is None or card.card_id is None:
        return
    await context.services.trading.card_edited(
        context.services.notifier, card.card_id, q.message.chat.id, q.message.message_id,
        await edit_card(q, card), card.text, shows=shows, settled_only=True,
        thread_id=topic(update))


async def edit_card(q: CallbackQuery, card: Card) -> Edited:
    """Edit the pressed card; FAILED when Telegram refused (the sweep repairs it), GONE
    when the message was deleted."""
    try:
        await q.edit_message_text(card.text, parse_mode="HTML", reply_markup=markup(card.buttons))
    except BadRequest as e:
        edited = refused_edit(e)
        if edited is not Edited.SHOWN:
            log.warning("card edit refused: %s", e.message)
        return edited
    except TelegramError as e:  # throttled past retries, or the network
        log.warning("card edit failed: %s", e)
        return Edited.FAILED
    return Edited.SHOWN


async def on_row_press(update: Update, context: Context,
                       press: CancelOrderRow | ClosePositionRow) -> None:
    """Cancel and Close buttons under /orders and /positions open a card."""
    uid, cid = context.user_id, context.chat_id
    trading = context.services.trading
    await answer_press(update)  # at once: the card needs BitMEX, which may be slow
    try:
        if isinstance(press, CancelOrderRow):
            card = await trading.preview_cancel(uid, cid, press.order_id)
        else:
            card = await trading.preview_close(uid, cid, P.Close(symbol=press.symbol))
    except UserError as e:
        await reply(update, str(e))
        return
    await show_card(update, context, card)


# What each intent of this area runs (handlers/__init__.py register).
ROUTES: dict[type[P.Intent], IntentHandler] = {
    P.Order: order,
    P.PickSize: pick_size,
    P.Close: close,
    P.CancelOrder: cancel,
    P.CancelAll: cancel,
    P.Leverage: leverage,
    P.Orders: orders,
    P.Positions: positions,
    P.Balance: balance,
}

BUTTONS: dict[type[ButtonData], PressHandler] = {
    CardPress: on_card_press,
    CancelOrderRow: on_row_press,
    ClosePositionRow: on_row_press,
    PresetPress: on_preset_press,
    PresetPick: on_preset_pick,
}
