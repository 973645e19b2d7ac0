"""Chats that change: a group upgraded to a supergroup, the bot kicked or added back.

A basic group upgraded to a supergroup gets a new id.

Telegram answers the old id with "group chat was upgraded to a supergroup chat" from
then on, so everything the bot posts there (alerts, the liquidation feed, a signal
feed) must move to the new id, in the database and in the services' memory.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlmodel import col

from bot.db.models import Alert, AuditLog, Feed, LiqFeedSubscription, Signal, User

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)


async def migrate_chat(services: Services, old: int, new: int) -> int:
    """Move every row and in-memory record of chat `old` to `new`; how many rows moved."""
    if old == new:
        return 0
    moved = 0
    async with services.db.session() as s:
        for model in (Alert, LiqFeedSubscription, Feed, Signal):
            result = await s.exec(
                update(model).where(col(model.chat_id) == old).values(chat_id=new)
            )
            moved += int(result.rowcount or 0)
        s.add(AuditLog(chat_id=new, action="chat_migrated",
                       detail={"from": str(old), "to": str(new), "rows": str(moved)}))
        await s.commit()
    alerts = services.alerts
    if alerts is not None:
        for alert_id, info in list(alerts.alerts.items()):
            if info.chat_id == old:
                alerts.alerts[alert_id] = replace(info, chat_id=new)
    liqfeed = services.liqfeed
    if liqfeed is not None and old in liqfeed.subs:
        subs = liqfeed.subs.pop(old)
        liqfeed.subs[new] = {sym: replace(sub, chat_id=new) for sym, sub in subs.items()}
    log.info("chat %s became %s: %d row(s) moved", old, new, moved)
    return moved


# ------------------------------------------------------------------ reach and rights
#
# Telegram tells a bot about its own membership with `my_chat_member`: kicked from a
# group or blocked in private ("kicked"), added back or unblocked ("member" or
# "administrator"). Those updates, not the failures of later sends, decide whether the
# bot writes to a chat: a group that adds the bot back gets its alerts again at once.

REACHABLE = frozenset({"member", "administrator", "creator", "restricted"})
GONE = frozenset({"kicked", "left"})


async def set_reachable(services: Services, chat_id: int, reachable: bool) -> None:
    """Record that the bot can (again) or can no longer write to `chat_id`."""
    notifier = services.notifier
    if reachable:
        forget = getattr(notifier, "forget_gone", None)
        if forget is not None:
            forget(chat_id)
        if chat_id > 0:
            async with services.db.session() as s:
                user = await s.get(User, chat_id)
                if user is not None and user.blocked:
                    user.blocked = False
                    s.add(user)
                    await s.commit()
        log.info("chat %s is reachable again", chat_id)
        return
    mark = getattr(notifier, "mark_gone", None)
    if mark is not None:
        mark(chat_id)
    await services.mark_blocked(chat_id)
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
