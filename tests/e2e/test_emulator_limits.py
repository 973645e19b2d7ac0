"""Flood control of the Bot API emulator: the limits themselves and how PTB copes with them."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from telegram import Update
from telegram.error import RetryAfter
from telegram.ext import AIORateLimiter, CommandHandler, ContextTypes

from bot.sandbox.telegram import FloodLimiter, FloodLimits, TelegramEmulator
from tests.e2e.emulator_fixtures import TOKEN, bot, emulator, make_app, running

__all__ = ["bot", "emulator"]  # fixtures, imported for pytest

# PTB 22 warns about its own RetryAfter.retry_after type change on every 429.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_private_chat_allows_a_burst_of_three_then_one_per_second() -> None:
    clock = FakeClock()
    limiter = FloodLimiter(FloodLimits(), clock)
    assert [limiter.acquire(1, 42, group=False) for _ in range(4)] == [0, 0, 0, 1.0]
    clock.now = 0.5
    assert limiter.acquire(1, 42, group=False) == 1.0  # half a token is not a message
    clock.now = 1.0
    assert limiter.acquire(1, 42, group=False) == 0
    assert limiter.acquire(1, 43, group=False) == 0  # another chat has its own bucket
    assert limiter.acquire(2, 42, group=False) == 0  # and so has another bot


def test_group_allows_twenty_a_minute() -> None:
    clock = FakeClock()
    limiter = FloodLimiter(FloodLimits(per_chat_per_sec=100, burst=100), clock)
    assert all(limiter.acquire(1, -5, group=True) == 0 for _ in range(20))
    assert limiter.acquire(1, -5, group=True) == 3.0  # one message every 60/20 s
    clock.now = 3.0
    assert limiter.acquire(1, -5, group=True) == 0
    # The per-chat rhythm applies in groups too, with the default limits.
    strict = FloodLimiter(FloodLimits(), clock)
    assert [strict.acquire(1, -6, group=True) for _ in range(4)] == [0, 0, 0, 1.0]


def test_thirty_a_second_across_chats_and_edits_on_their_own_budget() -> None:
    clock = FakeClock()
    limiter = FloodLimiter(FloodLimits(), clock)
    assert all(limiter.acquire(1, chat, group=False) == 0 for chat in range(30))
    assert limiter.acquire(1, 99, group=False) == 1.0
    clock.now = 1.0
    edits = [limiter.acquire(1, 7, group=False, edit=True) for _ in range(6)]
    assert edits == [0, 0, 0, 0, 0, 1.0]
    assert limiter.acquire(1, 7, group=False) == 0  # messages still have their tokens
    assert FloodLimiter(FloodLimits.off(), clock).acquire(1, 7, group=False) == 0


def test_scaled_time_reports_retry_after_in_real_fractions() -> None:
    limiter = FloodLimiter(FloodLimits(time_scale=10))
    waits = [limiter.acquire(1, 42, group=False) for _ in range(4)]
    assert waits[:3] == [0, 0, 0]
    assert 0 < waits[3] <= 0.1


async def test_over_the_limit_is_a_real_429_with_telegrams_body(
    emulator: TelegramEmulator, bot: Any
) -> None:
    emulator.limits = FloodLimits()
    clock = FakeClock()
    emulator.clock = clock
    user = emulator.user(first_name="Burst")
    chat = emulator.private_chat(user)
    for n in range(3):
        await bot.send_message(chat.id, f"m{n}")
    with pytest.raises(RetryAfter) as info:
        await bot.send_message(chat.id, "m3")
    assert info.value.retry_after == 1
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{emulator.url}/bot{TOKEN}/sendMessage", data={"chat_id": chat.id, "text": "m4"}
        ) as resp,
    ):
        assert resp.status == 429
        assert await resp.json() == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }
    assert [m.text for m in emulator.chat_messages(chat)] == ["m0", "m1", "m2"]
    assert emulator.count("sendMessage", status=429) == 2
    # Refused sends cost nothing: one second later the next message goes through.
    clock.now = 1.0
    await bot.send_message(chat.id, "m5")
    with pytest.raises(RetryAfter):
        await bot.send_message(chat.id, "m6")


async def test_group_burst_meets_429_and_rate_limiter_delivers_in_order(
    emulator: TelegramEmulator,
) -> None:
    # 6 messages a minute, with the clock 60x faster: one slot every ~0.17 s.
    emulator.limits = FloodLimits(per_chat_per_sec=100, burst=100, group_per_min=6, time_scale=60)
    owner = emulator.user(first_name="Owner")
    group = emulator.group("Signals", admins=[owner])
    # PTB's own group throttle would hide the server's; switch it off to meet the 429s.
    app = make_app(
        emulator,
        rate_limiter=AIORateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=20),
    )
    await app.initialize()
    try:
        for n in range(10):
            await app.bot.send_message(group.id, f"signal {n}")
    finally:
        await app.shutdown()
    assert [m.text for m in emulator.bot_messages(group)] == [f"signal {n}" for n in range(10)]
    assert emulator.count("sendMessage", status=429) >= 1
    assert emulator.count("sendMessage", status=200) == 10


async def test_private_burst_from_a_handler_survives_with_rate_limiter(
    emulator: TelegramEmulator,
) -> None:
    emulator.limits = FloodLimits(per_chat_per_sec=1, burst=3, time_scale=20)

    async def report(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None
        for n in range(8):
            await context.bot.send_message(update.effective_chat.id, f"line {n}")

    app = make_app(emulator, rate_limiter=AIORateLimiter(max_retries=10))
    app.add_handler(CommandHandler("report", report))
    user = emulator.user(first_name="Reader")
    chat = emulator.private_chat(user)
    async with running(app):
        emulator.send_text(user, chat, "/report")
        await emulator.wait_for(lambda: len(emulator.bot_messages(chat)) == 8, timeout=8)
        await emulator.idle()
    assert [m.text for m in emulator.bot_messages(chat)] == [f"line {n}" for n in range(8)]
    assert emulator.count("sendMessage", status=429) >= 1


async def test_a_press_answered_after_15_s_is_too_old_and_so_is_a_second_answer(
    emulator: TelegramEmulator, bot: Any
) -> None:
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup
    from telegram.error import BadRequest

    clock = FakeClock()
    emulator.clock = clock  # the emulator's own time, driven by the test
    user = emulator.user(first_name="Presser")
    chat = emulator.private_chat(user)
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go")]])
    sent = await bot.send_message(chat.id, "Card", reply_markup=markup)
    card = emulator.chat_messages(chat)[-1]
    assert card.message_id == sent.message_id

    late = emulator.press(user, card, "Go")
    clock.now = 15.5
    with pytest.raises(BadRequest, match=r"(?i)query is too old and response timeout expired"):
        await bot.answer_callback_query(late, "too late")
    assert emulator.answers(late) is None

    timely = emulator.press(user, card, "Go")
    clock.now = 29.0  # 13.5 s after the press: in time
    assert await bot.answer_callback_query(timely, "ok")
    answer = emulator.answers(timely)
    assert answer is not None and answer.text == "ok" and answer.after == pytest.approx(13.5)
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(timely, "again")


async def test_the_server_holds_to_its_retry_after_and_can_ask_for_long_waits(
    emulator: TelegramEmulator, bot: Any
) -> None:
    clock = FakeClock()
    emulator.clock = clock
    emulator.limits = FloodLimits(min_retry_after=30)
    user = emulator.user(first_name="Flood")
    chat = emulator.private_chat(user)
    for n in range(3):
        await bot.send_message(chat.id, f"m{n}")
    with pytest.raises(RetryAfter) as info:
        await bot.send_message(chat.id, "m3")
    assert info.value.retry_after == 30  # the server's choice, not the bucket's 1 s
    clock.now = 10.0  # the bucket has refilled, but the server said 30 s
    with pytest.raises(RetryAfter) as again:
        await bot.send_message(chat.id, "m4")
    assert again.value.retry_after == 20
    other = emulator.private_chat(emulator.user(first_name="Other"))
    await bot.send_message(other.id, "elsewhere")  # only the flooded chat waits
    clock.now = 30.0
    await bot.send_message(chat.id, "m5")
    assert [m.text for m in emulator.chat_messages(chat)] == ["m0", "m1", "m2", "m5"]


async def test_replies_to_people_who_wrote_are_not_held_to_the_bulk_30_a_second(
    emulator: TelegramEmulator, bot: Any
) -> None:
    clock = FakeClock()
    emulator.clock = clock
    emulator.limits = FloodLimits()
    writers = [emulator.private_chat(emulator.user(first_name=f"W{i}")) for i in range(40)]
    for chat in writers:
        assert chat.user is not None
        emulator.send_text(chat.user, chat, "/help")
    for chat in writers:  # 40 answers in the same instant: fine
        await bot.send_message(chat.id, "answer")
    silent = [emulator.private_chat(emulator.user(first_name=f"S{i}")) for i in range(31)]
    for chat in silent[:30]:  # bulk: 30 a second
        await bot.send_message(chat.id, "news")
    with pytest.raises(RetryAfter):
        await bot.send_message(silent[30].id, "news")
