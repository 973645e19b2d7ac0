"""A crowd arriving at once: every first-time user is answered, nobody sees an error.

Twice: end to end (500 private chats through the emulator into the real PTB app: every one
welcomed), and at the service level (500 first contacts, paper connects and follow-up
messages gathered at once, with no polling batches spreading them out). On SQLite the second
failed before bot/db/engine.py's writer turns with "database is locked": connections waiting
in SQLite's polling busy handler lost to newcomers until the 5 s busy timeout ran out.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlmodel import func, select

from bot.db.models import User
from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from tests.e2e.harness import Harness

CROWD = 500


async def test_500_first_time_users_at_once_all_answered_without_errors(
    world_sim: BitmexSimulator, world_emu: TelegramEmulator, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Telegram's own 30 msg/s pacing would only stretch the run; the database is under test.
    h = Harness(world_sim, world_emu, tmp_path, telegram_rate_limit=False)
    await h.start()
    try:
        caplog.set_level(logging.WARNING)
        crowd = [h.person(f"Newcomer{i}") for i in range(CROWD)]
        for p in crowd:  # all queued before the bot polls: they arrive as one batch
            h.emu.send_text(p.user, p.chat, "/start", bot=h.bot_username)
        await h.settle(timeout=300)

        unanswered = [p.user.first_name for p in crowd
                      if not any(f"Hi {p.user.first_name}" in t for t in p.bot_texts)]
        assert unanswered == [], f"{len(unanswered)} not welcomed, e.g. {unanswered[:3]}"
        problems = [f"{r.name}: {r.getMessage()}" for r in caplog.records
                    if r.levelno >= logging.ERROR or "locked" in r.getMessage()]
        assert problems == [], problems[:5]
        async with h.svc.db.session() as s:
            users = (await s.exec(select(func.count()).select_from(User))).one()
        assert users == CROWD
    finally:
        await h.stop()


async def test_500_first_time_users_at_once_service_level(h: Harness) -> None:
    """The same crowd with nothing in between: 500 first contacts and paper connects
    gathered at once on the services (no Telegram polling batches spreading them out)."""
    from bot.db.models import ApiCredential

    async def newcomer(uid: int) -> None:
        await h.svc.touch_user(uid, f"new{uid}", f"Newcomer{uid}")
        await h.svc.accounts.connect_paper(uid)
        for _ in range(3):  # and the next few messages each of them sends straight away
            await h.svc.touch_user(uid, f"new{uid}", f"Newcomer{uid}")

    ids = range(8_000_000_000, 8_000_000_000 + CROWD)  # today's user ids are past 2**32
    outcomes = await asyncio.gather(*(newcomer(uid) for uid in ids), return_exceptions=True)
    errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    assert errors == [], f"{len(errors)} failed, e.g. {errors[:2]}"
    async with h.svc.db.session() as s:
        users = (await s.exec(select(func.count()).select_from(User))).one()
        papers = (await s.exec(select(func.count()).select_from(ApiCredential)
                               .where(ApiCredential.network == "paper"))).one()
    assert (users, papers) == (CROWD, CROWD)


async def test_one_newcomer_arriving_twice_at_once_is_one_user(h: Harness) -> None:
    """Their first private message and a group message in the same instant: on PostgreSQL
    both transactions see no row and both insert; the second must not fail the update."""
    uid = 8_000_100_000
    for i in range(5):
        outcomes = await asyncio.gather(
            *(h.svc.touch_user(uid + i, "twin", "Twin") for _ in range(2)),
            return_exceptions=True)
        assert [o for o in outcomes if isinstance(o, BaseException)] == []
    async with h.svc.db.session() as s:
        users = (await s.exec(select(func.count()).select_from(User))).one()
    assert users == 5
