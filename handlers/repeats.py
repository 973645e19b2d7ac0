"""Updates delivered twice are handled once (bot/leader.py `UpdateLog`)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot.leader import UpdateLog


async def skip_repeats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stop an update another delivery (or instance) already took."""
    log = context.application.bot_data.get("update_log")
    if isinstance(log, UpdateLog) and not await log.claim(update.update_id):
        raise ApplicationHandlerStop
