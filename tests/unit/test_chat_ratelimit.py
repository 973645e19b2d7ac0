"""handlers.ratelimit.ChatRateLimiter: one throttled chat slows only itself (issue 11, B4)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from telegram.error import RetryAfter

from handlers.ratelimit import ChatLimits, ChatRateLimiter, Pace

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

FAST = 50.0  # limits 50x faster than Telegram's: a second lasts 20 ms


class Server:
    """Records what reached "Telegram" and when; can answer 429 for one chat."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any, float]] = []
        self.throttle: dict[Any, int] = {}
        self.t0 = time.monotonic()

    def call(self, label: str, chat_id: Any, retry_after: float = 0.5) -> Any:
        async def callback() -> bool:
            if self.throttle.get(chat_id, 0) > 0:
                self.throttle[chat_id] -= 1
                raise RetryAfter(retry_after)  # type: ignore[arg-type]
            self.log.append((label, chat_id, time.monotonic() - self.t0))
            return True

        return callback


async def send(limiter: ChatRateLimiter, server: Server, endpoint: str, chat_id: Any,
               pace: Pace | None = None, retry_after: float = 0.5, label: str = "") -> Any:
    data = {} if chat_id is None else {"chat_id": chat_id}
    return await limiter.process_request(server.call(label or endpoint, chat_id, retry_after),
                                         (), {}, endpoint, data, pace)


async def test_a_429_pauses_only_its_chat() -> None:
    limiter, server = ChatRateLimiter(ChatLimits().scaled(FAST), max_retries=2), Server()
    server.throttle[-100] = 1
    group = asyncio.create_task(send(limiter, server, "sendMessage", -100))
    await asyncio.sleep(0.05)
    # While the group waits out its 0.5 s, a private chat is served at once.
    started = time.monotonic()
    assert await send(limiter, server, "sendMessage", 42)
    assert time.monotonic() - started < 0.2
    assert await group
    times = {chat: at for _, chat, at in server.log}
    assert times[42] < times[-100] and times[-100] >= 0.5
    assert limiter.stats["throttled"] == 1


async def test_retries_run_out_and_the_429_is_raised() -> None:
    limiter, server = ChatRateLimiter(ChatLimits().scaled(FAST), max_retries=1), Server()
    server.throttle[7] = 5
    with pytest.raises(RetryAfter):
        await send(limiter, server, "sendMessage", 7, retry_after=0.01)
    assert limiter.stats["gave_up"] == 1


async def test_only_sends_count_and_presses_are_never_held() -> None:
    limiter, server = ChatRateLimiter(ChatLimits().scaled(FAST)), Server()
    started = time.monotonic()
    for _ in range(40):  # far past a group's 20 a minute: none of these is a message
        await send(limiter, server, "getChatMember", -5)
        await send(limiter, server, "deleteMessage", -5)
        await send(limiter, server, "answerCallbackQuery", None)
    assert time.monotonic() - started < 0.5
    assert len(server.log) == 120


async def test_private_chats_are_paced_at_about_one_a_second() -> None:
    limiter, server = ChatRateLimiter(ChatLimits().scaled(FAST)), Server()
    await asyncio.gather(*(send(limiter, server, "sendMessage", 9) for _ in range(8)))
    at = [t for _, _, t in server.log]
    # A burst of 2, then one every 1/0.95 s (here 50x faster: about 21 ms).
    assert at[-1] - at[0] >= 6 / (0.95 * FAST) * 0.9
    assert len(at) == 8


async def test_in_a_group_urgent_sends_overtake_waiting_reads() -> None:
    limiter, server = ChatRateLimiter(ChatLimits().scaled(FAST)), Server()
    reads = [asyncio.create_task(send(limiter, server, "sendMessage", -7, Pace(6),
                                      label=f"read {i}")) for i in range(10)]
    await asyncio.sleep(0.01)
    card = asyncio.create_task(send(limiter, server, "sendMessage", -7, Pace(0), label="card"))
    await asyncio.gather(card, *reads)
    order = [label for label, _, _ in server.log]
    # The burst went at once; the card is the first of what had to wait.
    assert order.index("card") == 2, order
