"""Updates delivered twice are handled once (bot/leader.py `UpdateLog`)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from handlers.context import BotContext


async def skip_repeats(update: Update, context: BotContext) -> None:
    """Stop an update another delivery (or instance) already took."""
    log = context.bot_data.update_log
    if log is not None and not await log.claim(update.update_id):
        raise ApplicationHandlerStop
