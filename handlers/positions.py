"""/panic and its button under /positions (issue #14 item 6, bot/trading/panic.py) and
/monitor (item 7, bot/live/monitor.py)."""

from __future__ import annotations

import html
import logging

from telegram import Update
from telegram.error import TelegramError

from bot import parse as P
from bot.buttons import ButtonData, PanicOpen, PanicPress
from bot.errors import UserError
from handlers.common import Context, answer_press, reply
from handlers.presses import PressHandler
from handlers.router import IntentHandler
from handlers.trade import show_card, show_pressed_card

log = logging.getLogger(__name__)


async def panic(update: Update, context: Context, intent: P.Panic) -> None:
    """/panic [deadman off]: a card that closes and cancels everything after one Confirm."""
    uid, cid = context.user_id, context.chat_id
    await show_card(update, context, await context.services.trading.preview_panic(
        uid, cid, deadman_off=intent.deadman_off))


async def on_panic_open(update: Update, context: Context, press: PanicOpen) -> None:
    """🚨 Panic under /positions: the same card as /panic."""
    await answer_press(update)  # at once: the card needs BitMEX, which may be slow
    try:
        card = await context.services.trading.preview_panic(context.user_id, context.chat_id)
    except UserError as e:
        await reply(update, html.escape(str(e)))
        return
    await show_card(update, context, card)


async def on_panic_press(update: Update, context: Context, press: PanicPress) -> None:
    """Confirm / Cancel on a panic card: the same one-claim path as an order card."""
    q = update.callback_query
    assert q is not None
    trading = context.services.trading
    if q.message is not None:
        await trading.pressed_on(press.card_id, q.message.chat.id, q.message.message_id)
    taken = await trading.take_press(context.user_id, press.action, press.card_id)
    await q.answer(taken.alert)
    card = taken.card
    shows = card.text if card is not None else ""
    if card is None:
        card = await trading.execute(press.card_id)
        shows = card.text  # the row's outcome; the note below is extra, not a state
        if await trading.panic_wants_deadman_off(press.card_id):
            try:
                note = await context.services.live.set_deadman(context.user_id, None)
            except UserError as e:
                note = html.escape(str(e))
            card = type(card)(card.card_id, f"{card.text}\n{note}", card.buttons, card.alert)
    if card.text:
        await show_pressed_card(update, context, card, shows)


async def monitor(update: Update, context: Context, intent: P.Monitor) -> None:
    """/monitor [off | pin]: self-editing position messages (bot/live/monitor.py)."""
    live, uid = context.services.live, context.user_id
    if intent.action == "pin":
        await reply(update, await _pin(context, live.monitor_messages(uid)))
        return
    pinned = live.pinned_monitors(uid)  # a new set, or none, replaces the old messages
    if intent.action == "off":
        text = await live.stop_monitor(uid)
    else:
        text = await live.start_monitor(uid, context.chat_id)
    for chat_id, message_id in pinned:  # what /monitor pin pinned goes with them
        try:
            await context.bot.unpin_chat_message(chat_id, message_id)
        except TelegramError as e:  # unpinned by hand, or the right taken away since
            log.info("monitor message %s/%s not unpinned: %s", chat_id, message_id, e.message)
    await reply(update, text)


async def _pin(context: Context, messages: list[tuple[int, int]]) -> str:
    if not messages:
        return "The monitor is not running: /monitor starts it."
    pinned: list[tuple[int, int]] = []
    try:
        for chat_id, message_id in messages:
            await context.bot.pin_chat_message(chat_id, message_id, disable_notification=True)
            pinned.append((chat_id, message_id))
    except TelegramError as e:
        if "not enough rights" in e.message.lower():
            return ("I can't pin here: an admin of this chat has to make me an admin with "
                    'the "Pin messages" right.')
        return f"I could not pin them: {html.escape(e.message)}"
    finally:
        await context.services.live.monitor_pinned(context.user_id, pinned)
    return "📌 Pinned. /monitor off unpins them."


# What each intent of this area runs (handlers/__init__.py register).
ROUTES: dict[type[P.Intent], IntentHandler] = {
    P.Panic: panic,
    P.Monitor: monitor,
}

BUTTONS: dict[type[ButtonData], PressHandler] = {
    PanicOpen: on_panic_open,
    PanicPress: on_panic_press,
}
