"""Small helpers every handler uses: the services, the reply, the chat kind."""

from __future__ import annotations

import logging
import time
from typing import Any

from telegram import InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import ExtBot

from handlers.context import BotContext
from handlers.ratelimit import Pace

log = logging.getLogger(__name__)

# Within a group, what waits for the group's 20 messages a minute goes out in this order:
# signal cards, admins' answers and warnings first, members' reads (help, stats) last.
URGENT, READ = 0, 6

# Every handler's context: `context.services`, `context.user_id`, `context.chat_id`.
Context = BotContext


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


async def reply(update: Update, text: str, *, urgent: bool = False,
                **kwargs: Any) -> Message | None:
    """Answer in the chat the update came from, HTML, no link previews. In a group the
    answer queues behind `urgent` ones (signal cards, admins' commands) when the group's
    budget is short."""
    chat = update.effective_chat
    if chat is None:
        return None
    kwargs.setdefault("parse_mode", ParseMode.HTML)
    kwargs.setdefault("disable_web_page_preview", True)
    thread = topic(update)
    if thread is not None:
        # In a forum, a send without a thread id lands in General: answer in the topic.
        kwargs.setdefault("message_thread_id", thread)
    bot = update.get_bot()
    # PTB refuses rate_limit_args on a bot built without a limiter (the raw-capacity bench).
    if isinstance(bot, ExtBot) and bot.rate_limiter is not None and chat.type != "private":
        pace = Pace(priority=URGENT if urgent else READ)
        return await bot.send_message(chat.id, text, rate_limit_args=pace, **kwargs)
    return await chat.send_message(text, **kwargs)


async def answer_press(update: Update, text: str | None = None, **kwargs: Any) -> None:
    """Answer the press (stop the spinner). An answer that comes after Telegram's ~15 s
    (a busy bot) is refused as "query is too old": the press still does what was asked,
    or the person who pressed gets nothing at all."""
    q = update.callback_query
    if q is None:
        return
    try:
        await q.answer(text, **kwargs)
    except BadRequest as e:
        if "query is too old" not in e.message.lower():
            raise
        log.info("press answered too late for Telegram; acting on it anyway")


async def edit_pressed(update: Update, text: str, *,
                       reply_markup: InlineKeyboardMarkup | None = None,
                       parse_mode: str | None = ParseMode.HTML) -> None:
    """Show `text` in place of the pressed message. When Telegram refuses the edit (the
    message was deleted after the press, or it is a photo with a caption), the answer
    comes as a new message: the press's outcome is never left unseen."""
    q = update.callback_query
    if q is None or q.message is None:
        await reply(update, text, reply_markup=reply_markup, parse_mode=parse_mode)
        return
    try:
        await q.edit_message_text(text, parse_mode=parse_mode, reply_markup=reply_markup)
    except BadRequest as e:
        if "not modified" in e.message.lower():
            return  # a double tap: the first press already showed it
        log.info("pressed message not edited (%s): sent anew", e.message)
        await reply(update, text, reply_markup=reply_markup, parse_mode=parse_mode)


def anonymous_admin(update: Update) -> bool:
    """A group admin posting with "Remain anonymous": Telegram sends the message from
    @GroupAnonymousBot with the group itself as `sender_chat`. Only admins can do that."""
    msg, chat = update.effective_message, update.effective_chat
    return (msg is not None and chat is not None and chat.type in ("group", "supergroup")
            and msg.sender_chat is not None and msg.sender_chat.id == chat.id)


# A member asking a group the same thing again within this long gets the earlier answer
# edited in place: edits do not count against the group's 20 messages a minute.
READ_AGAIN = 60.0


async def read_reply(update: Update, context: Context, what: str, text: str) -> None:
    """The answer to a read command (/help, /feedstats). In a group, repeats by the same
    member are collapsed into their earlier answer (edited only if it changed)."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None or chat.type == "private":
        await reply(update, text)
        return
    reads = context.bot_data.group_reads
    key = (chat.id, user.id, what)
    now = time.monotonic()
    last = reads.get(key)
    if last is not None and now - last[1] < READ_AGAIN:
        message_id, first, shown = last
        if shown == text:
            return  # the answer above is still the answer
        try:
            await context.bot.edit_message_text(
                text, chat_id=chat.id, message_id=message_id, parse_mode=ParseMode.HTML,
                disable_web_page_preview=True)
            reads[key] = (message_id, first, text)
            return
        except BadRequest as e:
            if "not modified" in e.message.lower():
                reads[key] = (message_id, first, text)
                return
            # Deleted by an admin, or too old to edit: answer anew below.
    msg = await reply(update, text)
    if msg is not None:
        if len(reads) > 10_000:
            for k in [k for k, v in reads.items() if now - v[1] >= READ_AGAIN]:
                del reads[k]
        reads[key] = (msg.message_id, now, text)
