"""A position's exits from chat (issue #14 items 1 and 3): /sl, /tp, the position card's
buttons and the replies to its Edit SL / Edit TP prompts. Every change is a preview card;
nothing moves without its Confirm."""

from __future__ import annotations

import re
from decimal import Decimal

from telegram import ForceReply, Message, Update

from bot import parse as P
from bot.buttons import ButtonData, PanicOpen, PositionAction, decode
from bot.errors import UserError
from bot.parse.values import SizeSpec
from bot.trading import Card
from bot.trading.panic import panic_row
from handlers.common import Context, answer_press, edit_pressed, reply
from handlers.presses import PressHandler
from handlers.render import markup
from handlers.router import IntentHandler, html_safe
from handlers.trade import show_card

# The prompt an Edit button sends; a reply to it is read back by `on_edit_reply`, so the
# question itself carries what is being edited and nothing is kept between the two.
_PROMPT = {"es": ("stop-loss", "a price (60k, -2%), be, or trail 1%"),
           "et": ("take-profit", "prices (65k,70k), shares (65k:50%,70k:50%) or +3%")}
_PROMPT_RE = re.compile(r"^✏️ New (stop-loss|take-profit) for ([A-Za-z0-9._-]{1,32})\b")


async def sl(update: Update, context: Context, intent: P.SetStop) -> None:
    """/sl SYM be|PRICE|trail N%: a preview card moving the position's stop."""
    card = await context.services.trading.preview_stop(context.user_id, context.chat_id, intent)
    await show_card(update, context, card)


async def tp(update: Update, context: Context, intent: P.SetTargets) -> None:
    """/tp SYM P1,P2 or P1:50%,P2:50%: a preview card replacing the take-profits."""
    card = await context.services.trading.preview_targets(context.user_id, context.chat_id,
                                                          intent)
    await show_card(update, context, card)


async def on_position_press(update: Update, context: Context, press: PositionAction) -> None:
    """A position card's button: answered at once, then a preview card (or a prompt)."""
    await answer_press(update)
    trading, uid, cid, sym = (context.services.trading, context.user_id, context.chat_id,
                              press.symbol)
    try:
        if press.action == "rf":
            q = update.callback_query
            msg = q.message if q is not None else None
            if msg is not None and await context.services.live.refresh_monitor(
                    uid, msg.chat.id, msg.message_id):
                return  # a /monitor message: re-rendered as the monitor shows it
            await _refresh(update, await trading.position_card(uid, sym))
            return
        if press.action in _PROMPT:
            await trading.require_position(uid, sym)
            what, how = _PROMPT[press.action]
            await reply(update, f"✏️ New {what} for {sym}: reply to this message with {how}.",
                        reply_markup=ForceReply(selective=True, input_field_placeholder="60k"))
            return
        if press.action in ("c25", "c50", "c100"):
            share = {"c25": 25, "c50": 50}.get(press.action)
            size = SizeSpec("percent", Decimal(share)) if share else None
            card = await trading.preview_close(uid, cid, P.Close(symbol=sym, size=size))
        elif press.action == "be":
            card = await trading.preview_stop(uid, cid, P.SetStop(symbol=sym, breakeven=True))
        else:  # "tr": BitMEX's trailing stop, 1 % behind the mark
            card = await trading.preview_stop(
                uid, cid, P.SetStop(symbol=sym, trail=P.Trail(Decimal(1), percent=True)))
    except UserError as e:
        await reply(update, html_safe(str(e)))
        return
    await show_card(update, context, card)


def _had_panic_row(update: Update) -> bool:
    """Whether the pressed card carries the Panic row (/positions puts it under the last
    card): Refresh keeps the rows the card had."""
    q = update.callback_query
    kb = q.message.reply_markup if q is not None and isinstance(q.message, Message) else None
    return kb is not None and any(isinstance(decode(b.callback_data if isinstance(
        b.callback_data, str) else None), PanicOpen) for row in kb.inline_keyboard for b in row)


async def _refresh(update: Update, card: Card) -> None:
    q = update.callback_query
    assert q is not None
    rows = card.buttons
    if rows and _had_panic_row(update):
        rows = [*rows, panic_row()]
    text = card.text
    shown = q.message.text_html if isinstance(q.message, Message) and q.message.text else ""
    if "\n\n" in shown:
        # A fill notice carrying the card (bot/live/fills.py): the fill stays told above it.
        head = shown.split("\n\n", 1)[0]
        text = f"{head}\n\n{text}"
    await edit_pressed(update, text, reply_markup=markup(rows))


async def on_edit_reply(update: Update, context: Context) -> bool:
    """A reply to an Edit SL / Edit TP prompt: parsed like any price, then a preview card.
    False for every other message (the router's next fallback or hint)."""
    msg = update.effective_message
    target = msg.reply_to_message if msg is not None else None
    if (msg is None or not msg.text or target is None or target.from_user is None
            or target.from_user.id != context.bot.id):
        return False
    m = _PROMPT_RE.match(target.text or "")
    if m is None:
        return False
    what, symbol = m.group(1), m.group(2)
    trading, uid, cid = context.services.trading, context.user_id, context.chat_id
    words = msg.text.split()
    try:
        if what == "stop-loss":
            be, price, trail = P.stop_value(words)
            card = await trading.preview_stop(uid, cid, P.SetStop(
                symbol=symbol, breakeven=be, price=price, trail=trail))
        else:
            prices, shares = P.targets_value(words)
            card = await trading.preview_targets(uid, cid, P.SetTargets(
                symbol=symbol, prices=prices, shares=shares))
    except UserError as e:
        await reply(update, html_safe(str(e).split("\n")[0]))
        return True
    await show_card(update, context, card)
    return True


# What each intent of this area runs (handlers/__init__.py register).
ROUTES: dict[type[P.Intent], IntentHandler] = {
    P.SetStop: sl,
    P.SetTargets: tp,
}

BUTTONS: dict[type[ButtonData], PressHandler] = {
    PositionAction: on_position_press,
}
