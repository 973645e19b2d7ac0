"""The control API tests play the user with: send, edit and press as a person would, read the
chats back as they would see them, and wait (counted, not slept) until the bots are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from .entities import auto_entities
from .files import FileStore
from .rules import GROUP_ANONYMOUS_BOT
from .state import (
    JSON,
    ApiCall,
    BotAccount,
    CallbackAnswer,
    CallbackQuery,
    Chat,
    Message,
    Topic,
    User,
)
from .world import World


class Control(World, FileStore):
    """The user's side: sending, pressing, reading and waiting."""

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

    def delete_for_all(self, user: User, message: Message) -> None:
        """The user deletes `message` for everyone. In a private chat anyone may delete any
        message (the bot's too); in a group only their own, or any as an admin. Bots get
        no update for it: the next edit of it is refused as "message to edit not found"."""
        chat = message.chat
        if chat.is_group and message.sender is not user and not chat.is_admin(user.id):
            raise ValueError(f"{user.name} may not delete others' messages in {chat.title!r}")
        message.deleted = True
        self._notify()

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
