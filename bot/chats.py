"""Group chats that change id: a basic group upgraded to a supergroup gets a new id.

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

from bot.db.models import Alert, AuditLog, Feed, LiqFeedSubscription, Signal

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
