"""The Telegram implementation of bot.notify.Notifier (design rule 1).

It only talks to Telegram and translates its failures into the delivery queue's terms
(bot.notify.RetryLater / Unreachable / Transient); pacing, retries and settings live in
bot.notify.DeliveryQueue, which wraps this class.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from telegram import Bot, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter
from telegram.ext import ExtBot

from bot.notify import (
    PRIORITY,
    Edited,
    Keyboard,
    RetryLater,
    Sent,
    Transient,
    Unreachable,
    on_wire,
)
from handlers.ratelimit import Pace
from handlers.render import markup

log = logging.getLogger(__name__)

T = TypeVar("T")

# BadRequest texts that mean the chat itself is gone, not that this message was wrong.
_GONE = ("chat not found", "user is deactivated", "bot was kicked")
# A restricted bot ("not enough rights to send text messages to the chat"): admins can give
# the right back at any time, so the message waits and is tried again; the chat is not gone.
_NO_RIGHTS = ("not enough rights to send", "have no rights to send")
NO_RIGHTS_RETRY = 30.0  # seconds
# The forum topic a later post was meant for was closed or deleted meanwhile.
_TOPIC_GONE = ("topic_closed", "message thread not found", "topic_deleted")
# An edit refused for good: the message was deleted, or it is no text message (a photo).
# Not "message can't be edited": Telegram also says that of a message it will take an edit
# of later (the chaos run's refused edits), and a card sent anew would then show twice.
MESSAGE_GONE = ("message to edit not found", "there is no text in the message to edit")


def refused_edit(e: BadRequest) -> Edited:
    """What a refused edit means for the message: "not modified" is a message already
    showing the text (a double tap), a deleted one can never be edited, anything else
    may be tried again (the repair sweep)."""
    words = str(e).lower()
    if "not modified" in words:
        return Edited.SHOWN
    return Edited.GONE if any(w in words for w in MESSAGE_GONE) else Edited.FAILED


def retry_seconds(e: RetryAfter) -> float:
    """RetryAfter's value without touching the deprecated int/timedelta property."""
    raw: Any = getattr(e, "_retry_after", None)
    if isinstance(raw, timedelta):
        return raw.total_seconds()
    return float(raw or 1)


async def _call(chat_id: int, fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return await fn()
    except RetryAfter as e:
        raise RetryLater(retry_seconds(e)) from e
    except Forbidden as e:
        raise Unreachable(str(e)) from e
    except ChatMigrated:
        raise  # TelegramNotifier._follow moves the chat and sends again
    except BadRequest as e:
        if any(s in str(e).lower() for s in _GONE):
            raise Unreachable(str(e)) from e
        if any(s in str(e).lower() for s in _NO_RIGHTS):
            raise RetryLater(NO_RIGHTS_RETRY) from e
        raise
    except NetworkError as e:  # includes TimedOut; BadRequest is handled above
        raise Transient(str(e)) from e


class TelegramNotifier:
    def __init__(self, bot: Bot,
                 on_migrated: Callable[[int, int], Awaitable[object]] | None = None) -> None:
        self.bot = bot
        self.on_migrated = on_migrated

    async def _follow(self, chat_id: int, fn: Callable[[int], Awaitable[T]]) -> tuple[int, T]:
        """Call `fn(chat_id)`; if the group became a supergroup, move it and call again."""
        try:
            return chat_id, await fn(chat_id)
        except ChatMigrated as e:
            if self.on_migrated is None:
                raise Unreachable(str(e)) from e
            new = int(e.new_chat_id)
            await self.on_migrated(chat_id, new)
        try:
            return new, await fn(new)
        except ChatMigrated as e:  # moved twice in a row: give up on this message
            raise Unreachable(str(e)) from e

    def _limited(self) -> bool:
        """A rate limiter (handlers.ratelimit) sits between us and the wire: it says
        ON_WIRE at the last moment, so this class must not say it too."""
        return isinstance(self.bot, ExtBot) and self.bot.rate_limiter is not None

    def _pace(self, kind: str) -> dict[str, Any]:
        """The rate limiter's place in a group's line (handlers.ratelimit): by kind; the
        delivery queue retries 429s itself, so the limiter does not."""
        if self._limited():
            return {"rate_limit_args": Pace(priority=PRIORITY.get(kind, 2), retries=0)}
        return {}

    async def _in_topic(self, chat_id: int, thread_id: int | None, kind: str,
                        fn: Callable[[int, int | None], Awaitable[T]]) -> tuple[int, T]:
        """Post in `thread_id`; if that topic is closed or gone, once more in General."""
        try:
            return await self._follow(chat_id, lambda cid: _call(cid, lambda: fn(cid, thread_id)))
        except BadRequest as e:
            if thread_id is None or not any(s in str(e).lower() for s in _TOPIC_GONE):
                raise
            log.info("topic %s of %s refused a %s (%s): posting in General",
                     thread_id, chat_id, kind, e)
        return await self._follow(chat_id, lambda cid: _call(cid, lambda: fn(cid, None)))

    async def send(self, chat_id: int, text: str, *, buttons: Keyboard | None = None,
                   silent: bool = False, kind: str = "reply",
                   thread_id: int | None = None) -> Sent | None:
        pace = self._pace(kind)

        async def post(cid: int, th: int | None) -> Message:
            if not pace:
                await on_wire()  # no rate limiter to say it at the last moment
            return await self.bot.send_message(
                cid, text, parse_mode=ParseMode.HTML, reply_markup=markup(buttons),
                disable_notification=silent, disable_web_page_preview=True,
                message_thread_id=th, **pace)

        try:
            chat_id, msg = await self._in_topic(chat_id, thread_id, kind, post)
        except BadRequest as e:
            log.error("Telegram refused a %s message to %s: %s", kind, chat_id, e)
            return None
        return Sent(chat_id, msg.message_id)

    async def edit(self, chat_id: int, message_id: int, text: str, *,
                   buttons: Keyboard | None = None) -> Edited:
        async def put() -> Any:
            if not self._limited():
                # Telegram's 30 a second counts edits too: the delivery queue's wire gate
                # waits here (with a rate limiter, the limiter says it).
                await on_wire()
            return await self.bot.edit_message_text(
                text, chat_id=chat_id, message_id=message_id, parse_mode=ParseMode.HTML,
                reply_markup=markup(buttons), disable_web_page_preview=True)

        try:
            await _call(chat_id, put)
        except BadRequest as e:
            edited = refused_edit(e)
            if edited is not Edited.SHOWN:
                log.info("edit failed in %s: %s", chat_id, e)
            return edited
        except ChatMigrated:
            return Edited.GONE  # the message stayed behind in the old group
        return Edited.SHOWN

    async def photo(self, chat_id: int, png: bytes, *, caption: str = "", silent: bool = False,
                    kind: str = "reply", thread_id: int | None = None) -> Sent | None:
        pace = self._pace(kind)

        async def post(cid: int, th: int | None) -> Message:
            if not pace:
                await on_wire()  # as in send: the delivery queue's wire gate waits here
            return await self.bot.send_photo(
                cid, png, caption=caption or None, parse_mode=ParseMode.HTML,
                disable_notification=silent, message_thread_id=th, **pace)

        try:
            chat_id, msg = await self._in_topic(chat_id, thread_id, kind, post)
        except BadRequest as e:
            log.error("Telegram refused a %s photo to %s: %s", kind, chat_id, e)
            return None
        return Sent(chat_id, msg.message_id)

    async def delete(self, chat_id: int, message_id: int) -> bool:
        try:
            return bool(await self.bot.delete_message(chat_id, message_id))
        except (BadRequest, Forbidden, ChatMigrated):
            return False

    async def unpin(self, chat_id: int, message_id: int) -> bool:
        try:
            return bool(await self.bot.unpin_chat_message(chat_id, message_id))
        except (BadRequest, Forbidden, ChatMigrated) as e:
            log.info("message %s/%s not unpinned: %s", chat_id, message_id, e)
            return False
