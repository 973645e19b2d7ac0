"""/liqalert and /deadman: the live-updates settings (bot/live.py does the work)."""

from __future__ import annotations

from telegram import Update

from bot import parse as P
from bot.buttons import ButtonData
from handlers.common import Context, reply
from handlers.presses import PressHandler
from handlers.router import IntentHandler


async def liqalert(update: Update, context: Context, intent: P.LiqAlert) -> None:
    """/liqalert N% | off: warn when mark nears one of your liquidation prices."""
    await reply(update, await context.services.live.set_liq_alert(context.user_id, intent.percent))


async def deadman(update: Update, context: Context, intent: P.Deadman) -> None:
    """/deadman SECONDS | off: keep BitMEX's cancelAllAfter armed while the bot lives."""
    await reply(update, await context.services.live.set_deadman(context.user_id, intent.seconds))


# What each intent of this area runs (handlers/__init__.py register).
ROUTES: dict[type[P.Intent], IntentHandler] = {
    P.LiqAlert: liqalert,
    P.Deadman: deadman,
}


BUTTONS: dict[type[ButtonData], PressHandler] = {}  # no buttons of its own
