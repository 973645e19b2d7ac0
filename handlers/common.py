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


def topic(update: Update) -> int | None:
    """The forum topic the update came from; None for General and chats without topics.

    Services store it with what a group sets up (alerts, feeds), so that what the bot
    posts later goes to the same topic."""
    msg = update.effective_message
    if msg is not None and msg.is_topic_message and msg.message_thread_id is not None:
        return msg.message_thread_id
    return None


async def reply(update: Update, text: str, **kwargs: Any) -> Message | None:
    """Answer in the chat the update came from, HTML, no link previews."""
    chat = update.effective_chat
    if chat is None:
        return None
    kwargs.setdefault("parse_mode", ParseMode.HTML)
    kwargs.setdefault("disable_web_page_preview", True)
    thread = topic(update)
    if thread is not None:
        # In a forum, a send without a thread id lands in General: answer in the topic.
        kwargs.setdefault("message_thread_id", thread)
    return await chat.send_message(text, **kwargs)


def anonymous_admin(update: Update) -> bool:
    """A group admin posting with "Remain anonymous": Telegram sends the message from
    @GroupAnonymousBot with the group itself as `sender_chat`. Only admins can do that."""
    msg, chat = update.effective_message, update.effective_chat
    return (msg is not None and chat is not None and chat.type in ("group", "supergroup")
            and msg.sender_chat is not None and msg.sender_chat.id == chat.id)
