"""/liqalert and /deadman: the live-updates settings (bot/live.py does the work)."""

from __future__ import annotations

from telegram import Update

from bot import parse as P
from bot.buttons import ButtonData
from bot.live import LiveUpdates
from handlers.common import Context, reply
from handlers.presses import PressHandler
from handlers.router import route


def _live(context: Context) -> LiveUpdates:
    svc = context.services.live
    assert svc is not None, "create_services builds the live updates"
    return svc



@route(P.LiqAlert)
async def liqalert(update: Update, context: Context, intent: P.LiqAlert) -> None:
    """/liqalert N% | off: warn when mark nears one of your liquidation prices."""
    await reply(update, await _live(context).set_liq_alert(context.user_id, intent.percent))


@route(P.Deadman)
async def deadman(update: Update, context: Context, intent: P.Deadman) -> None:
    """/deadman SECONDS | off: keep BitMEX's cancelAllAfter armed while the bot lives."""
    await reply(update, await _live(context).set_deadman(context.user_id, intent.seconds))


BUTTONS: dict[type[ButtonData], PressHandler] = {}  # no buttons of its own
