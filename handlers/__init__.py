"""The Telegram side: every handler is listed in `register`, in one place."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application, CommandHandler, TypeHandler

from bot.services import Services


def register(app: Application[Any, Any, Any, Any, Any, Any], services: Services) -> None:
    """Attach the access gate, the command handlers and the error handler."""
    from handlers import access, errors, start

    app.add_handler(TypeHandler(Update, access.gate), group=-1)
    app.add_handler(CommandHandler("start", start.start))
    app.add_handler(CommandHandler("help", start.help_command))
    app.add_error_handler(errors.on_error)
