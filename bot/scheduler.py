"""Recurring jobs: what runs and when. The JobQueue registration lives in handlers/jobs.py.

Summary schedules are stored in the database (Schedule rows) in the user's local wall
time; `next_run` turns one into the next UTC instant, so a 09:00 summary stays at 09:00
local across daylight-saving changes. Each run registers the next one (a one-shot job
per run), which keeps all timing logic here, pure and testable, and none in APScheduler.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo

from sqlalchemy import delete, func
from sqlmodel import col, select

from bot import parse as P
from bot.db.engine import Database
from bot.db.models import FollowerOrder, OrderCard, PresetMenu, Schedule, Signal, User
from bot.errors import UserError
from bot.notify import Notifier
from bot.prefs import user_zone
from bot.reports import Reports
from bot.trading import Trading
from bot.users import Users

log = logging.getLogger(__name__)

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
EXPIRE_EVERY = 5.0  # seconds between sweeps of stale order-confirmation cards
EXPIRED_TEXT = "⌛ Expired — nothing was sent."


def _local(day: datetime, at: time, tz: tzinfo) -> datetime:
    """`at` on `day`'s date in `tz`, resolved to a real instant.

    A wall time that does not exist (skipped by a spring-forward) moves forward by the
    gap; an ambiguous one (autumn fall-back) takes its first occurrence.
    """
    # PEP 495: with fold=0 a skipped wall time is read with the offset in force before
    # the change, so 02:30 on a spring-forward night becomes 03:30 once converted to UTC.
    return datetime.combine(day.date(), at.replace(tzinfo=None)).replace(tzinfo=tz, fold=0)


def next_run(kind: str, at: time, weekday: int | None, tz: tzinfo, after: datetime) -> datetime:
    """The first UTC instant strictly after `after` at local time `at` (daily) or on
    `weekday` at `at` (weekly, 0 = Monday), in zone `tz`."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    local_after = after.astimezone(tz)
    for days in range(0, 9):
        day = local_after + timedelta(days=days)
        if kind == "weekly" and day.weekday() != weekday:
            continue
        cand = _local(day, at, tz)
        if cand.astimezone(UTC) > after.astimezone(UTC):
            return cand.astimezone(UTC)
    raise AssertionError("no run within 9 days")  # pragma: no cover


def previous_run(kind: str, at: time, weekday: int | None, tz: tzinfo,
                 before: datetime) -> datetime:
    """The last UTC instant at or before `before` when the schedule was due."""
    local_before = before.astimezone(tz)
    for days in range(0, 9):
        day = local_before - timedelta(days=days)
        if kind == "weekly" and day.weekday() != weekday:
            continue
        cand = _local(day, at, tz)
        if cand.astimezone(UTC) <= before.astimezone(UTC):
            return cand.astimezone(UTC)
    raise AssertionError("no run within 9 days")  # pragma: no cover


# A summary missed while the bot was down is still sent if it is at most this late; an
# older one is stale news (the next one covers the period anyway).
CATCH_UP = timedelta(hours=6)
CATCH_UP_DELAY = timedelta(seconds=20)  # after start-up, not in the middle of it


def schedule_next(s: Schedule, tz: tzinfo, after: datetime) -> datetime:
    hh, mm = (int(x) for x in s.time_of_day.split(":"))
    return next_run(s.kind, time(hh, mm), s.weekday, tz, after)


def describe(s: Schedule | None) -> str:
    if s is None or not s.enabled:
        return "off"
    if s.kind == "weekly" and s.weekday is not None:
        return f"weekly on {WEEKDAYS[s.weekday]} at {s.time_of_day}"
    return f"daily at {s.time_of_day}"


def period_of(s: Schedule) -> str:
    """The PnL period a summary covers: the day or the week since the last one."""
    return "7d" if s.kind == "weekly" else "1d"


@dataclass(frozen=True)
class Due:
    """One summary schedule and when it next runs (UTC)."""

    schedule_id: int
    at: datetime


class Schedules:
    """Summary schedules in the database."""

    def __init__(self, db: Database, users: Users, reports: Reports, notifier: Notifier,
                 now: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.users = users
        self.reports = reports
        self.notifier = notifier
        self.now = now or (lambda: datetime.now(UTC))

    async def set_summary(self, user_id: int, chat_id: int,
                          intent: P.Summary) -> tuple[str, Due | None]:
        """Store (or turn off) the user's summary; the text to show and the next run."""
        async with self.db.session() as s:
            user = await s.get(User, user_id)
            if user is None:
                raise UserError("Send /start first.")
            row = (await s.exec(select(Schedule).where(Schedule.user_id == user_id))).first()
            if intent.schedule == "off":
                if row is None or not row.enabled:
                    return "No summary was scheduled.", None
                row.enabled = False
                s.add(row)
                await s.commit()
                return "Summaries are off.", None
            assert intent.at is not None
            if row is None:
                row = Schedule(user_id=user_id, chat_id=chat_id, kind=intent.schedule,
                               time_of_day=f"{intent.at:%H:%M}")
            row.kind, row.chat_id, row.enabled = intent.schedule, chat_id, True
            row.time_of_day = f"{intent.at:%H:%M}"
            row.weekday = intent.weekday if intent.schedule == "weekly" else None
            s.add(row)
            await s.commit()
            await s.refresh(row)
            tz = user_zone(user.tz)
            when = schedule_next(row, tz, self.now())
            assert row.id is not None
            text = (f"📅 PnL summary {describe(row)} ({html.escape(user.tz)}).\n"
                    f"Next: {when.astimezone(tz):%a %d %b %H:%M}. Change the zone with /tz.")
            return text, Due(row.id, when)

    async def all_due(self) -> list[Due]:
        """Every enabled schedule with its next run: what start-up registers."""
        async with self.db.session() as s:
            query = (select(Schedule, User)
                     .join(User, col(User.id) == col(Schedule.user_id))
                     .where(col(Schedule.enabled).is_(True)))
            rows = (await s.exec(query)).all()
        now = self.now()
        out = []
        for sched, user in rows:
            assert sched.id is not None
            tz = user_zone(user.tz)
            hh, mm = (int(x) for x in sched.time_of_day.split(":"))
            missed = previous_run(sched.kind, time(hh, mm), sched.weekday, tz, now)
            last = sched.last_run_at or sched.created_at
            if last < missed and now - missed <= CATCH_UP:
                # Due while the bot was down: send it shortly after start, then as usual.
                out.append(Due(sched.id, now + CATCH_UP_DELAY))
            else:
                out.append(Due(sched.id, schedule_next(sched, tz, now)))
        return out

    async def due_of_user(self, user_id: int) -> list[Due]:
        """The user's enabled schedules with their next run in the zone stored now.

        Registered jobs hold a UTC instant: after `/tz` they must be registered again,
        or the next summary would still come at the old zone's wall time.
        """
        async with self.db.session() as s:
            user = await s.get(User, user_id)
            rows = (await s.exec(select(Schedule).where(
                Schedule.user_id == user_id, col(Schedule.enabled).is_(True)))).all()
        if user is None:
            return []
        now = self.now()
        return [Due(r.id, schedule_next(r, user_zone(user.tz), now))
                for r in rows if r.id is not None]

    async def of_user(self, user_id: int) -> list[int]:
        async with self.db.session() as s:
            rows = (await s.exec(select(Schedule.id).where(Schedule.user_id == user_id))).all()
        return [r for r in rows if r is not None]

    async def get(self, schedule_id: int) -> Schedule | None:
        async with self.db.session() as s:
            return await s.get(Schedule, schedule_id)

    async def run(self, schedule_id: int) -> Due | None:
        """Send one summary; the next run, or None when the schedule is gone or off."""
        sched = await self.get(schedule_id)
        if sched is None or not sched.enabled:
            return None
        user = await self.users.get_user(sched.user_id)
        if user is None:
            return None
        now = self.now()
        if self.users.is_allowed(sched.user_id):
            await self._send(schedule_id, sched)
        else:  # revoked: the schedule stays, and resumes if the user is allowed again
            log.info("summary %s not sent: user %s is not in ALLOWED_USER_IDS", schedule_id,
                     sched.user_id)
        async with self.db.session() as s:
            row = await s.get(Schedule, schedule_id)
            if row is None or not row.enabled:
                return None
            row.last_run_at = now
            s.add(row)
            await s.commit()
            # Strictly after `now`, and at least a minute on, so a job fired a little
            # early by the scheduler cannot schedule itself for the same minute again.
            nxt = schedule_next(row, user_zone(user.tz), max(now, now + timedelta(minutes=1)))
        return Due(schedule_id, nxt)

    async def _send(self, schedule_id: int, sched: Schedule) -> None:
        try:
            await self.reports.send_summary(sched.user_id, sched.chat_id, period_of(sched))
        except UserError as e:
            # No key any more, BitMEX not answering: say so, rather than skip silently.
            log.info("summary %s not made: %s", schedule_id, e)
            try:
                await self.notifier.send(
                    sched.chat_id, f"🗓 Your PnL summary ({describe(sched)}) could not be "
                    f"made: {e}\n/summary off stops them.", kind="summary")
            except Exception:
                log.exception("summary %s: the notice failed too", schedule_id)
        except Exception:  # one user's broken key must not stop the schedule
            log.exception("summary %s failed", schedule_id)


async def expire_cards(trading: Trading, notifier: Notifier) -> int:
    """Mark stale order-confirmation cards expired and edit them; how many were."""
    rows = await trading.expire_due()
    for row in rows:
        if row.message_id is None or row.id is None:
            continue
        card = await trading.current(row.id)
        text = card.text or EXPIRED_TEXT
        await trading.show_outcome(notifier, row.id, row.chat_id, row.message_id, text,
                                   resend=False)
    return len(rows)


PURGE_EVERY = 86400.0  # seconds: the card purge runs daily
PURGE_FIRST = 600.0  # after start-up, not in the middle of it
CARD_RETENTION = timedelta(days=30)
FINAL_STATES = ("placed", "failed", "expired", "cancelled")


async def purge_cards(db: Database, now: datetime | None = None,
                      keep: timedelta = CARD_RETENTION) -> int:
    """Delete order cards that reached a final state more than `keep` ago; how many.

    Kept whatever their age: cards waiting or in flight (their outcome is still to be
    settled), a placed entry whose exits are still to be placed (a limit may fill months
    later), a member's entry from a feed signal that is still open (the feed's close and
    stop moves are built from it), and the newest card of all, because SQLite hands out
    max(id) + 1 and a reused id would make an old message's button point at someone's new
    card.
    """
    cutoff = (now or datetime.now(UTC)) - keep
    async with db.session() as s:
        newest = (await s.exec(select(func.max(OrderCard.id)))).one()
        open_entries = set((await s.exec(select(FollowerOrder.intent_id).join(
            Signal, col(Signal.id) == col(FollowerOrder.signal_id)).where(
            Signal.state == "open"))).all())
        rows = (await s.exec(select(OrderCard.id, OrderCard.state, OrderCard.intent).where(
            col(OrderCard.state).in_(FINAL_STATES),
            col(OrderCard.updated_at) < cutoff,
            col(OrderCard.id) != newest))).all()
        doomed = [i for i, state, intent in rows
                  if i not in open_entries and not _exits_pending(state, intent or {})]
        for start in range(0, len(doomed), 500):  # SQLite caps bound parameters
            await s.exec(delete(OrderCard).where(
                col(OrderCard.id).in_(doomed[start:start + 500])))
        await s.commit()
    return len(doomed)


def _exits_pending(state: str, intent: Mapping[str, object]) -> bool:
    wants_exits = bool(intent.get("tps")) or intent.get("sl") is not None
    return (state == "placed" and wants_exits and not intent.get("exits_placed")
            and intent.get("status") != "Filled")


async def purge_preset_menus(db: Database, now: datetime | None = None) -> int:
    """Delete size-preset menus past their expiry; how many. The newest is kept whatever
    its age, for the reason purge_cards keeps the newest card: SQLite would hand its id
    out again, and an old menu's buttons would open someone's new order."""
    async with db.session() as s:
        newest = (await s.exec(select(func.max(PresetMenu.id)))).one()
        result = await s.exec(delete(PresetMenu).where(
            col(PresetMenu.expires_at) < (now or datetime.now(UTC)),
            col(PresetMenu.id) != newest))
        await s.commit()
    return int(result.rowcount or 0)
