"""A busy group under Telegram's real flood limits (issue 11, bot items 3 and 4).

Members flooding a group with reads must not hold up the admin's signal card, and a 429
in one chat must not stall any other chat (PTB's AIORateLimiter halts the whole bot).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import FloodLimits, TelegramEmulator
from tests.e2e.harness import Harness
from tests.e2e.test_feeds import SIG, feed_group

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

# Telegram's limits on a clock 5x faster than real time: a group's minute lasts 12 s.
SCALE = 5.0


@pytest_asyncio.fixture
async def busy(world_sim: BitmexSimulator, tmp_path: Path) -> AsyncIterator[Harness]:
    emu = TelegramEmulator(FloodLimits(time_scale=SCALE, min_retry_after=30))
    await emu.start()
    world_sim.faults.clear()
    h = Harness(world_sim, emu, tmp_path)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()
        await emu.stop()
        assert not emu.internal_errors, emu.internal_errors


async def test_members_flooding_feedstats_do_not_delay_the_admins_signal(busy: Harness) -> None:
    h = busy
    admin, members, group = await feed_group(h)
    for _ in range(12):  # 36 reads from three members, as fast as their phones send them
        for member, _key in members:
            h.emu.send_text(member.user, group, f"/feedstats@{h.bot_username}",
                            bot=h.bot_username)
    posted_at = h.emu.now()
    h.emu.send_text(admin.user, group, SIG, bot=h.bot_username)

    def card() -> object:
        return next((m for m in h.emu.bot_messages(group, bot=h.bot_username)
                     if "signal #1" in (m.content or "")), None)

    await h.emu.wait_for(card, timeout=60 / SCALE)
    waited = h.emu.now() - posted_at
    assert waited < 5, f"the signal card took {waited:.1f} s (emulated)"
    await h.settle(timeout=60)
    texts = [m.content or "" for m in h.emu.bot_messages(group, bot=h.bot_username)]
    # Each member's repeats are one answer (edited), plus at most one "slow down" note.
    stats = [t for t in texts if "signal" in t.lower() and "#1" not in t]
    assert len([t for t in texts if "asked that here a lot" in t]) <= 3
    assert len(stats) <= 3 + 1, texts  # + the feed's own "now the signal feed" line
    assert h.emu.count("sendMessage", status=429) == 0


async def test_a_429_in_one_group_does_not_delay_another_users_private_card(
    busy: Harness,
) -> None:
    h = busy
    _admin, members, group = await feed_group(h, 1)
    trader, _ = await h.connected("Trader")
    # Telegram tells the bot to keep off this group for 30 (emulated) seconds.
    h.emu.refuse_next("sendMessage", "Too Many Requests: retry after 6", chat=group,
                      retry_after=30 / SCALE, bot=h.bot_username)
    member = members[0][0]
    h.emu.send_text(member.user, group, f"/help@{h.bot_username}", bot=h.bot_username)
    await h.emu.wait_for(lambda: h.emu.count("sendMessage", status=429) == 1, timeout=5)
    asked = h.emu.now()
    h.emu.send_text(trader.user, trader.chat, "/buy 100 btc", bot=h.bot_username)
    await h.emu.wait_for(lambda: "Confirm" in str(trader.last.buttons), timeout=30 / SCALE)
    assert h.emu.now() - asked < 3, "the private card waited for the group's pause"
    # The group's answer comes once its pause is over, not lost.
    await h.emu.wait_for(lambda: any("/feedstats" in (m.content or "") for m in
                                     h.emu.bot_messages(group, bot=h.bot_username)
                                     if m.message_id), timeout=60 / SCALE)
    await h.settle(timeout=30)
