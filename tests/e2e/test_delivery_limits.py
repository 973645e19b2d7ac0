"""The delivery queue against the emulator's flood limits, through the Telegram notifier."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.notify import DeliveryLimits, DeliveryQueue, Edited, Sent
from bot.sandbox.telegram import FloodLimits, TelegramEmulator
from handlers.notifier import TelegramNotifier
from tests.e2e.emulator_fixtures import bot, emulator

__all__ = ["bot", "emulator"]  # fixtures, imported for pytest

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SCALE = 20.0  # the emulator's clock and our limits both run 20x faster


async def test_bursts_to_many_chats_arrive_complete_in_order_without_a_429_storm(
        emulator: TelegramEmulator, bot: Any) -> None:
    emulator.limits = FloodLimits(time_scale=SCALE)
    users = [emulator.user(first_name=f"U{i}") for i in range(12)]
    chats = [emulator.private_chat(u) for u in users]
    owner = emulator.user(first_name="Owner")
    group = emulator.group("Signals", admins=[owner])
    queue = DeliveryQueue(TelegramNotifier(bot), limits=DeliveryLimits().scaled(SCALE))

    sends = []
    for n in range(8):  # 8 per private chat: 3 in the burst, then paced at 1/s
        for chat in chats:
            sends.append(queue.send(chat.id, f"{chat.id} alert {n}", kind="alert"))
    for n in range(24):  # more than a group's 20 a minute
        sends.append(queue.send(group.id, f"signal {n}", kind="feed"))
    results = await asyncio.wait_for(asyncio.gather(*sends), timeout=30)

    assert all(isinstance(r, Sent) for r in results)
    for chat in chats:
        assert [m.text for m in emulator.bot_messages(chat)] == [
            f"{chat.id} alert {n}" for n in range(8)]
    assert [m.text for m in emulator.bot_messages(group)] == [f"signal {n}" for n in range(24)]
    ok = emulator.count("sendMessage", status=200)
    refused = emulator.count("sendMessage", status=429)
    assert ok == 12 * 8 + 24
    # The queue paces itself within every limit the emulator holds it to: not one 429
    # (counted when the answer is back, and spaced on the wire, see bot/notify/pacing.py).
    assert refused == 0, refused
    assert queue.stats["sent"] == ok and queue.stats["failed"] == 0 == queue.stats["throttled"]


async def test_an_edit_storm_across_many_chats_with_sends_keeps_within_the_overall_30(
        emulator: TelegramEmulator, bot: Any) -> None:
    # Telegram's ~30 a second counts every request that sends or edits: 60 monitor
    # messages edited 4 times each while 60 other people get 2 alerts each pass the same
    # wire gate, and the emulator (its 30/s bucket for both) refuses none of them.
    emulator.limits = FloodLimits(time_scale=SCALE)
    watched = [emulator.private_chat(emulator.user(first_name=f"M{i}")) for i in range(60)]
    alerted = [emulator.private_chat(emulator.user(first_name=f"A{i}")) for i in range(60)]
    queue = DeliveryQueue(TelegramNotifier(bot), limits=DeliveryLimits().scaled(SCALE))
    cards = await asyncio.gather(*(queue.send(c.id, "mark 0", kind="reply") for c in watched))
    assert all(isinstance(c, Sent) for c in cards)
    work: list[Any] = []
    for n in range(1, 5):
        for card in cards:
            assert card is not None
            work.append(queue.edit(card.chat_id, card.message_id, f"mark {n}"))
        if n <= 2:
            work.extend(queue.send(c.id, f"alert {n}", kind="alert") for c in alerted)
    results = await asyncio.wait_for(asyncio.gather(*work), timeout=30)

    assert all(r is Edited.SHOWN or isinstance(r, Sent) for r in results), results
    for chat in watched:
        assert [m.content for m in emulator.bot_messages(chat)] == ["mark 4"]
    for chat in alerted:
        assert [m.text for m in emulator.bot_messages(chat)] == ["alert 1", "alert 2"]
    assert emulator.count("editMessageText", status=200) == 60 * 4
    assert emulator.count("editMessageText", status=429) == 0
    assert emulator.count("sendMessage", status=429) == 0
    assert queue.stats["throttled"] == 0 and queue.stats["failed"] == 0


async def test_a_user_who_blocked_the_bot_is_marked_and_others_still_get_theirs(
        emulator: TelegramEmulator, bot: Any) -> None:
    emulator.limits = FloodLimits(time_scale=SCALE)
    alice, bob = emulator.user(first_name="Alice"), emulator.user(first_name="Bob")
    a_chat, b_chat = emulator.private_chat(alice), emulator.private_chat(bob)
    emulator.block_bot(alice)
    blocked: list[int] = []

    async def on_blocked(chat_id: int) -> None:
        blocked.append(chat_id)

    queue = DeliveryQueue(TelegramNotifier(bot), limits=DeliveryLimits().scaled(SCALE),
                          on_blocked=on_blocked)
    results = await asyncio.gather(
        *(queue.send(a_chat.id, f"a{n}", kind="alert") for n in range(3)),
        *(queue.send(b_chat.id, f"b{n}", kind="alert") for n in range(3)))
    assert results[:3] == [None, None, None]
    assert all(isinstance(r, Sent) for r in results[3:])
    assert blocked == [alice.id]
    assert queue.stats["unreachable"] == 3  # counted and logged, not silently lost
    assert emulator.count("sendMessage", status=403) == 1  # no hammering a blocked chat
    assert [m.text for m in emulator.bot_messages(b_chat)] == ["b0", "b1", "b2"]
