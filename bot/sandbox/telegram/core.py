"""The emulator's world state and the bookkeeping every part shares: bots, emulated time,
stored messages, who sees what, and the update queues.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from .errors import ApiError
from .limits import Clock, FloodLimiter, FloodLimits
from .rules import OPT_IN_UPDATES
from .state import (
    ADMIN,
    JSON,
    KICKED,
    OWNER,
    RESTRICTED,
    ApiCall,
    BotAccount,
    CallbackQuery,
    Chat,
    Message,
    StoredFile,
    User,
)

Files = dict[str, tuple[str, bytes, str]]  # field -> (filename, bytes, content type)
Handler = Callable[[BotAccount, JSON, Files], Awaitable[Any]]


@dataclass
class _Refusal:
    bot_id: int
    method: str  # lower-case
    chat_id: int | None
    left: int
    error: ApiError


class EmulatorCore:
    """State, time, bots and message delivery."""

    def __init__(
        self,
        limits: FloodLimits | None = None,
        *,
        clock: Clock | None = None,
        quiet_period: float = 0.05,
        max_long_poll: float = 50.0,
        allow_loopback_http_webhooks: bool = False,
        webhook_seed: int = 0,
    ) -> None:
        """`allow_loopback_http_webhooks`: a test-only allowance for `http://127.0.0.1:PORT`
        webhooks (Telegram itself takes only https on ports 443, 80, 88 and 8443)."""
        self.allow_loopback_http_webhooks = allow_loopback_http_webhooks
        # Concurrent webhook deliveries start in a shuffled order, as they can arrive from
        # Telegram; seeded so that a failure can be replayed.
        self._webhook_random = random.Random(webhook_seed)
        self._clock = clock
        self._limits = limits or FloodLimits()
        self._limiter = FloodLimiter(self._limits, clock)
        # Emulated time when no clock is given: real time x limits.time_scale, continued
        # across changes of the scale so it never runs backwards.
        self._epoch_real = time.monotonic()
        self._epoch_emulated = 0.0
        self._refusals: list[_Refusal] = []
        self._wrote: dict[int, float] = {}  # chat id -> when a person last wrote or pressed
        self.quiet_period = quiet_period
        self.max_long_poll = max_long_poll
        self._bots: dict[str, BotAccount] = {}
        self._default_bot: BotAccount | None = None
        self._users: dict[int, User] = {}
        self._chats: dict[int, Chat] = {}
        self._dialogs: dict[tuple[int, int], list[Message]] = {}
        self._files: dict[str, StoredFile] = {}
        self._queries: dict[str, CallbackQuery] = {}
        self.calls: list[ApiCall] = []
        self.internal_errors: list[BaseException] = []
        self._ids = itertools.count(1)
        self._user_ids = itertools.count(100_001)
        self._group_ids = itertools.count(4_000_001)
        self._query_ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._inflight = 0
        self._last_activity = time.monotonic()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._webhook_tasks: dict[str, asyncio.Task[None]] = {}
        self.webhook_posts: list[int] = []  # update_ids in the order they were posted
        self._channel_ids = itertools.count(2_000_001)
        self._session: aiohttp.ClientSession | None = None
        self._methods: dict[str, tuple[str, Handler]] = {}
        # A fault: every Bot API answer but getUpdates' comes this many real seconds late,
        # after its effect (Telegram slow to answer: the message is in the chat already).
        self.latency = 0.0

    @property
    def limits(self) -> FloodLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: FloodLimits) -> None:
        # New limits start from full buckets, as if the bot had been quiet for a while.
        self._epoch_emulated, self._epoch_real = self.now(), time.monotonic()
        self._limits = limits
        self._limiter = FloodLimiter(limits, self._clock)

    def now(self) -> float:
        """Emulated seconds: the test's clock when one is set, else real time running
        `limits.time_scale` times faster. Flood windows and the callback deadline use it."""
        if self._clock is not None:
            return self._clock()
        real = time.monotonic() - self._epoch_real
        return self._epoch_emulated + real * self._limits.time_scale

    def refuse_next(self, method: str, description: str = "Bad Request: message can't be "
                    "edited", *, code: int = 400, times: int = 1,
                    bot: BotAccount | User | str | None = None, chat: Chat | None = None,
                    retry_after: float | None = None) -> None:
        """The bot's next `times` calls of `method` (to `chat`, if given) fail with this
        error before they take effect (a fault for tests: Telegram refusing one edit, one
        send, ...). `retry_after` (real seconds) makes it a 429 of the flood control."""
        parameters = None
        if retry_after is not None:
            code, parameters = 429, {"retry_after": retry_after}
        self._refusals.append(_Refusal(self.bot(bot).id, method.lower(),
                                       None if chat is None else chat.id, times,
                                       ApiError(code, description, parameters)))

    @property
    def clock(self) -> Clock | None:
        return self._clock

    @clock.setter
    def clock(self, clock: Clock | None) -> None:
        """Drive flood control and the press deadline from a test's own clock (emulated
        seconds); None = real time, scaled by `limits.time_scale`."""
        if clock is None:
            self._epoch_emulated, self._epoch_real = self.now(), time.monotonic()
        self._clock = clock
        self._limiter = FloodLimiter(self._limits, clock)

    def add_bot(
        self,
        token: str,
        username: str,
        first_name: str = "Bot",
        *,
        privacy_mode: bool = True,
    ) -> User:
        """Register a bot. Privacy mode is on, as BotFather sets it: in groups where the bot
        is not an admin it gets only `/cmd@bot`, general commands when it was the last bot to
        post, replies to its messages and service messages. `privacy_mode=False` is a bot
        whose owner turned it off in BotFather (/setprivacy): it reads everything."""
        prefix = token.split(":", 1)[0]
        bot_id = int(prefix) if prefix.isdigit() else 7_000_000 + len(self._bots) + 1
        user = User(bot_id, first_name, username=username, is_bot=True, language_code=None)
        account = BotAccount(token=token, user=user, privacy_mode=privacy_mode)
        self._bots[token] = account
        self._users[bot_id] = user
        if self._default_bot is None:
            self._default_bot = account
        return user

    def bot(self, ref: BotAccount | User | str | None = None) -> BotAccount:
        """The bot account named by token, username, its User or None (the first bot)."""
        if isinstance(ref, BotAccount):
            return ref
        if ref is None:
            if self._default_bot is None:
                raise RuntimeError("no bot registered: call add_bot() first")
            return self._default_bot
        for account in self._bots.values():
            if ref in (account.token, account.username, account.user) or (
                isinstance(ref, str) and ref.lstrip("@").lower() == account.username.lower()
            ):
                return account
        raise KeyError(f"unknown bot {ref!r}")

    def _notify(self) -> None:
        # A fresh Event per change lets sync code wake every async waiter without a lock.
        self._changed.set()
        self._changed = asyncio.Event()

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    def _bot_by_id(self, bot_id: int) -> BotAccount:
        for account in self._bots.values():
            if account.id == bot_id:
                return account
        raise KeyError(f"no bot with id {bot_id}")

    def _owner(self, chat: Chat) -> User | None:
        for uid, status in chat.members.items():
            if status == OWNER:
                return self._users.get(uid)
        return None

    def _dialog_key(self, chat: Chat, bot: BotAccount | None) -> tuple[int, int]:
        # Private chats share the user's id across bots but each bot has its own dialog.
        if chat.is_group or chat.type == "channel":
            return (0, chat.id)
        if bot is None:
            raise ValueError("a private chat needs its bot")
        return (bot.id, chat.id)

    def _store(self, bot: BotAccount | None, chat: Chat, sender: User, **fields: Any) -> Message:
        key = self._dialog_key(chat, bot)
        dialog = self._dialogs.setdefault(key, [])
        message_id = dialog[-1].message_id + 1 if dialog else 1
        message = Message(message_id, chat, sender, int(time.time()), **fields)
        dialog.append(message)
        if chat.is_group and bot is not None and sender is bot.user:
            chat.last_bot_id = bot.id
        self._notify()
        return message

    def _recipients(self, chat: Chat, bot: BotAccount | User | str | None) -> list[BotAccount]:
        if not chat.is_group:
            return [self.bot(bot)]
        return [a for a in self._bots.values() if chat.present(a.id)]

    def _sees(self, account: BotAccount, chat: Chat, message: Message) -> bool:
        """Privacy mode (core.telegram.org/bots/features#privacy-mode): a bot that is not an
        admin of the group gets only commands addressed to it (`/cmd@bot`), general
        commands if it was the last bot to post there, and replies to its own messages.
        Mentions and plain text do not reach it. (Service messages bypass this check.)"""
        if not chat.is_group or not account.privacy_mode or chat.is_admin(account.id):
            return True
        if message.reply_to is not None and message.reply_to.sender is account.user:
            return True
        command = next((e for e in message.entities if e.get("type") == "bot_command"
                        and e.get("offset") == 0), None)
        if command is None or message.text is None:
            return False
        word = message.text[: command["length"]]
        if "@" in word:
            return word.split("@", 1)[1].lower() == account.username.lower()
        return chat.last_bot_id == account.id

    def _deliver_message(
        self,
        chat: Chat,
        message: Message,
        kind: str,
        *,
        bot: BotAccount | User | str | None = None,
        service: bool = False,
    ) -> None:
        if not service:
            self._wrote[chat.id] = self.now()
        for account in self._recipients(chat, bot):
            if service or self._sees(account, chat, message):
                self._enqueue(account, kind, message.to_api())

    def _member_change(self, chat: Chat, actor: User, who: User, old: str, new: str) -> JSON:
        return {
            "chat": chat.to_api(),
            "from": actor.to_api(),
            "date": int(time.time()),
            "old_chat_member": self._member_json(who, old, chat),
            "new_chat_member": self._member_json(who, new, chat),
        }

    def _member_update(self, chat: Chat, actor: User, who: User, old: str, new: str,
                       *, old_json: JSON | None = None) -> None:
        change = self._member_change(chat, actor, who, old, new)
        if old_json is not None:
            change["old_chat_member"] = old_json
        for account in self._bots.values():
            if account.user is who:
                self._enqueue(account, "my_chat_member", change)
            elif chat.is_admin(account.id):
                # Only admin bots hear about other members, and only if they asked for it.
                self._enqueue(account, "chat_member", change)

    def _enqueue(self, account: BotAccount, kind: str, payload: JSON) -> None:
        allowed = account.allowed_updates
        if (allowed and kind not in allowed) or (not allowed and kind in OPT_IN_UPDATES):
            return
        update = {"update_id": account.next_update_id, kind: payload}
        account.next_update_id += 1
        account.updates.append(update)
        self._notify()

    @staticmethod
    def _member_json(user: User, status: str, chat: Chat | None = None) -> JSON:
        data: JSON = {"status": status, "user": user.to_api()}
        if status == OWNER:
            data["is_anonymous"] = False
        elif status == RESTRICTED:
            data.update(
                is_member=True,
                until_date=0,
                can_send_messages=False,
                can_send_audios=False,
                can_send_documents=False,
                can_send_photos=False,
                can_send_videos=False,
                can_send_video_notes=False,
                can_send_voice_notes=False,
                can_send_polls=False,
                can_send_other_messages=False,
                can_add_web_page_previews=False,
                can_change_info=False,
                can_invite_users=False,
                can_pin_messages=False,
                can_manage_topics=False,
                can_edit_tag=False,
                can_react_to_messages=True,
            )
        elif status == ADMIN:
            data.update(
                can_be_edited=False,
                is_anonymous=False,
                can_manage_chat=True,
                can_delete_messages=chat is None or chat.can(user.id, "can_delete_messages"),
                can_manage_video_chats=True,
                can_restrict_members=True,
                can_promote_members=False,
                can_change_info=True,
                can_invite_users=True,
                can_post_stories=True,
                can_edit_stories=True,
                can_delete_stories=True,
                can_pin_messages=chat is None or chat.can(user.id, "can_pin_messages"),
            )
        elif status == KICKED:
            data["until_date"] = 0
        elif status == RESTRICTED:
            data.update(is_member=True, until_date=0, can_edit_tag=False,
                        can_add_web_page_previews=False, can_manage_topics=False)
            for right in ("change_info", "invite_users", "pin_messages", "send_messages",
                          "send_polls", "send_other_messages", "send_audios",
                          "send_documents", "send_photos", "send_videos", "send_video_notes",
                          "send_voice_notes", "react_to_messages"):
                data[f"can_{right}"] = False
        return data
