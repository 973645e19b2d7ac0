"""A local Telegram Bot API server for tests and the offline sandbox.

The real python-telegram-bot client talks to it over loopback exactly as it talks to
api.telegram.org (`base_url(emulator.url + "/bot")`). Answers, status codes and error wording
follow the real server, flood control included, so what works here works there.
Tests play the user through the control API (`send_text`, `press`, ...) and read the chats
back as a person would see them (`chat_messages`), waiting with `idle()` / `wait_*` rather
than sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import re
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from .entities import EntityParseError, auto_entities, parse_html, strip_text, utf16_len
from .errors import (
    ApiError,
    bad_request,
    conflict,
    forbidden,
    not_found,
    too_many_requests,
    unauthorized,
)
from .limits import Clock, FloodLimiter, FloodLimits
from .state import (
    ADMIN,
    JSON,
    KICKED,
    LEFT,
    MEMBER,
    OWNER,
    RESTRICTED,
    SERVICE_USER_ID,
    ApiCall,
    BotAccount,
    CallbackAnswer,
    CallbackQuery,
    Chat,
    Message,
    StoredFile,
    Topic,
    User,
)

log = logging.getLogger(__name__)

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_CALLBACK_ANSWER = 200
# Telegram drops a callback query about 15 s after the press; answering later fails.
CALLBACK_DEADLINE = 15.0
TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
# A message to a chat where someone wrote this recently (emulated seconds) is a reply;
# others are bulk notifications, held to the ~30/s overall.
REPLY_WINDOW = 60.0
# Sent unless a bot asks for them by name, as on the real server.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_INLINE_BUTTON_ACTIONS = (
    "callback_data",
    "url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "login_url",
    "web_app",
    "copy_text",
    "callback_game",
    "pay",
)
_COUNTED = frozenset({"sendMessage", "sendPhoto", "sendDocument"})
_EDITS = frozenset({"editMessageText", "editMessageCaption", "editMessageReplyMarkup"})
_PHOTO_SIDES = (90, 320, 800, 1280)
_MISSING_MESSAGE_ID = "message identifier is not specified"
# deleteMessage works only on messages younger than this (Bot API docs).
DELETE_WINDOW = 48 * 3600
WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})
_SECRET_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_WHAT = {"sendMessage": "text messages", "sendPhoto": "photos", "sendDocument": "documents"}

Files = dict[str, tuple[str, bytes, str]]  # field -> (filename, bytes, content type)
Handler = Callable[[BotAccount, JSON, Files], Awaitable[Any]]


# Telegram's stand-in sender for anonymous group admins (the same id on the real server).
GROUP_ANONYMOUS_BOT = User(1087968824, "Group", "GroupAnonymousBot", is_bot=True,
                           language_code=None)
# Telegram's sender of posts auto-forwarded from a channel into its discussion group.
TELEGRAM_SERVICE = User(SERVICE_USER_ID, "Telegram", language_code=None)


@dataclass
class _Refusal:
    bot_id: int
    method: str  # lower-case
    chat_id: int | None
    left: int
    error: ApiError


class TelegramEmulator:
    """The Bot API server plus the world behind it (users, chats) and a control API."""

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
        for name in (
            "getMe",
            "logOut",
            "close",
            "getUpdates",
            "setWebhook",
            "deleteWebhook",
            "getWebhookInfo",
            "sendMessage",
            "sendPhoto",
            "sendDocument",
            "editMessageText",
            "editMessageCaption",
            "editMessageReplyMarkup",
            "deleteMessage",
            "answerCallbackQuery",
            "getFile",
            "sendChatAction",
            "setMyCommands",
            "getMyCommands",
            "deleteMyCommands",
            "getChat",
            "getChatMember",
            "getChatAdministrators",
            "getChatMemberCount",
            "leaveChat",
        ):
            self._methods[name.lower()] = (name, getattr(self, f"_api_{name}"))

    # ------------------------------------------------------------------ server

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        self._closing = False
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1] if sockets else port
        self._host = host

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        for task in self._webhook_tasks.values():
            task.cancel()
        for task in self._webhook_tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._webhook_tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{self._host}:{self._port}"

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

    # ------------------------------------------------------------- setup: bots

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

    # ------------------------------------------------------ setup: the world

    def user(
        self,
        id: int | None = None,
        first_name: str = "User",
        username: str | None = None,
        *,
        last_name: str | None = None,
        language_code: str | None = "en",
    ) -> User:
        uid = id if id is not None else next(self._user_ids)
        user = User(uid, first_name, username, last_name, False, language_code)
        self._users[uid] = user
        return user

    def private_chat(
        self, user: User, *, bot: BotAccount | User | str | None = None, started: bool = True
    ) -> Chat:
        """The user's private chat with a bot; `started` = the user has pressed Start, so the
        bot may write first (otherwise it gets "bot can't initiate conversation")."""
        chat = self._chats.get(user.id)
        if chat is None:
            chat = Chat(user.id, "private", user=user)
            self._chats[user.id] = chat
        if started:
            self.bot(bot).started.add(user.id)
        return chat

    def group(
        self,
        title: str,
        members: Iterable[User] = (),
        admins: Iterable[User] = (),
        *,
        supergroup: bool = False,
        bots: Iterable[BotAccount | User | str] | None = None,
        bot_admin: bool = False,
        username: str | None = None,
        forum: bool = False,
    ) -> Chat:
        """A group with these people in it; the first admin owns it. The default bot is a
        member (an admin with `bot_admin`) unless `bots` names others. No updates are sent.
        `forum`: a supergroup with topics (create them with `create_topic`)."""
        n = next(self._group_ids)
        supergroup = supergroup or forum
        chat_id = -(1_000_000_000_000 + n) if supergroup else -n
        chat = Chat(chat_id, "supergroup" if supergroup else "group", title, username,
                    is_forum=forum)
        admin_list = list(admins)
        for user in members:
            chat.members[user.id] = MEMBER
        for index, user in enumerate(admin_list):
            chat.members[user.id] = OWNER if index == 0 else ADMIN
        for ref in [None] if bots is None else bots:
            account = self.bot(ref)
            chat.members[account.id] = ADMIN if bot_admin else MEMBER
        self._chats[chat_id] = chat
        return chat

    def join(self, chat: Chat, user: User) -> Message:
        """A person joins: a `new_chat_members` message and a `chat_member` update."""
        old = chat.status(user.id)
        chat.members[user.id] = MEMBER
        message = self._store(None, chat, user, service={"new_chat_members": [user.to_api()]})
        self._deliver_message(chat, message, "message", service=True)
        self._member_update(chat, user, user, old, MEMBER)
        return message

    def leave(self, chat: Chat, user: User) -> Message:
        old = chat.status(user.id)
        chat.members[user.id] = LEFT
        message = self._store(None, chat, user, service={"left_chat_member": user.to_api()})
        self._deliver_message(chat, message, "message", service=True)
        self._member_update(chat, user, user, old, LEFT)
        return message

    def kick(self, chat: Chat, who: User, *, by: User | None = None) -> Message:
        """An admin removes (bans) a member: a `left_chat_member` message and a
        `chat_member` update (kicked); getChatMember answers "kicked" from then on."""
        old = chat.status(who.id)
        chat.members[who.id] = KICKED
        actor = by or self._owner(chat) or who
        message = self._store(None, chat, actor, service={"left_chat_member": who.to_api()})
        self._deliver_message(chat, message, "message", service=True)
        self._member_update(chat, actor, who, old, KICKED)
        return message

    def add_bot_to_group(
        self,
        chat: Chat,
        bot: BotAccount | User | str | None = None,
        *,
        by: User,
        admin: bool = False,
    ) -> None:
        account = self.bot(bot)
        old = chat.status(account.id)
        new = ADMIN if admin else MEMBER
        chat.members[account.id] = new
        self._member_update(chat, by, account.user, old, new)
        message = self._store(None, chat, by, service={"new_chat_members": [account.user.to_api()]})
        self._deliver_message(chat, message, "message", service=True)

    def remove_bot_from_group(
        self, chat: Chat, bot: BotAccount | User | str | None = None, *, by: User
    ) -> None:
        """Someone kicks the bot out: it gets `my_chat_member` and then 403 on every send.
        `add_bot_to_group` brings it back (kicked -> member, with `my_chat_member`)."""
        account = self.bot(bot)
        old = chat.status(account.id)
        self._member_update(chat, by, account.user, old, KICKED)
        chat.members[account.id] = KICKED

    def restrict(self, chat: Chat, who: User, *, by: User | None = None) -> None:
        """An admin takes "Send messages" away: the member stays in the group
        ("restricted", is_member); a restricted bot gets 400 "not enough rights" on sends."""
        self._set_status(chat, who, RESTRICTED, by)

    def deactivate(self, user: User) -> None:
        """The user deletes their account: sends to them answer 403 "user is deactivated"."""
        user.deactivated = True

    def promote(self, chat: Chat, who: User, *, by: User | None = None,
                can_delete_messages: bool = True) -> None:
        if can_delete_messages:
            chat.rights.pop(who.id, None)
        else:
            chat.rights[who.id] = {"can_delete_messages": False}
        self._set_status(chat, who, ADMIN, by)

    def demote(self, chat: Chat, who: User, *, by: User | None = None) -> None:
        self._set_status(chat, who, MEMBER, by)

    def _set_status(self, chat: Chat, who: User, status: str, by: User | None) -> None:
        old = chat.status(who.id)
        old_json = self._member_json(who, old, chat)
        chat.members[who.id] = status
        actor = by or self._owner(chat) or who
        self._member_update(chat, actor, who, old, status, old_json=old_json)

    # ------------------------------------------------ setup: forums, channels

    def create_topic(self, chat: Chat, name: str, *, by: User | None = None) -> Topic:
        """A forum topic; its id is the id of the service message that created it."""
        if not chat.is_forum:
            raise ValueError(f"{chat.title!r} is not a forum")
        creator = by or self._owner(chat)
        assert creator is not None
        message = self._store(None, chat, creator,
                              service={"forum_topic_created": {"name": name, "icon_color": 0}})
        topic = Topic(message.message_id, name)
        message.thread_id = topic.id
        chat.topics[topic.id] = topic
        self._deliver_message(chat, message, "message", service=True)
        return topic

    def close_topic(self, chat: Chat, topic: Topic | None) -> None:
        """Close a topic (None: General); bots' sends there get 400 TOPIC_CLOSED."""
        if topic is None:
            chat.general_closed = True
        else:
            topic.closed = True

    def channel(
        self,
        title: str,
        admins: Iterable[User] = (),
        *,
        bots: Iterable[BotAccount | User | str] | None = None,
        linked_group: Chat | None = None,
        username: str | None = None,
    ) -> Chat:
        """A channel; the first admin owns it, bots named (default: the default bot) are
        admins (only admins can be in a channel as bots). `linked_group` becomes its
        discussion group: every post is auto-forwarded there."""
        chat = Chat(-(1_000_000_000_000 + next(self._channel_ids)), "channel", title, username)
        for index, user in enumerate(admins):
            chat.members[user.id] = OWNER if index == 0 else ADMIN
        for ref in [None] if bots is None else bots:
            chat.members[self.bot(ref).id] = ADMIN
        if linked_group is not None:
            chat.linked_chat_id = linked_group.id
            linked_group.linked_chat_id = chat.id
        self._chats[chat.id] = chat
        return chat

    def post_to_channel(self, user: User, channel: Chat, text: str) -> Message:
        """An admin posts in the channel: admin bots get `channel_post`; the linked group
        gets an automatic forward from 777000 with the channel as `sender_chat`."""
        if channel.type != "channel" or not channel.is_admin(user.id):
            raise ValueError("only a channel's admins can post in it")
        post = self._store(None, channel, user, text=text, entities=auto_entities(text),
                           sender_chat=channel)
        for account in self._bots.values():
            if channel.is_admin(account.id):
                self._enqueue(account, "channel_post", post.to_api())
        group = self._chats.get(channel.linked_chat_id or 0)
        if group is not None:
            copy = self._store(None, group, TELEGRAM_SERVICE, text=text,
                               entities=auto_entities(text), sender_chat=channel,
                               automatic_forward=True)
            self._deliver_message(group, copy, "message")
        return post

    def age(self, message: Message, seconds: float) -> None:
        """Make `message` older (deleteMessage refuses messages over 48 hours old)."""
        message.date -= int(seconds)

    def block_bot(self, user: User, bot: BotAccount | User | str | None = None) -> None:
        account = self.bot(bot)
        account.blocked_by.add(user.id)
        chat = self.private_chat(user, bot=account, started=False)
        self._enqueue(
            account, "my_chat_member", self._member_change(chat, user, account.user, MEMBER, KICKED)
        )

    def unblock_bot(self, user: User, bot: BotAccount | User | str | None = None) -> None:
        account = self.bot(bot)
        account.blocked_by.discard(user.id)
        chat = self.private_chat(user, bot=account)
        self._enqueue(
            account, "my_chat_member", self._member_change(chat, user, account.user, KICKED, MEMBER)
        )

    def upgrade_to_supergroup(self, chat: Chat) -> Chat:
        """Basic group -> supergroup: the old id answers 400 with `migrate_to_chat_id`."""
        new = Chat(
            -(1_000_000_000_000 + next(self._group_ids)),
            "supergroup",
            chat.title,
            chat.username,
            members=dict(chat.members),
        )
        self._chats[new.id] = new
        chat.migrated_to = new.id
        # As Telegram does: a service message in each chat pointing at the other, sent by
        # the member who caused the upgrade (here: the owner).
        owner = next((self._users[uid] for uid, st in chat.members.items()
                      if st == OWNER and uid in self._users), None)
        if owner is not None:
            old_msg = self._store(None, chat, owner, service={"migrate_to_chat_id": new.id})
            self._deliver_message(chat, old_msg, "message", service=True)
            new_msg = self._store(None, new, owner, service={"migrate_from_chat_id": chat.id})
            self._deliver_message(new, new_msg, "message", service=True)
        return new

    # ------------------------------------------------------ the user's side

    def send_text(
        self,
        user: User,
        chat: Chat | None,
        text: str,
        *,
        reply_to: Message | None = None,
        bot: BotAccount | User | str | None = None,
        anonymous: bool = False,
        topic: Topic | None = None,
    ) -> Message:
        """The user types `text` in `chat` (None: their private chat with the bot); the
        update carries a `bot_command` entity for `/cmd` or `/cmd@BotName` like Telegram's.

        `anonymous`: an admin with "Remain anonymous" on posts in a group; like Telegram,
        the message comes from @GroupAnonymousBot with the group as `sender_chat`.
        `topic`: in a forum, the topic typed in (None: General, or the replied message's)."""
        chat = self._user_chat(user, chat, bot)
        thread = self._user_thread(chat, topic, reply_to)
        sender, sender_chat = user, None
        if anonymous:
            if not chat.is_group or not chat.is_admin(user.id):
                raise ValueError("only a group's admins can post anonymously")
            sender, sender_chat = GROUP_ANONYMOUS_BOT, chat
        message = self._store(
            self.bot(bot) if not chat.is_group else None,
            chat,
            sender,
            text=text,
            entities=auto_entities(text),
            reply_to=reply_to,
            sender_chat=sender_chat,
            thread_id=thread,
        )
        self._deliver_message(chat, message, "message", bot=bot)
        return message

    @staticmethod
    def _user_thread(chat: Chat, topic: Topic | None, reply_to: Message | None) -> int | None:
        if topic is not None:
            if chat.topics.get(topic.id) is not topic:
                raise ValueError(f"topic {topic.name!r} is not in {chat.title!r}")
            return topic.id
        return reply_to.thread_id if reply_to is not None else None

    def send_photo(
        self,
        user: User,
        chat: Chat | None,
        data: bytes,
        caption: str | None = None,
        *,
        bot: BotAccount | User | str | None = None,
    ) -> Message:
        chat = self._user_chat(user, chat, bot)
        stored, sizes = self._store_photo(data)
        message = self._store(
            self.bot(bot) if not chat.is_group else None,
            chat,
            user,
            photo=sizes,
            file=stored,
            caption=caption,
            caption_entities=auto_entities(caption or ""),
        )
        self._deliver_message(chat, message, "message", bot=bot)
        return message

    def send_document(
        self,
        user: User,
        chat: Chat | None,
        data: bytes,
        file_name: str,
        caption: str | None = None,
        *,
        mime_type: str = "application/octet-stream",
        bot: BotAccount | User | str | None = None,
    ) -> Message:
        chat = self._user_chat(user, chat, bot)
        stored, document = self._store_document(data, file_name, mime_type)
        message = self._store(
            self.bot(bot) if not chat.is_group else None,
            chat,
            user,
            document=document,
            file=stored,
            caption=caption,
            caption_entities=auto_entities(caption or ""),
        )
        self._deliver_message(chat, message, "message", bot=bot)
        return message

    def edit_text(self, user: User, message: Message, text: str) -> Message:
        """The user edits one of their messages: bots get an `edited_message` update."""
        if message.sender is not user or message.text is None:
            raise ValueError("a user can edit only their own text messages")
        message.history.append(message.text)
        message.text = text
        message.entities = auto_entities(text)
        message.edit_date = int(time.time())
        message.version += 1
        owner = next((bot_id for (bot_id, _), msgs in self._dialogs.items() if message in msgs), 0)
        bot = self._bot_by_id(owner) if owner else None
        self._deliver_message(message.chat, message, "edited_message", bot=bot)
        return message

    def press(
        self,
        user: User,
        message: Message,
        button: str,
        *,
        bot: BotAccount | User | str | None = None,
    ) -> str:
        """Press an inline button (by label, case-insensitive, or by callback_data); returns
        the callback query id. Waiting for the bot's reaction is the caller's business."""
        if message.deleted:
            raise ValueError(f"{message!r} was deleted")
        found: JSON | None = None
        for row in (message.reply_markup or {}).get("inline_keyboard", []):
            for candidate in row:
                if candidate.get("text", "").lower() == button.lower() or (
                    candidate.get("callback_data") == button
                ):
                    found = candidate
                    break
            if found:
                break
        if found is None:
            raise ValueError(f"no button {button!r} on {message!r}; it has {message.buttons}")
        if "callback_data" not in found:
            raise ValueError(f"button {button!r} is not a callback button: {found}")
        account = self._bot_by_id(message.sender.id) if message.from_bot else self.bot(bot)
        query_id = str(4_000_000_000_000_000 + next(self._query_ids))
        query = CallbackQuery(query_id, user, message, found["callback_data"], account.id,
                              pressed_at=self.now())
        self._queries[query_id] = query
        self._wrote[message.chat.id] = query.pressed_at
        self._enqueue(
            account,
            "callback_query",
            {
                "id": query_id,
                "from": user.to_api(),
                "message": message.to_api(),
                "chat_instance": str(abs(message.chat.id * 31 + account.id)),
                "data": query.data,
            },
        )
        return query_id

    # -------------------------------------------------------------- reading

    def chat_messages(
        self,
        chat: Chat,
        *,
        bot: BotAccount | User | str | None = None,
        include_deleted: bool = False,
    ) -> list[Message]:
        """The chat as its user sees it now: current texts, deleted messages gone (or kept
        with `deleted=True` when asked), buttons as `message.buttons`, photos' bytes."""
        messages = self._dialogs.get(self._dialog_key(chat, self.bot(bot)), [])
        return [m for m in messages if include_deleted or not m.deleted]

    def last_bot_message(
        self, chat: Chat, *, bot: BotAccount | User | str | None = None
    ) -> Message | None:
        for message in reversed(self.chat_messages(chat, bot=bot)):
            if message.from_bot:
                return message
        return None

    def bot_messages(
        self, chat: Chat, *, bot: BotAccount | User | str | None = None
    ) -> list[Message]:
        return [m for m in self.chat_messages(chat, bot=bot) if m.from_bot]

    def transcript(self, chat: Chat, *, bot: BotAccount | User | str | None = None) -> str:
        """The chat as plain lines (for failure messages and the terminal console)."""
        lines = []
        for message in self.chat_messages(chat, bot=bot):
            body = message.content or ("[photo]" if message.photo else "")
            if message.document:
                body = f"[file {message.document.get('file_name')}] {body}"
            lines.append(f"{message.sender.name}: {body}")
            lines.extend(f"    [{' | '.join(row)}]" for row in message.buttons)
        return "\n".join(lines)

    def answers(self, callback_id: str) -> CallbackAnswer | None:
        """How the bot answered a button press (None while unanswered)."""
        query = self._queries.get(callback_id)
        if query is None or not query.answered:
            return None
        return CallbackAnswer(query.answer_text, query.show_alert, query.url,
                              after=query.answered_at - query.pressed_at)

    def chat_actions(self, chat: Chat, *, bot: BotAccount | User | str | None = None) -> list[str]:
        return [action for chat_id, action in self.bot(bot).actions if chat_id == chat.id]

    def calls_to(self, method: str, *, status: int | None = None) -> list[ApiCall]:
        method = method.lower()
        return [
            c
            for c in self.calls
            if c.method.lower() == method and (status is None or c.status == status)
        ]

    def count(self, method: str | None = None, *, status: int | None = None) -> int:
        if method is None:
            return sum(1 for c in self.calls if status is None or c.status == status)
        return len(self.calls_to(method, status=status))

    def pending_updates(self, bot: BotAccount | User | str | None = None) -> list[JSON]:
        return list(self.bot(bot).updates)

    # -------------------------------------------------------------- waiting

    # The wait helpers take `timeout` (ASYNC109) because tests read better that way.
    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> Any:
        """Wait until `predicate()` is truthy (re-checked whenever the emulator's state
        changes); returns its value, raises TimeoutError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def wait_bot_message(
        self,
        chat: Chat,
        after: Message | int | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        bot: BotAccount | User | str | None = None,
    ) -> Message:
        """The first bot message in `chat` newer than `after` (default: the user's latest
        message there, i.e. the bot's reply to it)."""
        if after is None:
            user_messages = [m for m in self.chat_messages(chat, bot=bot) if not m.from_bot]
            after_id = user_messages[-1].message_id if user_messages else 0
        else:
            after_id = after.message_id if isinstance(after, Message) else after

        def found() -> Message | None:
            for message in self.chat_messages(chat, bot=bot):
                if message.from_bot and message.message_id > after_id:
                    return message
            return None

        try:
            result: Message = await self.wait_for(found, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no bot message after #{after_id} within {timeout}s; chat:\n"
                + self.transcript(chat, bot=bot)
            ) from None
        return result

    async def wait_edit(
        self,
        message: Message,
        *,
        since: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> Message:
        """Wait until `message` is edited (or deleted) after version `since` (default now)."""
        version = message.version if since is None else since
        await self.wait_for(lambda: message.version > version or message.deleted, timeout)
        return message

    async def idle(self, timeout: float = 5.0, quiet: float | None = None) -> None:  # noqa: ASYNC109
        """Return once every polling bot has confirmed all its updates, no request is being
        served and none has arrived for `quiet` seconds (default `quiet_period`)."""
        quiet = self.quiet_period if quiet is None else quiet
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            settled = self._inflight == 0 and all(
                not account.updates
                for account in self._bots.values()
                if account.polled or account.webhook_url
            )
            wait = deadline - now
            if settled:
                quiet_left = self._last_activity + quiet - now
                if quiet_left <= 0:
                    return
                wait = min(wait, quiet_left)
            if now >= deadline:
                pending = {a.username: len(a.updates) for a in self._bots.values()}
                raise TimeoutError(
                    f"bot not idle after {timeout}s: {self._inflight} request(s) in flight, "
                    f"unconfirmed updates {pending}"
                )
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(wait, 0.001))

    # ------------------------------------------------------------ internals

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

    def _user_chat(
        self, user: User, chat: Chat | None, bot: BotAccount | User | str | None
    ) -> Chat:
        if chat is None or not chat.is_group:
            account = self.bot(bot)
            # Writing to a bot starts the dialog and, as in the app, lifts a block (the bot
            # hears of that first, as `my_chat_member` kicked -> member).
            if user.id in account.blocked_by:
                self.unblock_bot(user, account)
            return self.private_chat(user, bot=account)
        if not chat.present(user.id):
            raise ValueError(f"{user.name} is not a member of {chat.title!r}")
        return chat

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
        if (allowed and kind not in allowed) or (not allowed and kind in _OPT_IN_UPDATES):
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
                can_pin_messages=True,
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

    # ------------------------------------------------------------ HTTP layer

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        method_name = request.match_info["method"]
        account = self._bots.get(token)
        if account is None:
            return self._reply(unauthorized().payload(), 401)
        entry = self._methods.get(method_name.lower())
        if entry is None:
            self._log(account, method_name, {}, 404, "Not Found")
            return self._reply(not_found().payload(), 404)
        canonical, handler = entry
        polling = canonical == "getUpdates"
        if not polling:
            self._inflight += 1
            self._touch()
        params: JSON = {}
        try:
            params, files = await self._read_params(request)
            refusal = self._take_refusal(account, canonical, params)
            if refusal is not None:
                raise refusal
            result = await handler(account, params, files)
            body: JSON = {"ok": True, "result": result}
            status, description = 200, None
            if not polling or result:
                self._touch()
        except ApiError as exc:
            body, status, description = exc.payload(), exc.code, exc.description
        except ConnectionResetError:
            # The client hung up mid-request (a bot stopping): nobody is left to answer.
            body, status, description = {"ok": False}, 499, "client went away"
        except Exception as exc:  # a bug here must not look like a server outage to the bot
            log.exception("emulator failed on %s", canonical)
            self.internal_errors.append(exc)
            err = bad_request(f"emulator error: {exc!r}")
            body, status, description = err.payload(), err.code, err.description
        finally:
            if not polling:
                self._inflight -= 1
                self._touch()
        self._log(account, canonical, params, status, description)
        self._notify()
        return self._reply(body, status)

    def _take_refusal(self, account: BotAccount, method: str,
                      params: JSON) -> ApiError | None:
        for refusal in self._refusals:
            if refusal.bot_id != account.id or refusal.method != method.lower():
                continue
            if refusal.chat_id is not None and str(params.get("chat_id")) != str(refusal.chat_id):
                continue
            refusal.left -= 1
            if refusal.left <= 0:
                self._refusals.remove(refusal)
            return refusal.error
        return None

    def _log(
        self,
        account: BotAccount,
        method: str,
        params: JSON,
        status: int,
        description: str | None,
    ) -> None:
        self.calls.append(ApiCall(account.username, method, params, status, description))

    @staticmethod
    def _reply(body: JSON, status: int) -> web.Response:
        return web.json_response(body, status=status)

    @staticmethod
    async def _read_params(request: web.Request) -> tuple[JSON, Files]:
        params: JSON = dict(request.query)
        files: Files = {}
        if not request.body_exists:
            return params, files
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad_request("JSON object expected")
            params.update(body)
            return params, files
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = (value.filename, value.file.read(), value.content_type)
                params[key] = f"<file {value.filename}>"
            else:
                params[key] = value
        return params, files

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] not in self._bots:
            return self._reply(unauthorized().payload(), 401)
        path = request.match_info["path"]
        for stored in self._files.values():
            if stored.file_path == path:
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return self._reply(not_found().payload(), 404)

    # -------------------------------------------------- parameter decoding

    @staticmethod
    def _opt_str(p: JSON, name: str) -> str | None:
        value = p.get(name)
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)

    @staticmethod
    def _opt_int(p: JSON, name: str) -> int | None:
        value = p.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise bad_request(f'field "{name}" must be of type Integer')
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f'field "{name}" must be of type Integer') from None

    @staticmethod
    def _opt_float(p: JSON, name: str) -> float | None:
        value = p.get(name)
        if value is None or value == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f'field "{name}" must be of type Number') from None

    @staticmethod
    def _bool(p: JSON, name: str) -> bool:
        value = p.get(name)
        return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))

    @staticmethod
    def _opt_json(p: JSON, name: str, error: str) -> Any:
        value = p.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(error) from None
        return value

    def _chat(self, account: BotAccount, p: JSON, *, name: str = "chat_id") -> Chat:
        """The chat a request names, if this bot can know it (else "chat not found")."""
        raw = p.get(name)
        if raw is None or raw == "":
            raise bad_request(f"{name} is empty")
        chat: Chat | None = None
        if isinstance(raw, str) and raw.startswith("@"):
            wanted = raw[1:].lower()
            chat = next(
                (
                    c
                    for c in self._chats.values()
                    if (c.username or "").lower() == wanted and c.is_group
                ),
                None,
            )
        else:
            try:
                chat = self._chats.get(int(raw))
            except (TypeError, ValueError):
                chat = None
            user = self._users.get(int(raw)) if chat is None and str(raw).isdigit() else None
            if user is not None and not user.is_bot:
                # A user the bot knows (from a group) but who never opened a chat with it:
                # the chat exists, the send is refused ("can't initiate conversation").
                chat = self.private_chat(user, bot=account, started=False)
        if chat is None:
            raise bad_request("chat not found")
        if (chat.is_group or chat.type == "channel") and account.id not in chat.members:
            raise bad_request("chat not found")
        return chat

    def _check_member(self, account: BotAccount, chat: Chat) -> None:
        if chat.migrated_to is not None:
            raise bad_request(
                "group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": chat.migrated_to},
            )
        if not chat.is_group and chat.type != "channel":
            return
        kind = {"supergroup": "supergroup chat", "channel": "channel chat"}.get(
            chat.type, "group chat")
        status = chat.status(account.id)
        if status == KICKED:
            raise forbidden(f"bot was kicked from the {kind}")
        if status == LEFT:
            raise forbidden(f"bot is not a member of the {kind}")

    def _check_can_send(self, account: BotAccount, chat: Chat,
                        what: str = "text messages") -> None:
        self._check_member(account, chat)
        if chat.is_group:
            if chat.status(account.id) == RESTRICTED:
                raise bad_request(f"not enough rights to send {what} to the chat")
            return
        if chat.type == "channel":
            if not chat.is_admin(account.id):
                raise bad_request("need administrator rights in the channel chat")
            return
        if chat.user is not None and chat.user.deactivated:
            raise forbidden("user is deactivated")
        if chat.id in account.blocked_by:
            raise forbidden("bot was blocked by the user")
        if chat.user is not None and chat.user.is_bot:
            raise forbidden("bot can't send messages to bots")
        if chat.id not in account.started:
            raise forbidden("bot can't initiate conversation with a user")

    def _format(
        self, raw: Any, parse_mode: str | None, entities_raw: Any, *, caption: bool = False
    ) -> tuple[str, list[JSON]]:
        text = raw if isinstance(raw, str) else json.dumps(raw)
        mode = (parse_mode or "").lower()
        entities: list[JSON]
        if mode == "html":
            try:
                text, entities = parse_html(text)
            except EntityParseError as exc:
                raise bad_request(f"can't parse entities: {exc}") from None
        elif mode in ("", "markdown", "markdownv2"):
            # Markdown modes are passed through unchecked: the bot formats with HTML.
            entities = []
            if entities_raw is not None and not mode:
                field = "caption_entities" if caption else "entities"
                parsed = entities_raw
                if isinstance(parsed, str):
                    try:
                        parsed = json.loads(parsed)
                    except ValueError:
                        raise bad_request(f"can't parse {field} JSON object") from None
                if not isinstance(parsed, list) or not all(isinstance(e, dict) for e in parsed):
                    raise bad_request(f'field "{field}" must be of type Array')
                entities = parsed
        else:
            raise bad_request(f"unsupported parse_mode {parse_mode!r}")
        return strip_text(text, entities)

    def _text(self, p: JSON) -> tuple[str, list[JSON]]:
        raw = p.get("text")
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise bad_request("message text is empty")
        text, entities = self._format(raw, self._opt_str(p, "parse_mode"), p.get("entities"))
        if not text:
            raise bad_request("message text is empty")
        # Telegram counts UTF-16 code units: an emoji outside the BMP counts twice.
        if utf16_len(text) > MAX_TEXT:
            raise bad_request("message is too long")
        return text, entities

    def _caption(self, p: JSON) -> tuple[str | None, list[JSON]]:
        raw = p.get("caption")
        if raw is None:
            return None, []
        text, entities = self._format(
            raw, self._opt_str(p, "parse_mode"), p.get("caption_entities"), caption=True
        )
        if utf16_len(text) > MAX_CAPTION:
            raise bad_request("message caption is too long")
        return (text or None), entities

    def _markup(self, p: JSON, *, inline_only: bool = False) -> tuple[JSON | None, JSON | None]:
        """(inline keyboard, other reply markup) from `reply_markup`, validated."""
        markup = self._opt_json(p, "reply_markup", "can't parse reply keyboard markup JSON object")
        if markup is None:
            return None, None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if inline_only:
                raise bad_request("inline keyboard expected")
            if not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
                raise bad_request("can't parse reply keyboard markup JSON object")
            return None, markup
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request('field "inline_keyboard" must be of type Array')
        for row in rows:
            for button in row:
                self._check_button(button)
        return {"inline_keyboard": rows}, None

    @staticmethod
    def _check_button(button: Any) -> None:
        if not isinstance(button, dict):
            raise bad_request(
                "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
            )
        if not isinstance(button.get("text"), str):
            raise bad_request(
                'can\'t parse inline keyboard button: Field "text" must be of type String'
            )
        if not any(k in button for k in _INLINE_BUTTON_ACTIONS):
            raise bad_request(
                "can't parse inline keyboard button: Text buttons are "
                "unallowed in the inline keyboard"
            )
        if "callback_data" in button:
            data = button["callback_data"]
            if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA:
                raise bad_request("BUTTON_DATA_INVALID")
        if "url" in button:
            url = button["url"]
            if not isinstance(url, str) or not url.lower().startswith(
                ("http://", "https://", "tg://")
            ):
                raise bad_request(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")

    def _thread(self, chat: Chat, p: JSON, reply_to: Message | None) -> int | None:
        """Where a bot's message lands in a forum: the topic asked for, else the replied
        message's topic, else General; a closed topic refuses it."""
        thread = self._opt_int(p, "message_thread_id")
        if not chat.is_forum:
            return None
        if thread is None and reply_to is not None:
            thread = reply_to.thread_id
        if thread is None:
            if chat.general_closed:
                raise bad_request("TOPIC_CLOSED")
            return None
        topic = chat.topics.get(thread)
        if topic is None:
            raise bad_request("message thread not found")
        if topic.closed:
            raise bad_request("TOPIC_CLOSED")
        return thread

    def _reply_target(self, account: BotAccount, chat: Chat, p: JSON) -> Message | None:
        params = self._opt_json(p, "reply_parameters", "can't parse reply parameters JSON object")
        allow_missing = self._bool(p, "allow_sending_without_reply")
        message_id: int | None
        if isinstance(params, dict):
            message_id = self._opt_int(params, "message_id")
            allow_missing = allow_missing or bool(params.get("allow_sending_without_reply"))
        else:
            message_id = self._opt_int(p, "reply_to_message_id")
        if message_id is None:
            return None
        target = self._find(account, chat, message_id)
        if target is None and not allow_missing:
            raise bad_request("message to be replied not found")
        return target

    def _find(self, account: BotAccount, chat: Chat, message_id: int) -> Message | None:
        for message in self._dialogs.get(self._dialog_key(chat, account), []):
            if message.message_id == message_id:
                return None if message.deleted else message
        return None

    def _flood(self, account: BotAccount, chat: Chat, *, edit: bool = False) -> None:
        # Answers to people who just wrote are not held to the bulk 30/s (TELEGRAM.md).
        bulk = self.now() - self._wrote.get(chat.id, float("-inf")) > REPLY_WINDOW
        retry_after = self._limiter.acquire(account.id, chat.id, group=chat.is_group, edit=edit,
                                            bulk=bulk)
        if retry_after:
            raise too_many_requests(retry_after)

    def _target(self, account: BotAccount, p: JSON, missing: str) -> Message:
        if p.get("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat = self._chat(account, p)
        self._check_member(account, chat)
        message_id = self._opt_int(p, "message_id")
        if message_id is None:
            raise bad_request(_MISSING_MESSAGE_ID)
        message = self._find(account, chat, message_id)
        if message is None:
            raise bad_request(missing)
        return message

    def _apply_edit(self, message: Message) -> JSON:
        message.edit_date = int(time.time())
        message.version += 1
        self._notify()
        return message.to_api()

    # ---------------------------------------------------------------- files

    def _new_file(self, data: bytes, folder: str, ext: str, **kw: Any) -> StoredFile:
        n = next(self._ids)
        stored = StoredFile(
            file_id=f"AgAC{secrets.token_urlsafe(24)}",
            file_unique_id=f"AQAD{secrets.token_urlsafe(8)}",
            data=data,
            file_path=f"{folder}/file_{n}.{ext}",
            **kw,
        )
        self._files[stored.file_id] = stored
        return stored

    def _store_photo(self, data: bytes) -> tuple[StoredFile, list[JSON]]:
        size = _image_size(data)
        if size is None:
            raise bad_request("IMAGE_PROCESS_FAILED")
        width, height = size
        stored = self._new_file(data, "photos", "jpg", mime_type="image/jpeg")
        sizes: list[JSON] = []
        longest = max(width, height)
        # Telegram stores several resized copies; every size here serves the original bytes.
        sides = [s for s in _PHOTO_SIDES if s < longest] + [min(longest, 2560)]
        for side in sides:
            scale = side / longest
            file_id = stored.file_id if side == sides[-1] else f"{stored.file_id}_{side}"
            entry = {
                "file_id": file_id,
                "file_unique_id": f"{stored.file_unique_id}{side}",
                "width": max(1, round(width * scale)),
                "height": max(1, round(height * scale)),
                "file_size": max(1, round(len(data) * scale * scale)),
            }
            if file_id != stored.file_id:
                self._files[file_id] = stored
            sizes.append(entry)
        return stored, sizes

    def _store_document(
        self, data: bytes, file_name: str, mime_type: str
    ) -> tuple[StoredFile, JSON]:
        ext = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = self._new_file(data, "documents", ext, file_name=file_name, mime_type=mime_type)
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(data),
        }
        return stored, document

    def _upload(self, p: JSON, files: Files, field: str) -> tuple[str, bytes, str] | StoredFile:
        value = p.get(field)
        upload = files.get(field)
        if isinstance(value, str) and value.startswith("attach://"):
            upload = files.get(value.removeprefix("attach://"))
        if upload is not None:
            if not upload[1]:
                raise bad_request("file must be non-empty")
            return upload
        if value is None:
            raise bad_request(f"there is no {field} in the request")
        stored = self._files.get(str(value))
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        return stored

    # ----------------------------------------------------------- API methods

    async def _api_getMe(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        data = account.user.to_api()
        data.update(
            can_join_groups=account.can_join_groups,
            can_read_all_group_messages=not account.privacy_mode,
            supports_inline_queries=False,
            can_connect_to_business=False,
            has_main_web_app=False,
        )
        return data

    async def _api_logOut(self, account: BotAccount, p: JSON, files: Files) -> bool:
        return True

    async def _api_close(self, account: BotAccount, p: JSON, files: Files) -> bool:
        return True

    async def _api_getUpdates(self, account: BotAccount, p: JSON, files: Files) -> list[JSON]:
        if account.webhook_url:
            raise conflict(
                "can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first"
            )
        offset = self._opt_int(p, "offset")
        limit = min(max(self._opt_int(p, "limit") or 100, 1), 100)
        timeout = min(max(self._opt_float(p, "timeout") or 0.0, 0.0), self.max_long_poll)
        allowed = self._opt_json(p, "allowed_updates", "can't parse allowed updates")
        if allowed is not None:
            if not isinstance(allowed, list):
                raise bad_request("can't parse allowed updates")
            # The choice sticks until changed, as on the real server; [] means the defaults.
            account.allowed_updates = [str(a) for a in allowed] or None
        account.polled = True
        if offset is not None:
            if offset < 0:
                account.updates = account.updates[offset:]
            else:
                account.updates = [u for u in account.updates if u["update_id"] >= offset]
        account.poll_generation += 1
        generation = account.poll_generation
        self._notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != account.poll_generation:
                raise conflict(
                    "terminated by other getUpdates request; "
                    "make sure that only one bot instance is running"
                )
            if account.updates or self._closing:
                return account.updates[:limit]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def _api_setWebhook(self, account: BotAccount, p: JSON, files: Files) -> bool:
        url = self._opt_str(p, "url") or ""
        if url:
            self._check_webhook_url(url)
        secret = self._opt_str(p, "secret_token")
        if secret is not None and not _SECRET_TOKEN_RE.fullmatch(secret):
            raise bad_request("secret token contains unallowed characters"
                              if 1 <= len(secret) <= 256 else "secret token is invalid")
        max_connections = self._opt_int(p, "max_connections")
        if max_connections is not None and not 1 <= max_connections <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        if self._bool(p, "drop_pending_updates"):
            account.updates.clear()
        allowed = self._opt_json(p, "allowed_updates", "can't parse allowed updates")
        if isinstance(allowed, list):
            account.allowed_updates = [str(a) for a in allowed] or None
        if not url:
            account.webhook_url = None
            self._stop_webhook(account)
            return True
        account.webhook_url = url
        account.webhook_secret = secret
        account.webhook_max_connections = max_connections or 40
        account.webhook_last_error = None
        self._stop_webhook(account)
        # Only loopback URLs are ever called: nothing here may reach the internet.
        if _loopback(url):
            self._webhook_tasks[account.token] = asyncio.create_task(self._push(account))
        return True

    def _check_webhook_url(self, url: str) -> None:
        """Telegram's rules: https only, on port 443, 80, 88 or 8443. The emulator's explicit
        test allowance lets an http URL on a loopback address through, on any port."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise bad_request("bad webhook: Failed to parse port number") from None
        if not parts.hostname:
            raise bad_request("can't parse URL")
        if self.allow_loopback_http_webhooks and parts.scheme == "http" and _loopback(url):
            return
        if parts.scheme != "https":
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if (port or 443) not in WEBHOOK_PORTS:
            raise bad_request(
                "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")

    async def _api_deleteWebhook(self, account: BotAccount, p: JSON, files: Files) -> bool:
        account.webhook_url = None
        self._stop_webhook(account)
        if self._bool(p, "drop_pending_updates"):
            account.updates.clear()
        return True

    async def _api_getWebhookInfo(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        info: JSON = {
            "url": account.webhook_url or "",
            "has_custom_certificate": False,
            "pending_update_count": len(account.updates),
        }
        if account.webhook_url:
            info["max_connections"] = account.webhook_max_connections
        if account.webhook_last_error is not None:
            info["last_error_date"], info["last_error_message"] = account.webhook_last_error
        if account.allowed_updates:
            info["allowed_updates"] = account.allowed_updates
        return info

    def _stop_webhook(self, account: BotAccount) -> None:
        task = self._webhook_tasks.pop(account.token, None)
        if task is not None:
            task.cancel()

    async def _push(self, account: BotAccount) -> None:
        """Deliver updates to the webhook as Telegram does: up to `max_connections` posts at
        once (so they can arrive out of order: `update_id` tells the order), each retried
        until the bot answers 2xx; an update leaves the queue only once delivered."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        in_flight: set[int] = set()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not self._closing and account.webhook_url:
                free = account.webhook_max_connections - len(in_flight)
                batch = [u for u in account.updates if u["update_id"] not in in_flight][:free]
                if not batch:
                    event = self._changed
                    await event.wait()
                    continue
                self._webhook_random.shuffle(batch)
                for update in batch:
                    in_flight.add(update["update_id"])
                    task = asyncio.create_task(self._post_update(account, update, in_flight))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(0)  # let the posts start before looking again
        finally:
            for task in list(tasks):
                task.cancel()

    async def _post_update(self, account: BotAccount, update: JSON, in_flight: set[int]) -> None:
        assert self._session is not None
        url = account.webhook_url
        headers = {}
        if account.webhook_secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = account.webhook_secret
        error: str | None = None
        self.webhook_posts.append(update["update_id"])
        try:
            if url is None:
                return
            async with self._session.post(url, json=update, headers=headers) as response:
                if not 200 <= response.status < 300:
                    error = f"Wrong response from the webhook: {response.status} {response.reason}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"Connection failed: {exc.__class__.__name__}"
        if error is None:
            if update in account.updates:
                account.updates.remove(update)
            account.webhook_last_error = None
        else:
            account.webhook_last_error = (int(time.time()), error)
            # Telegram retries a failed update later, not at once; it stays pending meanwhile.
            await asyncio.sleep(0.1)
        in_flight.discard(update["update_id"])
        self._touch()
        self._notify()

    async def _api_sendMessage(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        chat = self._chat(account, p)
        self._check_can_send(account, chat)
        text, entities = self._text(p)
        inline, other = self._markup(p)
        reply_to = self._reply_target(account, chat, p)
        thread = self._thread(chat, p, reply_to)
        self._flood(account, chat)
        message = self._store(
            account,
            chat,
            account.user,
            text=text,
            entities=entities,
            reply_markup=inline,
            reply_keyboard=other,
            reply_to=reply_to,
            disable_notification=self._bool(p, "disable_notification"),
            thread_id=thread,
        )
        return message.to_api()

    async def _api_sendPhoto(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        chat = self._chat(account, p)
        self._check_can_send(account, chat, "photos")
        upload = self._upload(p, files, "photo")
        caption, caption_entities = self._caption(p)
        inline, other = self._markup(p)
        reply_to = self._reply_target(account, chat, p)
        thread = self._thread(chat, p, reply_to)
        if isinstance(upload, StoredFile):
            stored, sizes = self._store_photo(upload.data)
        else:
            stored, sizes = self._store_photo(upload[1])
        self._flood(account, chat)
        message = self._store(
            account,
            chat,
            account.user,
            photo=sizes,
            file=stored,
            caption=caption,
            caption_entities=caption_entities,
            reply_markup=inline,
            reply_keyboard=other,
            reply_to=reply_to,
            disable_notification=self._bool(p, "disable_notification"),
            thread_id=thread,
        )
        return message.to_api()

    async def _api_sendDocument(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        chat = self._chat(account, p)
        self._check_can_send(account, chat, "documents")
        upload = self._upload(p, files, "document")
        caption, caption_entities = self._caption(p)
        inline, other = self._markup(p)
        reply_to = self._reply_target(account, chat, p)
        thread = self._thread(chat, p, reply_to)
        if isinstance(upload, StoredFile):
            name, data, mime = upload.file_name or "file", upload.data, upload.mime_type or ""
        else:
            name, data, mime = upload
        stored, document = self._store_document(
            data, name or "file", mime or "application/octet-stream"
        )
        self._flood(account, chat)
        message = self._store(
            account,
            chat,
            account.user,
            document=document,
            file=stored,
            caption=caption,
            caption_entities=caption_entities,
            reply_markup=inline,
            reply_keyboard=other,
            reply_to=reply_to,
            disable_notification=self._bool(p, "disable_notification"),
            thread_id=thread,
        )
        return message.to_api()

    async def _api_editMessageText(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        message = self._target(account, p, "message to edit not found")
        if message.sender is not account.user:
            raise bad_request("message can't be edited")
        if message.text is None:
            raise bad_request("there is no text in the message to edit")
        text, entities = self._text(p)
        inline, _ = self._markup(p, inline_only=True)
        # Like the real server, an edit without reply_markup drops the keyboard.
        if (text, entities, inline) == (message.text, message.entities, message.reply_markup):
            raise bad_request(_NOT_MODIFIED)
        self._flood(account, message.chat, edit=True)
        message.history.append(message.text)
        message.text, message.entities, message.reply_markup = text, entities, inline
        return self._apply_edit(message)

    async def _api_editMessageCaption(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        message = self._target(account, p, "message to edit not found")
        if message.sender is not account.user:
            raise bad_request("message can't be edited")
        if message.file is None:
            raise bad_request("there is no caption in the message to edit")
        caption, entities = self._caption(p)
        inline, _ = self._markup(p, inline_only=True)
        current = (message.caption, message.caption_entities, message.reply_markup)
        if (caption, entities, inline) == current:
            raise bad_request(_NOT_MODIFIED)
        self._flood(account, message.chat, edit=True)
        message.history.append(message.caption)
        message.caption, message.caption_entities, message.reply_markup = caption, entities, inline
        return self._apply_edit(message)

    async def _api_editMessageReplyMarkup(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        message = self._target(account, p, "message to edit not found")
        if message.sender is not account.user:
            raise bad_request("message can't be edited")
        inline, _ = self._markup(p, inline_only=True)
        if inline == message.reply_markup:
            raise bad_request(_NOT_MODIFIED)
        self._flood(account, message.chat, edit=True)
        message.reply_markup = inline
        return self._apply_edit(message)

    async def _api_deleteMessage(self, account: BotAccount, p: JSON, files: Files) -> bool:
        message = self._target(account, p, "message to delete not found")
        chat = message.chat
        own = message.sender is account.user
        # Bot API deleteMessage: only messages under 48 h old; others' messages in a group
        # need the bot to be an admin, and in a supergroup to hold can_delete_messages.
        if time.time() - message.date >= DELETE_WINDOW:
            raise bad_request("message can't be deleted")
        if chat.is_group and not own:
            allowed = (chat.can(account.id, "can_delete_messages") if chat.type == "supergroup"
                       else chat.is_admin(account.id))
            if not allowed:
                raise bad_request("message can't be deleted")
        message.deleted = True
        message.version += 1
        self._notify()
        return True

    async def _api_answerCallbackQuery(self, account: BotAccount, p: JSON, files: Files) -> bool:
        query_id = self._opt_str(p, "callback_query_id")
        query = self._queries.get(query_id or "")
        now = self.now()
        if (query is None or query.answered or query.bot_id != account.id
                or now - query.pressed_at > CALLBACK_DEADLINE):
            if query is not None and not query.answered:
                query.late += 1
            raise bad_request(TOO_OLD)
        text = self._opt_str(p, "text")
        if text is not None and len(text) > MAX_CALLBACK_ANSWER:
            raise bad_request("MESSAGE_TOO_LONG")
        query.answered = True
        query.answered_at = now
        query.answer_text = text
        query.show_alert = self._bool(p, "show_alert")
        query.url = self._opt_str(p, "url")
        return True

    async def _api_getFile(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        file_id = self._opt_str(p, "file_id")
        stored = self._files.get(file_id or "")
        if stored is None:
            raise bad_request("invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

    async def _api_sendChatAction(self, account: BotAccount, p: JSON, files: Files) -> bool:
        chat = self._chat(account, p)
        self._check_can_send(account, chat)
        action = self._opt_str(p, "action")
        if action not in _CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        account.actions.append((chat.id, action))
        return True

    def _scope_key(self, account: BotAccount, p: JSON) -> tuple[str, str]:
        scope = self._opt_json(p, "scope", "can't parse BotCommandScope JSON object")
        language = self._opt_str(p, "language_code") or ""
        if language and (len(language) != 2 or not language.isalpha()):
            raise bad_request("invalid language code specified")
        if scope is None:
            return ("default", language)
        if not isinstance(scope, dict) or "type" not in scope:
            raise bad_request("can't parse BotCommandScope JSON object")
        kind = str(scope["type"])
        if kind in ("default", "all_private_chats", "all_group_chats", "all_chat_administrators"):
            return (kind, language)
        if kind not in ("chat", "chat_administrators", "chat_member"):
            raise bad_request("wrong BotCommandScope type specified")
        chat = self._chat(account, scope)
        key = f"{kind}:{chat.id}"
        if kind == "chat_member":
            user_id = self._opt_int(scope, "user_id")
            if user_id is None or user_id not in self._users:
                raise bad_request("user not found")
            key += f":{user_id}"
        return (key, language)

    async def _api_setMyCommands(self, account: BotAccount, p: JSON, files: Files) -> bool:
        commands = self._opt_json(p, "commands", "can't parse commands JSON object")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        checked: list[JSON] = []
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand JSON object")
            name = command.get("command")
            description = command.get("description")
            if (
                not isinstance(name, str)
                or not 1 <= len(name) <= 32
                or not all(c.islower() or c.isdigit() or c == "_" for c in name)
                or not name.isascii()
            ):
                raise bad_request("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise bad_request(
                    "command description is empty"
                    if not description
                    else "BOT_COMMAND_DESCRIPTION_INVALID"
                )
            checked.append({"command": name, "description": description})
        if len(checked) > 100:
            raise bad_request("too many commands specified")
        key = self._scope_key(account, p)
        if checked:
            account.commands[key] = checked
        else:
            account.commands.pop(key, None)
        return True

    async def _api_getMyCommands(self, account: BotAccount, p: JSON, files: Files) -> list[JSON]:
        return list(account.commands.get(self._scope_key(account, p), []))

    async def _api_deleteMyCommands(self, account: BotAccount, p: JSON, files: Files) -> bool:
        account.commands.pop(self._scope_key(account, p), None)
        return True

    async def _api_getChat(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        chat = self._chat(account, p)
        self._check_member(account, chat)
        data = chat.to_api()
        data.update(
            accent_color_id=chat.id % 7 if chat.id > 0 else 0,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        )
        if chat.is_group:
            data["permissions"] = {"can_send_messages": True}
        return data

    def _chat_user(self, p: JSON) -> User:
        user_id = self._opt_int(p, "user_id")
        if user_id is None:
            raise bad_request("user_id is empty" if "user_id" not in p else "invalid user_id")
        user = self._users.get(user_id)
        if user is None:
            raise bad_request("user not found")
        return user

    async def _api_getChatMember(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        chat = self._chat(account, p)
        self._check_member(account, chat)
        user = self._chat_user(p)
        if not chat.is_group:
            if user.id not in (chat.id, account.id):
                raise bad_request("user not found")
            return self._member_json(user, MEMBER)
        return self._member_json(user, chat.status(user.id), chat)

    async def _api_getChatAdministrators(
        self, account: BotAccount, p: JSON, files: Files
    ) -> list[JSON]:
        chat = self._chat(account, p)
        self._check_member(account, chat)
        if not chat.is_group:
            raise bad_request("there are no administrators in the private chat")
        # The Bot API leaves bots out of this list (itself included).
        admins = [
            self._member_json(self._users[uid], status, chat)
            for uid, status in chat.members.items()
            if status in (OWNER, ADMIN) and uid in self._users and not self._users[uid].is_bot
        ]
        admins.sort(key=lambda m: m["status"] != OWNER)
        return admins

    async def _api_getChatMemberCount(self, account: BotAccount, p: JSON, files: Files) -> int:
        chat = self._chat(account, p)
        self._check_member(account, chat)
        if not chat.is_group:
            return 2
        return sum(1 for uid in chat.members if chat.present(uid))

    async def _api_leaveChat(self, account: BotAccount, p: JSON, files: Files) -> bool:
        chat = self._chat(account, p)
        self._check_member(account, chat)
        if not chat.is_group:
            raise bad_request("chat member status can't be changed in private chats")
        old = chat.status(account.id)
        chat.members[account.id] = LEFT
        self._enqueue(
            account,
            "my_chat_member",
            self._member_change(chat, account.user, account.user, old, LEFT),
        )
        return True


def _loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG, without decoding it."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return width, height
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            (length,) = struct.unpack(">H", data[i + 2 : i + 4])
            i += 2 + length
    return None


__all__ = ["TelegramEmulator", "utf16_len"]
