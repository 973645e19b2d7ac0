"""/stats and /broadcast for operators (the access gate lets only ADMIN_IDS through)."""

from __future__ import annotations

from telegram import Update

from bot import parse as P
from bot.admin import broadcast, stats_text
from bot.buttons import ButtonData
from handlers.common import Context, reply
from handlers.presses import PressHandler
from handlers.router import route


def _operator(update: Update, context: Context) -> bool:
    # The gate already refuses others; this holds even if a spelling ever slips past it.
    user = update.effective_user
    return user is not None and context.services.is_admin(user.id)


@route(P.Stats)
async def stats(update: Update, context: Context, intent: P.Stats) -> None:
    """/stats: counts and error rates."""
    if not _operator(update, context):
        return
    await reply(update, await stats_text(context.services))


@route(P.Broadcast)
async def broadcast_cmd(update: Update, context: Context, intent: P.Broadcast) -> None:
    """/broadcast TEXT: to every user who has not blocked the bot."""
    if not _operator(update, context):
        return
    n = await broadcast(context.services, intent.text)
    await reply(update, f"📣 Broadcasting to {n} user(s); it goes out behind users' replies.")


BUTTONS: dict[type[ButtonData], PressHandler] = {}  # no buttons of its own
