"""What the emulated Telegram holds: users, chats, bots, messages, files and the call log.

These are plain records; the rules (who may send what, flood control, updates) live in the
emulator's modules (`core.py`, `params.py`, `limits.py`, ...). `to_api()` methods render the
Bot API JSON the real server would send.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

# Statuses a member can have in a group, as getChatMember reports them.
OWNER, ADMIN, MEMBER, LEFT, KICKED = "creator", "administrator", "member", "left", "kicked"
# A member who may read but not post (the admins took "Send messages" away).
RESTRICTED = "restricted"
# Telegram's fake sender of posts auto-forwarded from a linked channel into its group.
SERVICE_USER_ID = 777000


@dataclass(eq=False)
class User:
    id: int
    first_name: str
    username: str | None = None
    last_name: str | None = None
    is_bot: bool = False
    language_code: str | None = "en"
    deactivated: bool = False  # the account was deleted: sends answer 403

    def to_api(self) -> JSON:
        data: JSON = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code and not self.is_bot:
            data["language_code"] = self.language_code
        return data

    @property
    def name(self) -> str:
        return f"@{self.username}" if self.username else self.first_name


@dataclass(eq=False)
class Chat:
    id: int
    type: str  # private | group | supergroup | channel
    title: str | None = None
    username: str | None = None
    user: User | None = None  # the other side of a private chat
    # user id -> status; bots are members like anyone else.
    members: dict[int, str] = field(default_factory=dict)
    migrated_to: int | None = None
    # Admins' rights that differ from "everything": user id -> {"can_delete_messages": False}.
    rights: dict[int, dict[str, bool]] = field(default_factory=dict)
    # Forum supergroups: topic id (the id of the message that created it) -> Topic.
    is_forum: bool = False
    topics: dict[int, Topic] = field(default_factory=dict)
    general_closed: bool = False
    linked_chat_id: int | None = None  # a channel's discussion group, or a group's channel
    # Privacy mode delivers "/cmd" without @bot only to the bot that posted last here.
    last_bot_id: int | None = None
    # Pinned message ids, oldest first, per dialog: a private chat is one dialog per bot
    # (keyed by the bot's id), a group one for everyone (key 0).
    pinned: dict[int, list[int]] = field(default_factory=dict)

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")

    def to_api(self) -> JSON:
        data: JSON = {"id": self.id, "type": self.type}
        if self.is_forum:
            data["is_forum"] = True
        if self.user is not None:
            data["first_name"] = self.user.first_name
            if self.user.last_name:
                data["last_name"] = self.user.last_name
            if self.user.username:
                data["username"] = self.user.username
        else:
            data["title"] = self.title or ""
            if self.username:
                data["username"] = self.username
        return data

    def status(self, user_id: int) -> str:
        return self.members.get(user_id, LEFT)

    def is_admin(self, user_id: int) -> bool:
        return self.status(user_id) in (OWNER, ADMIN)

    def present(self, user_id: int) -> bool:
        return self.status(user_id) in (OWNER, ADMIN, MEMBER, RESTRICTED)

    def can(self, user_id: int, right: str) -> bool:
        """An admin's right (all on unless taken away); the owner has every right."""
        status = self.status(user_id)
        if status == OWNER:
            return True
        return status == ADMIN and self.rights.get(user_id, {}).get(right, True)


@dataclass(eq=False)
class Topic:
    id: int
    name: str
    closed: bool = False


@dataclass(eq=False)
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    file_name: str | None = None
    mime_type: str | None = None


@dataclass(eq=False)
class Message:
    """One message as the chat holds it now; `history` keeps the texts it had before edits."""

    message_id: int
    chat: Chat
    sender: User
    date: int
    text: str | None = None
    entities: list[JSON] = field(default_factory=list)
    caption: str | None = None
    caption_entities: list[JSON] = field(default_factory=list)
    photo: list[JSON] | None = None
    document: JSON | None = None
    file: StoredFile | None = None
    reply_markup: JSON | None = None  # only inline keyboards, as the API echoes them
    reply_keyboard: JSON | None = None  # keyboard / remove_keyboard / force_reply sent along
    reply_to: Message | None = None
    edit_date: int | None = None
    deleted: bool = False
    disable_notification: bool = False
    service: JSON | None = None  # new_chat_members, left_chat_member, ...
    history: list[str | None] = field(default_factory=list)
    version: int = 0
    # Set when an anonymous admin posts: Telegram sends `from` = @GroupAnonymousBot and
    # the group itself as `sender_chat`.
    sender_chat: Chat | None = None
    # Forum topics: the topic's id; General has none.
    thread_id: int | None = None
    # A channel post copied into the channel's linked discussion group.
    automatic_forward: bool = False

    @property
    def from_bot(self) -> bool:
        return self.sender.is_bot

    @property
    def content(self) -> str | None:
        """What a reader sees as the message's words: text, or the caption of a file."""
        return self.text if self.text is not None else self.caption

    @property
    def buttons(self) -> list[list[str]]:
        """The inline keyboard as rows of labels."""
        if not self.reply_markup:
            return []
        return [[b.get("text", "") for b in row] for row in self.reply_markup["inline_keyboard"]]

    @property
    def photo_bytes(self) -> bytes | None:
        return self.file.data if self.file is not None and self.photo is not None else None

    def to_api(self, *, with_reply: bool = True) -> JSON:
        data: JSON = {
            "message_id": self.message_id,
            "chat": self.chat.to_api(),
            "date": self.date,
        }
        if self.chat.type != "channel":  # channel posts have no `from`
            data["from"] = self.sender.to_api()
        if self.thread_id is not None:
            data["message_thread_id"] = self.thread_id
            data["is_topic_message"] = True
        if self.automatic_forward:
            data["is_automatic_forward"] = True
        if self.text is not None:
            data["text"] = self.text
            if self.entities:
                data["entities"] = self.entities
        if self.photo is not None:
            data["photo"] = self.photo
        if self.document is not None:
            data["document"] = self.document
        if self.caption is not None:
            data["caption"] = self.caption
            if self.caption_entities:
                data["caption_entities"] = self.caption_entities
        if self.reply_markup is not None:
            data["reply_markup"] = self.reply_markup
        if self.reply_to is not None and with_reply:
            data["reply_to_message"] = self.reply_to.to_api(with_reply=False)
        if self.edit_date is not None:
            data["edit_date"] = self.edit_date
        if self.service:
            data.update(self.service)
        if self.sender_chat is not None:
            data["sender_chat"] = self.sender_chat.to_api()
        return data

    def __repr__(self) -> str:
        who = self.sender.name
        return f"<Message {self.chat.id}/{self.message_id} {who}: {self.content!r}>"


@dataclass(eq=False)
class CallbackQuery:
    id: str
    user: User
    message: Message
    data: str
    bot_id: int
    pressed_at: float = 0.0  # emulated seconds (TelegramEmulator.now)
    answered: bool = False
    answered_at: float = 0.0
    late: int = 0  # answers refused for coming after the deadline
    answer_text: str | None = None
    show_alert: bool = False
    url: str | None = None


@dataclass(frozen=True)
class CallbackAnswer:
    text: str | None
    show_alert: bool
    url: str | None
    after: float = 0.0  # emulated seconds from the press to the answer


@dataclass(eq=False)
class BotAccount:
    token: str
    user: User
    # On by default, as BotFather sets it: in groups where the bot is not an admin it gets
    # only commands for it, replies to it and service messages.
    privacy_mode: bool = True
    can_join_groups: bool = True
    updates: list[JSON] = field(default_factory=list)  # not yet confirmed
    next_update_id: int = 1
    allowed_updates: list[str] | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_max_connections: int = 40
    webhook_last_error: tuple[int, str] | None = None  # (unix time, message)
    polled: bool = False
    poll_generation: int = 0
    # Private chats the user has opened (pressed Start) and who blocked the bot.
    started: set[int] = field(default_factory=set)
    blocked_by: set[int] = field(default_factory=set)
    commands: dict[tuple[str, str], list[JSON]] = field(default_factory=dict)
    actions: list[tuple[int, str]] = field(default_factory=list)  # (chat id, chat action)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def username(self) -> str:
        return self.user.username or ""


@dataclass(frozen=True)
class ApiCall:
    """One request a bot made, for assertions: what it asked and what it was answered."""

    bot: str  # the bot's username
    method: str  # canonical spelling, e.g. "sendMessage"
    params: JSON
    status: int
    description: str | None = None
    at: float = field(default_factory=time.monotonic)
