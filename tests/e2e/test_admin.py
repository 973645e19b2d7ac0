"""Operators' /stats and /broadcast; nobody else sees them."""

from __future__ import annotations

from pathlib import Path

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from tests.e2e.harness import Harness, Person

OPERATOR = 777001


async def test_stats_and_broadcast_for_operators_only(
    world_sim: BitmexSimulator, world_emu: TelegramEmulator, tmp_path: Path
) -> None:
    h = Harness(world_sim, world_emu, tmp_path, ADMIN_IDS=[OPERATOR])
    await h.start()
    try:
        op_user = h.emu.user(id=OPERATOR, first_name="Op")
        op = Person(h, op_user, h.emu.private_chat(op_user, bot=h.bot_username))
        alice, _ = await h.connected("Alice")
        bob = h.person("Bob")
        await bob.send("/start")
        await alice.send("/alert btc above 1000000")

        before = len(bob.bot_texts)
        await bob.send("/stats")  # not an operator: silently nothing
        await bob.send("/broadcast hi all")
        assert len(bob.bot_texts) == before

        await op.send("/stats")
        text = op.last_text
        assert "Users: 3" in text and "testnet 1" in text and "Alerts active: 1" in text

        await op.send("/broadcast Maintenance at 12:00 UTC")
        assert any("Broadcasting to 3 user(s)" in t for t in op.bot_texts)
        for p in (alice, bob):
            await h.emu.wait_for(lambda p=p: "📣 Maintenance at 12:00 UTC" in p.bot_texts[-1])
    finally:
        await h.stop()
