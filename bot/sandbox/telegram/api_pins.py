"""Bot API methods, pinned messages: pinChatMessage, unpinChatMessage.

As the real server: in a private chat the bot may always pin; in a group, supergroup or
channel it must be an administrator holding `can_pin_messages` (the owner holds every
right), else 400 "not enough rights to manage pinned messages in the chat", for unpinning
too. An unknown message is 400 "message to pin not found" ("message to unpin not found").
Pinning in a group posts the "pinned a message" service message (`pinned_message`), which
the other bots there receive and the pinning bot does not (no bot hears its own posts);
`disable_notification` makes it silent. unpinChatMessage without `message_id` unpins the
newest pinned message. getChat shows the newest as `pinned_message` (api_chats.py).
"""

from __future__ import annotations

from .core import Files
from .errors import bad_request
from .params import Params
from .state import JSON, BotAccount, Chat, Message

NO_PIN_RIGHTS = "not enough rights to manage pinned messages in the chat"


class PinsApi(Params):
    """pinChatMessage, unpinChatMessage, and the pinned state tests read."""

    @staticmethod
    def _pin_key(account: BotAccount, chat: Chat) -> int:
        # A private chat is one dialog per bot, with pins of its own; a group has one.
        return 0 if chat.is_group or chat.type == "channel" else account.id

    def _check_pin_rights(self, account: BotAccount, chat: Chat) -> None:
        self._check_member(account, chat)
        if (chat.is_group or chat.type == "channel") and not chat.can(account.id,
                                                                      "can_pin_messages"):
            raise bad_request(NO_PIN_RIGHTS)

    async def _api_pinChatMessage(self, account: BotAccount, p: JSON, files: Files) -> bool:
        chat = self._chat(account, p)
        self._check_pin_rights(account, chat)
        message = self._pin_target(account, chat, p, "message to pin not found")
        pins = chat.pinned.setdefault(self._pin_key(account, chat), [])
        if message.message_id in pins:
            pins.remove(message.message_id)
        pins.append(message.message_id)
        if chat.is_group:
            notice = self._store(account, chat, account.user,
                                 service={"pinned_message": message.to_api(with_reply=False)},
                                 disable_notification=self._bool(p, "disable_notification"))
            for other in self._recipients(chat, None):
                if other is not account:
                    self._enqueue(other, "message", notice.to_api())
        self._notify()
        return True

    async def _api_unpinChatMessage(self, account: BotAccount, p: JSON, files: Files) -> bool:
        chat = self._chat(account, p)
        self._check_pin_rights(account, chat)
        pins = chat.pinned.setdefault(self._pin_key(account, chat), [])
        if self._opt_int(p, "message_id") is None:
            if pins:
                pins.pop()
        else:
            message = self._pin_target(account, chat, p, "message to unpin not found")
            if message.message_id in pins:
                pins.remove(message.message_id)
        self._notify()
        return True

    def _pin_target(self, account: BotAccount, chat: Chat, p: JSON, missing: str) -> Message:
        message_id = self._opt_int(p, "message_id")
        if message_id is None:
            raise bad_request("message_id is empty" if "message_id" not in p
                              else "invalid message_id")
        message = self._find(account, chat, message_id)
        if message is None or message.service is not None:
            raise bad_request(missing)
        return message

    def pinned_message_json(self, account: BotAccount, chat: Chat) -> JSON | None:
        """The newest pinned message as getChat shows it."""
        for message_id in reversed(chat.pinned.get(self._pin_key(account, chat), [])):
            message = self._find(account, chat, message_id)
            if message is not None:
                return message.to_api(with_reply=False)
        return None

    def pinned(self, chat: Chat, *, bot: BotAccount | str | None = None) -> list[Message]:
        """The chat's pinned messages as its user sees them, oldest first (for tests)."""
        account = self.bot(bot)
        found = (self._find(account, chat, mid)
                 for mid in chat.pinned.get(self._pin_key(account, chat), []))
        return [m for m in found if m is not None]
