"""Chats that change: a group upgraded to a supergroup, the bot kicked or added back.

A basic group upgraded to a supergroup gets a new id.

Telegram answers the old id with "group chat was upgraded to a supergroup chat" from
then on, so everything the bot posts there (alerts, the liquidation feed, a signal
feed) must move to the new id, in the database and in the services' memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from bot.db.engine import Database
from bot.db.models import AuditLog
from bot.notify import DeliveryQueue
from bot.users import Users

log = logging.getLogger(__name__)


class ChatMover(Protocol):
    """A service that keeps chat ids (in rows or in memory) and follows a chat's new id."""

    async def move_chat(self, old: int, new: int) -> int:
        """Move what this service keeps for chat `old` to `new`; how many rows moved."""
        ...


# ------------------------------------------------------------------ reach and rights
#
# Telegram tells a bot about its own membership with `my_chat_member`: kicked from a
# group or blocked in private ("kicked"), added back or unblocked ("member" or
# "administrator"). Those updates, not the failures of later sends, decide whether the
# bot writes to a chat: a group that adds the bot back gets its alerts again at once.

REACHABLE = frozenset({"member", "administrator", "creator", "restricted"})
GONE = frozenset({"kicked", "left"})


class Chats:
    """Chats that change: a new id for an upgraded group, the bot removed or added back."""

    def __init__(self, db: Database, notifier: DeliveryQueue, users: Users,
                 movers: Sequence[ChatMover]) -> None:
        self.db = db
        self.notifier = notifier
        self.users = users
        # Every service that keeps chat ids, told of each move (the listener list).
        self.movers = list(movers)

    async def move(self, old: int, new: int) -> int:
        """Move every row and in-memory record of chat `old` to `new`; how many rows moved."""
        if old == new:
            return 0
        moved = 0
        for mover in self.movers:
            moved += await mover.move_chat(old, new)
        async with self.db.session() as s:
            s.add(AuditLog(chat_id=new, action="chat_migrated",
                           detail={"from": str(old), "to": str(new), "rows": str(moved)}))
            await s.commit()
        log.info("chat %s became %s: %d row(s) moved", old, new, moved)
        return moved

    async def set_reachable(self, chat_id: int, reachable: bool) -> None:
        """Record that the bot can (again) or can no longer write to `chat_id`."""
        if reachable:
            self.notifier.forget_gone(chat_id)
            await self.users.mark_reachable(chat_id)
            log.info("chat %s is reachable again", chat_id)
            return
        self.notifier.mark_gone(chat_id)
        await self.users.mark_blocked(chat_id)
        log.info("chat %s is gone (bot kicked or blocked)", chat_id)


def rights_advice(bot_username: str, *, reads_all: bool, status: str,
                  can_delete: bool) -> str | None:
    """One short message for a group's admins about what the bot cannot do there, and how
    to fix it; None when it can do everything (read free-text signals, delete pasted keys).

    `reads_all`: privacy mode is off (getMe's can_read_all_group_messages); `status` and
    `can_delete`: the bot's own membership (getChatMember)."""
    bot = f"@{bot_username}"
    admin = status in ("administrator", "creator")
    if admin and can_delete:
        return None
    how = (f"To fix it: group info → Administrators → Add admin → {bot}, "
           "with “Delete messages” on.")
    if admin:
        return ("I'm an admin here but without “Delete messages”, so I can't delete API keys "
                f"pasted in this group. Group info → Administrators → {bot} → turn on "
                "“Delete messages”.")
    if reads_all:
        return ("I'm not an admin here, so I can't delete API keys pasted in this group. "
                + how)
    return ("I'm not an admin here, so Telegram shows me only commands: free-text signals "
            "won't reach me and I can't delete API keys pasted in this group. " + how
            + f" Until then, address commands to me: /signal@{bot_username} …, "
            f"/feedstats@{bot_username}.")
