"""Service messages about the chat itself (a group upgraded to a supergroup)."""

from __future__ import annotations

from telegram import Update

from bot.chats import migrate_chat
from handlers.common import Context, services


async def on_migrate(update: Update, context: Context) -> None:
    """The old group's `migrate_to_chat_id`: move alerts, liquidation feed and signal feed."""
    msg = update.effective_message
    if msg is None or msg.migrate_to_chat_id is None:
        return
    await migrate_chat(services(context), msg.chat_id, msg.migrate_to_chat_id)
