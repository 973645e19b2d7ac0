"""Button presses under a slow exchange: answered at once, the card edited to the outcome,
and a card whose edit Telegram refused repaired by the sweep (issue 11, bot item 1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import FloodLimits, TelegramEmulator
from bot.sandbox.telegram.emulator import CALLBACK_DEADLINE
from tests.e2e.harness import Harness

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

# The emulator's clock runs 8x faster than real time: 12 s of BitMEX latency take 1.5 s,
# Telegram's 15 s press deadline 1.9 s, and "at once" (1 s) is 125 ms of real time.
SCALE = 8.0
LATENCY = 12.0  # emulated seconds per BitMEX request


@pytest_asyncio.fixture
async def slow(world_sim: BitmexSimulator, tmp_path: Path) -> AsyncIterator[Harness]:
    """A bot on its own emulator (clock x8) trading on the shared simulator."""
    emu = TelegramEmulator(FloodLimits(time_scale=SCALE))
    await emu.start()
    world_sim.faults.clear()
    h = Harness(world_sim, emu, tmp_path)
    await h.start()
    try:
        yield h
    finally:
        world_sim.faults.clear()
        await h.stop()
        await emu.stop()
        assert not emu.internal_errors, emu.internal_errors


def all_orders(h: Harness, key: str) -> list[dict[str, Any]]:
    return h.sim.engine.order_rows(h.sim.account(key).id)


async def test_confirm_under_12s_of_bitmex_latency_is_answered_at_once(slow: Harness) -> None:
    h = slow
    alice, key = await h.connected("Alice")
    card = await alice.send("/buy 100 btc")
    assert card is not None
    h.sim.faults.latency = LATENCY / SCALE
    qid = h.emu.press(alice.user, card, "✅ Confirm", bot=h.bot_username)
    await h.settle(timeout=30)
    h.sim.faults.latency = 0.0
    answer = h.emu.answers(qid)
    assert answer is not None, "the press was never answered (Telegram drops it at 15 s)"
    assert answer.after < 1.0, f"answered {answer.after:.1f} s after the press"
    assert answer.after < CALLBACK_DEADLINE
    assert "Sending" in (answer.text or "")
    assert len(all_orders(h, key)) == 1
    assert "Filled" in (card.content or ""), alice.transcript
    assert card.buttons == [], "a placed order's card keeps no Confirm button"
    assert h.emu.count("answerCallbackQuery", status=400) == 0


async def test_a_refused_card_edit_is_repaired_by_the_sweep(slow: Harness) -> None:
    h = slow
    alice, key = await h.connected("Alice")
    card = await alice.send("/buy 100 btc")
    assert card is not None
    h.sim.faults.latency = LATENCY / SCALE
    # The "Sending…" edit goes through; the outcome edit is refused once.
    h.emu.refuse_next("editMessageText", "Bad Request: message can't be edited", times=2,
                      bot=h.bot_username)
    qid = h.emu.press(alice.user, card, "✅ Confirm", bot=h.bot_username)
    await h.settle(timeout=30)
    h.sim.faults.latency = 0.0
    answer = h.emu.answers(qid)
    assert answer is not None and answer.after < 1.0
    assert len(all_orders(h, key)) == 1
    assert "Filled" not in (card.content or "")  # Telegram refused to show it
    # The 5 s sweep, run now (its clock moved on past the press's own edit).
    real_now = h.svc.trading.now
    h.svc.trading.now = lambda: real_now() + timedelta(seconds=10)
    try:
        job = h.app.job_queue.get_jobs_by_name("expire-cards")[0]
        await job.run(h.app)
        await h.settle()
    finally:
        h.svc.trading.now = real_now
    assert "Filled" in (card.content or ""), alice.transcript
    assert card.buttons == []
    edits = len(h.emu.calls_to("editMessageText", status=200))
    await job.run(h.app)  # repaired once: the next sweep leaves it be
    await h.settle()
    assert len(h.emu.calls_to("editMessageText", status=200)) == edits


async def test_follow_in_a_group_is_answered_at_once_with_a_link_for_newcomers(
    h: Harness,
) -> None:
    from tests.e2e.test_feeds import SIG, feed_group

    admin, [(bob, _)], group = await feed_group(h, 1)
    newcomer = h.person("Eve")  # in the group, never wrote to the bot in private
    h.emu.join(group, newcomer.user)
    await h.settle()
    await admin.send(SIG, chat=group)
    await h.services.feeds.drain()
    await h.settle()
    card = newcomer.find_button("📥 Follow", group)
    h.sim.faults.latency = 0.3  # sizing the preview asks BitMEX: the answer must not wait
    try:
        answer = await newcomer.press("📥 Follow", card)
        assert answer is not None and answer.after < 1.0
        assert answer.url == f"https://t.me/{h.bot_username}?start=f1"
        assert newcomer.messages == []  # the bot may not write first; the link opens the chat
        # Telegram opens the private chat with /start f1: the signal's answer comes there
        # (for Eve, who follows nothing yet, how to size it).
        await newcomer.send("/start f1")
        assert "Signal #1" in newcomer.last_text and "/follow alpha" in newcomer.last_text
        answer = await bob.press("📥 Follow", card)  # someone the bot knows: at once, too
        assert answer is not None and answer.after < 1.0 and answer.url is None
    finally:
        h.sim.faults.latency = 0.0
    await h.settle()
    assert "Signal #1" in bob.last_text  # told privately, after the answer
