"""Operators' tools: /stats and /broadcast (ADMIN_IDS only; the access gate checks)."""

from __future__ import annotations

import asyncio
import html
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select

from bot.db.engine import Database
from bot.db.models import Alert, ApiCredential, AuditLog, Feed, Follow, OrderCard, User
from bot.notify import DeliveryQueue

log = logging.getLogger(__name__)


class Operators:
    """What ADMIN_IDS may do that others may not."""

    def __init__(self, db: Database, notifier: DeliveryQueue) -> None:
        self.db = db
        self.notifier = notifier
        self._broadcasts: set[asyncio.Task[None]] = set()

    async def stats_text(self) -> str:
        return await stats_text(self.db, self.notifier.stats)

    async def broadcast(self, text: str) -> int:
        """Queue `text` for every user who has not blocked the bot; how many will get it.

        Delivery runs in the background at the delivery queue's lowest priority, so replies
        to users' commands keep going first and Telegram's limits are respected.
        """
        async with self.db.session() as s:
            ids = list((await s.exec(select(User.id).where(col(User.blocked).is_(False)))).all())
        if not ids:
            return 0
        notifier = self.notifier
        body = f"📣 {html.escape(text)}"

        async def run() -> None:
            for uid in ids:
                try:
                    await notifier.send(uid, body, kind="broadcast")
                except Exception:  # one unreachable user must not stop the rest
                    log.warning("broadcast to %s failed", uid)

        task = asyncio.get_running_loop().create_task(run())
        self._broadcasts.add(task)  # a reference, so the task is not collected
        task.add_done_callback(self._broadcasts.discard)
        return len(ids)


async def stats_text(db: Database, queue: dict[str, int]) -> str:
    """Users, accounts, alerts, orders, feeds and error rates, for the operator; `queue`
    is the delivery queue's counters since start."""
    since = datetime.now(UTC) - timedelta(hours=24)
    async with db.session() as s:
        async def count(stmt: object) -> int:
            return int((await s.exec(stmt)).one())  # type: ignore[call-overload]

        users = await count(select(func.count()).select_from(User))
        blocked = await count(select(func.count()).select_from(User).where(
            col(User.blocked).is_(True)))
        active = await count(select(func.count()).select_from(User).where(
            col(User.last_seen_at) >= since))
        nets = (await s.exec(select(ApiCredential.network, func.count()).group_by(
            col(ApiCredential.network)))).all()
        alerts = await count(select(func.count()).select_from(Alert).where(
            Alert.state == "active"))
        feeds = await count(select(func.count()).select_from(Feed).where(
            col(Feed.active).is_(True)))
        follows = await count(select(func.count()).select_from(Follow).where(
            col(Follow.active).is_(True)))
        states = dict((await s.exec(select(OrderCard.state, func.count()).where(
            col(OrderCard.created_at) >= since).group_by(col(OrderCard.state)))).all())
        errors = dict((await s.exec(select(AuditLog.action, func.count()).where(
            col(AuditLog.at) >= since, col(AuditLog.action).in_(
                ("order_placed", "order_failed"))).group_by(col(AuditLog.action)))).all())
    placed, failed = errors.get("order_placed", 0), errors.get("order_failed", 0)
    sent_total = sum(states.values())
    lines = [
        "<b>Bot stats</b> (orders and activity: last 24 h)",
        f"Users: {users} · active {active} · blocked the bot {blocked}",
        "Accounts: " + (", ".join(f"{n} {c}" for n, c in sorted(nets)) or "none"),
        f"Alerts active: {alerts} · feeds {feeds} · follows {follows}",
        f"Order cards: {sent_total} · " + (", ".join(
            f"{k} {v}" for k, v in sorted(states.items())) or "none"),
        f"Exchange: {placed} placed, {failed} refused"
        + (f" ({failed * 100 // max(1, placed + failed)} %)" if placed + failed else ""),
    ]
    if queue:
        sent = queue.get("sent", 0)
        trouble = queue.get("throttled", 0) + queue.get("failed", 0)
        lines.append(f"Telegram since start: {sent} sent, {queue.get('throttled', 0)} "
                     f"throttled (429), {queue.get('failed', 0)} failed, "
                     f"{queue.get('unreachable', 0)} unreachable"
                     + (f" · trouble rate {trouble * 100 // max(1, sent + trouble)} %"
                        if sent + trouble else ""))
    return "\n".join(lines)

