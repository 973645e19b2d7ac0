"""bot.notify.pacing: one chat's buckets (shared by the delivery queue and the handlers'
rate limiter), and the wire gate that every request of the queue passes, edits included."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any, cast

import pytest

from bot.notify import (
    ON_WIRE,
    Audience,
    ChatBuckets,
    DeliveryLimits,
    DeliveryQueue,
    Edited,
    Sent,
)
from handlers.notifier import TelegramNotifier
from handlers.ratelimit import ChatLimits, ChatRateLimiter
from tests.unit.test_delivery import Clock, most_in_a_second, server_bucket_survives

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


def gaps(buckets: ChatBuckets, edit: bool, n: int) -> list[float]:
    """When `n` requests of one kind may go, each counted as it goes, from t = 0."""
    now, at = 0.0, []
    for _ in range(n):
        now += max(buckets.wait(now, edit), 0.0)
        buckets.count(edit, now)
        at.append(round(now, 6))
    return at


def test_a_chat_gets_a_burst_then_its_pace_and_edits_have_their_own() -> None:
    limits = DeliveryLimits()
    private = ChatBuckets(False, limits, 0.0)
    # A burst of 3, then one every 1/0.9 s.
    assert gaps(private, False, 5) == [0.0, 0.0, 0.0, round(1 / 0.9, 6), round(2 / 0.9, 6)]
    # The sends spent nothing of the edits': a burst of 5 at once, then 2 a second.
    assert gaps(ChatBuckets(False, limits, 0.0), True, 6)[4:] == [0.0, 0.5]
    assert private.wait(0.0, True) <= 0


def test_a_group_is_held_to_its_minute_and_a_private_chat_is_not() -> None:
    fast = DeliveryLimits(per_chat_per_sec=100, chat_burst=100)
    group, private = ChatBuckets(True, fast, 0.0), ChatBuckets(False, fast, 0.0)
    assert gaps(group, False, 19)[-1] == round(60 / 18, 6)  # 18 at once, the 19th later
    assert gaps(private, False, 19)[-1] == 0.0


def test_a_429_empties_only_the_kind_refused_and_a_pause_holds_both() -> None:
    chat = ChatBuckets(True, ChatLimits(), 0.0)
    chat.refused(False, 0.0)
    assert chat.wait(0.0, False) > 0  # Telegram's bucket is empty: so is ours
    assert chat.wait(0.0, True) <= 0  # edits were not refused
    chat.not_before = 5.0
    assert chat.wait(0.0, True) == 5.0 and not chat.idle(1.0)
    assert chat.idle(120.0)  # refilled, unpaused: nothing to remember


def test_time_spent_waiting_before_the_count_is_not_credited_twice() -> None:
    chat = ChatBuckets(False, ChatLimits(), 0.0)
    for _ in range(2):
        chat.count(False, 0.0)  # the burst of 2
    # One more, which waited 10 s before it went: counted at 10 s, the bucket is full
    # (2) then, so one is left, not the 10 s of refill on top of a spent bucket.
    chat.count(False, 10.0)
    assert chat.wait(10.0, False) <= 0
    chat.count(False, 10.0)
    assert chat.wait(10.0, False) > 0


async def test_the_queue_and_the_rate_limiter_keep_a_chat_in_the_same_buckets() -> None:
    """One class, each caller's own numbers: the queue's 0.9/s with a burst of 3, the
    limiter's 0.95/s with a burst of 2."""

    class Bot:
        async def send(self, chat_id: int, text: str, **kw: Any) -> Sent:
            return Sent(chat_id, 1)

    queue = DeliveryQueue(cast(Any, Bot()))
    await queue.send(-5, "hi", kind="alert")
    [q_chat] = queue._chats.values()
    limiter = ChatRateLimiter()

    async def answered() -> bool:
        return True

    await limiter.process_request(answered, (), {}, "sendMessage", {"chat_id": -5}, None)
    [l_chat] = limiter._chats.values()
    for chat, limits in ((q_chat, queue.limits), (l_chat, limiter.limits)):
        assert isinstance(chat, ChatBuckets)
        assert (chat.sends.capacity, chat.sends.rate) == (limits.chat_burst,
                                                          limits.per_chat_per_sec)
        assert chat.group is not None and chat.group.capacity == limits.group_per_min


class FakeBot:
    """PTB's Bot as TelegramNotifier calls it (no rate limiter): each request's moment on
    the wire is recorded."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.wire: list[tuple[float, str]] = []

    async def send_message(self, chat_id: int, text: str, **kw: Any) -> Any:
        self.wire.append((self.clock.now, "send"))
        return SimpleNamespace(message_id=len(self.wire))

    async def edit_message_text(self, text: str, **kw: Any) -> Any:
        self.wire.append((self.clock.now, "edit"))
        return True


async def test_edits_pass_the_wire_gate_with_the_sends_and_stay_under_30_a_second() -> None:
    # An edit storm (300 monitor messages) while 300 alerts go out: Telegram's 30 a
    # second counts both. Each alert waits 0-600 ms for the person's settings (a database
    # read) before its request, edits read none: they used to go straight out, at the
    # moments the delayed alerts reached the wire too.
    rng = random.Random(5)
    clock = Clock()

    async def settings(chat_id: int) -> Audience:
        await clock.sleep(rng.uniform(0, 0.6))
        return Audience()

    bot = FakeBot(clock)
    queue = DeliveryQueue(TelegramNotifier(cast(Any, bot)), audience=settings, clock=clock,
                          sleep=clock.sleep)
    results = await asyncio.gather(
        *(queue.send(1000 + i, f"alert {i}", kind="alert") for i in range(300)),
        *(queue.edit(5000 + i, 1, f"mark {i}") for i in range(300)))
    assert all(isinstance(r, Sent) for r in results[:300])
    assert results[300:] == [Edited.SHOWN] * 300
    times = [at for at, _ in bot.wire]
    assert len(times) == 600
    assert most_in_a_second(times) <= 29
    assert server_bucket_survives(times, 1.0)
    assert clock.now <= 1.1 * 600 / 30, clock.now  # and at the full pace


async def test_a_callers_on_wire_hook_is_for_its_messages_not_its_edits() -> None:
    # Alerts and fills record "maybe told" in ON_WIRE: an edit has nothing to record, so
    # only the gate waits there for it.
    clock = Clock()
    bot = FakeBot(clock)
    queue = DeliveryQueue(TelegramNotifier(cast(Any, bot)), clock=clock, sleep=clock.sleep)
    hooked: list[str] = []

    async def hook() -> None:
        hooked.append(bot.wire[-1][1] if bot.wire else "first")

    token = ON_WIRE.set(hook)
    try:
        await queue.send(7, "alert", kind="alert")
        assert await queue.edit(7, 1, "edited") is Edited.SHOWN
    finally:
        ON_WIRE.reset(token)
    assert hooked == ["first"] and [k for _, k in bot.wire] == ["send", "edit"]


async def test_an_edit_answered_with_a_bare_bool_is_not_taken_as_shown() -> None:
    # Every notifier answers an `Edited`: GONE is what callers act on (a deleted card is
    # sent anew), so a True from a notifier that cannot tell must not pass for SHOWN.
    class Plain:
        async def edit(self, chat_id: int, message_id: int, text: str, **kw: Any) -> bool:
            return True

    queue = DeliveryQueue(cast(Any, Plain()))
    assert await queue.edit(7, 1, "edited") is Edited.FAILED
