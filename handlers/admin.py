"""/stats and /broadcast for operators (the access gate lets only ADMIN_IDS through)."""

from __future__ import annotations

from telegram import Update

from bot import parse as P
from bot.buttons import ButtonData
from handlers.common import Context, reply
from handlers.presses import PressHandler
from handlers.router import IntentHandler


def _operator(update: Update, context: Context) -> bool:
    # The gate already refuses others; this holds even if a spelling ever slips past it.
    user = update.effective_user
    return user is not None and context.services.is_admin(user.id)


async def stats(update: Update, context: Context, intent: P.Stats) -> None:
    """/stats: counts and error rates."""
    if not _operator(update, context):
        return
    await reply(update, await context.services.operators.stats_text())


async def broadcast_cmd(update: Update, context: Context, intent: P.Broadcast) -> None:
    """/broadcast TEXT: to every user who has not blocked the bot."""
    if not _operator(update, context):
        return
    n = await context.services.operators.broadcast(intent.text)
    await reply(update, f"📣 Broadcasting to {n} user(s); it goes out behind users' replies.")


# What each intent of this area runs (handlers/__init__.py register).
ROUTES: dict[type[P.Intent], IntentHandler] = {
    P.Stats: stats,
    P.Broadcast: broadcast_cmd,
}


BUTTONS: dict[type[ButtonData], PressHandler] = {}  # no buttons of its own
