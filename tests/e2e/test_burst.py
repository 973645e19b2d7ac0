"""A crowd arriving at once: every first-time user is answered, nobody sees an error.

End to end (500 private chats through the emulator into the real PTB app) on whichever
database the suite runs on; on SQLite this is what used to end in "database is locked",
a transaction that had read could not become a writer while another one wrote.
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
        for p in crowd:  # and each sets something at once: a second write per user
            h.emu.send_text(p.user, p.chat, "/tz Europe/Berlin", bot=h.bot_username)
        await h.settle(timeout=300)

        unanswered = [p.user.first_name for p in crowd
                      if not any(f"Hi {p.user.first_name}" in t for t in p.bot_texts)]
        assert unanswered == [], f"{len(unanswered)} not welcomed, e.g. {unanswered[:3]}"
        untold = [p.user.first_name for p in crowd if "Europe/Berlin" not in p.last_text]
        assert untold == [], f"{len(untold)} without their time zone, e.g. {untold[:3]}"
        problems = [f"{r.name}: {r.getMessage()}" for r in caplog.records
                    if r.levelno >= logging.ERROR or "locked" in r.getMessage()]
        assert problems == [], problems[:5]
        async with h.svc.db.session() as s:
            zones = (await s.exec(select(User.tz, func.count()).group_by(User.tz))).all()
        assert [tuple(z) for z in zones] == [("Europe/Berlin", CROWD)]
    finally:
        await h.stop()


async def test_500_first_time_users_at_once_service_level(h: Harness) -> None:
    """The same crowd with nothing in between: 500 first contacts and paper connects
    gathered at once on the services (no Telegram polling batches spreading them out)."""
    from bot.db.models import ApiCredential

    async def newcomer(uid: int) -> None:
        await h.svc.touch_user(uid, f"new{uid}", f"Newcomer{uid}")
        await h.svc.accounts.connect_paper(uid)

    ids = range(8_000_000_000, 8_000_000_000 + CROWD)  # today's user ids are past 2**32
    outcomes = await asyncio.gather(*(newcomer(uid) for uid in ids), return_exceptions=True)
    errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    assert errors == [], f"{len(errors)} failed, e.g. {errors[:2]}"
    async with h.svc.db.session() as s:
        users = (await s.exec(select(func.count()).select_from(User))).one()
        papers = (await s.exec(select(func.count()).select_from(ApiCredential)
                               .where(ApiCredential.network == "paper"))).one()
    assert (users, papers) == (CROWD, CROWD)
