"""The Telegram implementation of bot.notify.Notifier (design rule 1)."""

from __future__ import annotations

import logging
from typing import Any

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden

from bot.notify import Keyboard, Sent
from handlers.render import markup

log = logging.getLogger(__name__)


class TelegramNotifier:
    def __init__(self, bot: Bot, on_blocked: Any = None) -> None:
        self.bot = bot
        self.on_blocked = on_blocked

    async def _blocked(self, chat_id: int) -> None:
        if self.on_blocked is not None:
            await self.on_blocked(chat_id)

    async def send(self, chat_id: int, text: str, *, buttons: Keyboard | None = None,
                   silent: bool = False, kind: str = "reply") -> Sent | None:
        try:
            msg = await self.bot.send_message(
                chat_id, text, parse_mode=ParseMode.HTML, reply_markup=markup(buttons),
                disable_notification=silent, disable_web_page_preview=True)
        except Forbidden:
            await self._blocked(chat_id)
            return None
        return Sent(chat_id, msg.message_id)

    async def edit(self, chat_id: int, message_id: int, text: str, *,
                   buttons: Keyboard | None = None) -> bool:
        try:
            await self.bot.edit_message_text(
                text, chat_id=chat_id, message_id=message_id, parse_mode=ParseMode.HTML,
                reply_markup=markup(buttons), disable_web_page_preview=True)
        except BadRequest as e:
            if "not modified" in str(e).lower():
                return True
            log.info("edit failed in %s: %s", chat_id, e)
            return False
        except Forbidden:
            await self._blocked(chat_id)
            return False
        return True

    async def photo(self, chat_id: int, png: bytes, *, caption: str = "", silent: bool = False,
                    kind: str = "reply") -> Sent | None:
        try:
            msg = await self.bot.send_photo(chat_id, png, caption=caption or None,
                                            parse_mode=ParseMode.HTML,
                                            disable_notification=silent)
        except Forbidden:
            await self._blocked(chat_id)
            return None
        return Sent(chat_id, msg.message_id)

    async def delete(self, chat_id: int, message_id: int) -> bool:
        try:
            return bool(await self.bot.delete_message(chat_id, message_id))
        except (BadRequest, Forbidden):
            return False
