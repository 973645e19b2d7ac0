"""Small helpers every handler uses: the services, the reply, the chat kind."""

from __future__ import annotations

from typing import Any

from telegram import Message, Update
from telegram.constants import ParseMode
from telegram.ext import ContextTypes

from bot.services import Services

Context = ContextTypes.DEFAULT_TYPE


def services(context: Context) -> Services:
    svc = context.application.bot_data["services"]
    assert isinstance(svc, Services)
    return svc


def is_private(update: Update) -> bool:
    return update.effective_chat is not None and update.effective_chat.type == "private"


async def reply(update: Update, text: str, **kwargs: Any) -> Message | None:
    """Answer in the chat the update came from, HTML, no link previews."""
    chat = update.effective_chat
    if chat is None:
        return None
    kwargs.setdefault("parse_mode", ParseMode.HTML)
    kwargs.setdefault("disable_web_page_preview", True)
    return await chat.send_message(text, **kwargs)
