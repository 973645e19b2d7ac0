"""The world behind the Bot API, as tests set it up: users, private chats, groups and their
members (joins, kicks, promotions, restrictions), forum topics, channels, blocked bots and
supergroup upgrades. Each change reaches the bots as the updates Telegram would send.
"""

from __future__ import annotations

from collections.abc import Iterable

from .core import EmulatorCore
from .entities import auto_entities
from .rules import TELEGRAM_SERVICE
from .state import (
    ADMIN,
    KICKED,
    LEFT,
    MEMBER,
    OWNER,
    RESTRICTED,
    BotAccount,
    Chat,
    Message,
    Topic,
    User,
)


class World(EmulatorCore):
    """Users, chats, members, topics and channels."""

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
                can_delete_messages: bool = True, can_pin_messages: bool = True) -> None:
        chat.rights.pop(who.id, None)
        taken = {right: False for right, given in (("can_delete_messages", can_delete_messages),
                                                   ("can_pin_messages", can_pin_messages))
                 if not given}
        if taken:
            chat.rights[who.id] = taken
        self._set_status(chat, who, ADMIN, by)

    def demote(self, chat: Chat, who: User, *, by: User | None = None) -> None:
        self._set_status(chat, who, MEMBER, by)

    def _set_status(self, chat: Chat, who: User, status: str, by: User | None) -> None:
        old = chat.status(who.id)
        old_json = self._member_json(who, old, chat)
        chat.members[who.id] = status
        actor = by or self._owner(chat) or who
        self._member_update(chat, actor, who, old, status, old_json=old_json)

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
