"""Summary timing: the next run in the user's zone, across DST changes (pure)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.scheduler import next_run
from tests.dbs import test_database_url

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_daily_nine_in_berlin_stays_nine_local_across_spring_forward() -> None:
    # 2024-03-31: clocks jump 02:00 -> 03:00 in Berlin (UTC+1 -> UTC+2).
    first = next_run("daily", time(9, 0), None, BERLIN, utc(2024, 3, 29, 12, 0))
    assert first == utc(2024, 3, 30, 8, 0)  # 09:00 CET
    second = next_run("daily", time(9, 0), None, BERLIN, first)
    assert second == utc(2024, 3, 31, 7, 0)  # 09:00 CEST: only 23 h later
    assert second - first == timedelta(hours=23)
    assert second.astimezone(BERLIN).hour == 9


def test_daily_across_fall_back_is_25_hours_apart() -> None:
    a = next_run("daily", time(9, 0), None, BERLIN, utc(2024, 10, 26, 0, 0))
    b = next_run("daily", time(9, 0), None, BERLIN, a)
    assert (a, b) == (utc(2024, 10, 26, 7, 0), utc(2024, 10, 27, 8, 0))
    assert b - a == timedelta(hours=25)


def test_a_time_skipped_by_dst_moves_forward_and_an_ambiguous_one_runs_once() -> None:
    skipped = next_run("daily", time(2, 30), None, BERLIN, utc(2024, 3, 30, 12, 0))
    assert skipped == utc(2024, 3, 31, 1, 30)  # 03:30 CEST, the gap's length later
    assert skipped.astimezone(BERLIN).time() == time(3, 30)
    # 02:30 happens twice on 27 Oct: the first one counts, and the next run is a day on.
    first = next_run("daily", time(2, 30), None, BERLIN, utc(2024, 10, 26, 12, 0))
    assert first == utc(2024, 10, 27, 0, 30)
    assert next_run("daily", time(2, 30), None, BERLIN, first) == utc(2024, 10, 28, 1, 30)


def test_weekly_monday_in_new_york_across_its_own_dst_change() -> None:
    # US DST starts 2024-03-10 (a Sunday): Monday 09:00 is 14:00 UTC before, 13:00 after.
    a = next_run("weekly", time(9, 0), 0, NEW_YORK, utc(2024, 3, 1, 0, 0))
    b = next_run("weekly", time(9, 0), 0, NEW_YORK, a)
    assert a == utc(2024, 3, 4, 14, 0)
    assert b == utc(2024, 3, 11, 13, 0)
    assert a.astimezone(NEW_YORK).weekday() == b.astimezone(NEW_YORK).weekday() == 0


def test_zone_boundary_puts_the_run_on_the_local_date() -> None:
    # 23:30 UTC on Sunday is already Monday 08:30 in Tokyo: today's 09:00 is 30 min away.
    tokyo = ZoneInfo("Asia/Tokyo")
    assert next_run("daily", time(9, 0), None, tokyo, utc(2024, 6, 2, 23, 30)) == utc(
        2024, 6, 3, 0, 0)
    # Weekly Monday 09:00 at UTC-05:00 is Monday 14:00 UTC, whatever UTC's weekday is.
    minus5 = timezone(timedelta(hours=-5), "UTC-05:00")
    run = next_run("weekly", time(9, 0), 0, minus5, utc(2024, 6, 3, 13, 59))
    assert run == utc(2024, 6, 3, 14, 0)
    assert next_run("weekly", time(9, 0), 0, minus5, run) == utc(2024, 6, 10, 14, 0)


def test_strictly_after_and_every_day_once() -> None:
    start = utc(2024, 1, 1, 0, 0)
    runs = [start]
    for _ in range(400):
        runs.append(next_run("daily", time(7, 15), None, BERLIN, runs[-1]))
    local = [r.astimezone(BERLIN) for r in runs[1:]]
    assert all(t.time() == time(7, 15) for t in local)
    dates = [t.date() for t in local]
    assert len(set(dates)) == len(dates) == 400
    assert all((b - a).days == 1 for a, b in itertools.pairwise(dates))


def test_previous_run_is_the_last_due_instant() -> None:
    from bot.scheduler import previous_run

    now = utc(2024, 3, 31, 12, 0)  # Sunday, after the spring-forward
    assert previous_run("daily", time(9, 0), None, BERLIN, now) == utc(2024, 3, 31, 7, 0)
    assert previous_run("daily", time(15, 0), None, BERLIN, now) == utc(2024, 3, 30, 14, 0)
    assert previous_run("weekly", time(9, 0), 0, BERLIN, now) == utc(2024, 3, 25, 8, 0)


async def test_a_summary_missed_while_down_is_caught_up_but_not_an_old_one(
    tmp_path: Path,
) -> None:
    from typing import Any, cast

    from bot.db.engine import Database
    from bot.db.models import Schedule, User
    from bot.scheduler import CATCH_UP_DELAY, Schedules

    db = Database(test_database_url(tmp_path, 's.db'))
    await db.migrate()
    created = utc(2024, 3, 1, 0, 0)
    async with db.session() as s:
        for uid in (1, 2, 3):
            s.add(User(id=uid, tz="Europe/Berlin"))
        await s.flush()
        # 1: last ran yesterday, today's 09:00 (07:00 UTC) was missed an hour ago
        s.add(Schedule(user_id=1, chat_id=1, kind="daily", time_of_day="09:00",
                       last_run_at=utc(2024, 3, 30, 7, 0), created_at=created))
        # 2: ran today at 09:00 as it should
        s.add(Schedule(user_id=2, chat_id=2, kind="daily", time_of_day="09:00",
                       last_run_at=utc(2024, 3, 31, 7, 0), created_at=created))
        # 3: missed at 01:00 local, 10 hours ago: too old to send now
        s.add(Schedule(user_id=3, chat_id=3, kind="daily", time_of_day="01:00",
                       last_run_at=utc(2024, 3, 29, 23, 0), created_at=created))
        await s.commit()
    now = utc(2024, 3, 31, 8, 0)
    dues = {d.schedule_id: d.at for d in await Schedules(
        db, cast(Any, None), cast(Any, None), cast(Any, None), now=lambda: now).all_due()}
    await db.dispose()
    assert dues[1] == now + CATCH_UP_DELAY
    assert dues[2] == utc(2024, 4, 1, 7, 0)
    assert dues[3] == utc(2024, 3, 31, 23, 0)
