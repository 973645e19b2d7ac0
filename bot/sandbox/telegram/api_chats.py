"""Bot API methods, chats and members: getChat, getChatMember, getChatAdministrators,
getChatMemberCount, leaveChat.
"""

from __future__ import annotations

from .core import Files
from .errors import bad_request
from .params import Params
from .state import ADMIN, JSON, LEFT, MEMBER, OWNER, BotAccount, Chat, User


class ChatsApi(Params):
    """getChat, getChatMember, getChatAdministrators, getChatMemberCount, leaveChat."""

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
        pinned = self.pinned_message_json(account, chat)
        if pinned is not None:
            data["pinned_message"] = pinned
        return data

    def pinned_message_json(self, account: BotAccount, chat: Chat) -> JSON | None:
        return None  # the pins' module (api_pins.py) answers this

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
