"""A bot built without PTB's rate limiter (the benchmarks of raw capacity build one) still
answers in groups and still delivers: PTB refuses `rate_limit_args` when no limiter is set."""

from __future__ import annotations

from pathlib import Path

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from tests.e2e.harness import Harness


async def test_a_bot_without_a_rate_limiter_answers_in_a_group_and_delivers(
        world_sim: BitmexSimulator, world_emu: TelegramEmulator, tmp_path: Path) -> None:
    h = Harness(world_sim, world_emu, tmp_path, telegram_rate_limit=False)
    await h.start()
    try:
        alice = h.person("Alice")
        group = h.group("Desk", [alice], [alice], bot_admin=True)
        await alice.send("/help", chat=group)
        said = h.emu.last_bot_message(group, bot=h.bot_username)
        assert said is not None and "went wrong" not in (said.content or ""), \
            h.emu.transcript(group, bot=h.bot_username)
        await h.svc.notifier.send(group.id, "Delivered without a limiter")
        await h.svc.notifier.drain(timeout=10)
        await h.settle()
        assert any("Delivered without a limiter" in (m.content or "")
                   for m in h.emu.bot_messages(group, bot=h.bot_username)), \
            h.emu.transcript(group, bot=h.bot_username)
    finally:
        await h.stop()
