"""Shared budgets and the event loop (issue #16, 11-16): no user can spend what all share."""

from __future__ import annotations

from typing import Any

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from tests.e2e.harness import Harness


class Clock:
    """Simulated time for the limiters: tests move it, nothing sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_plain_text_counts_in_the_rate_limit(h: Harness) -> None:
    spammer = h.person("Chatty")
    for _ in range(30):
        h.emu.send_text(spammer.user, spammer.chat, "hello there", bot=h.bot_username)
    await h.settle()
    texts = spammer.bot_texts
    # The burst of 20 is answered (each with the small-talk pointer), then one polite line.
    assert sum("/help" in t for t in texts if "too many" not in t) == 20
    assert sum("too many commands" in t for t in texts) == 1
    await spammer.send("/help")
    assert spammer.last_text == texts[-1]  # still refused, silently: no new message
    assert len(spammer.bot_texts) == len(texts)


async def test_presses_count_in_the_rate_limit(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("/connect paper")
    await alice.send("/start")
    msg = alice.find_button("❓ Help")
    label = "❓ Help"
    answers = [h.emu.press(alice.user, msg, label, bot=h.bot_username) for _ in range(25)]
    await h.settle()
    refused = [q for q in answers if "Slow down" in str(h.emu.answers(q))]
    # /connect and /start took 2 of the burst of 20: 18 presses pass, 7 are refused.
    assert len(refused) == 7


async def test_refused_stranger_is_answered_once_an_hour(
        world_sim: BitmexSimulator, world_emu: TelegramEmulator, tmp_path: Any) -> None:
    h = Harness(world_sim, world_emu, tmp_path, ALLOWED_USER_IDS=[555002])
    await h.start()
    try:
        clock = Clock()
        h.svc.refusals.clock = clock
        eve = h.person("Eve")
        for text in ("/start", "hello", "/buy 100 btc", "/help", "please"):
            await eve.send(text)
        assert sum("this bot is private" in t.lower() for t in eve.bot_texts) == 1
        clock.now += 3599
        await eve.send("/start")
        assert len(eve.bot_texts) == 1
        clock.now += 2
        await eve.send("/start")
        assert sum("this bot is private" in t.lower() for t in eve.bot_texts) == 2
    finally:
        await h.stop()
