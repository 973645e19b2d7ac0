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


async def test_a_press_is_answered_while_a_hundred_chats_have_replies_on_the_wire() -> None:
    """The bench's stall (100 users x 5 rounds under real flood limits): every chat's reply
    took a connection of the HTTP pool while Telegram was slow to answer, and the presses'
    answers queued behind them until the pool timeout dropped them. Here the pool is 8
    connections with a pool timeout; paced sends may hold at most 6 of them."""
    pool, slow = asyncio.Semaphore(8), asyncio.Event()
    answered: list[str] = []

    def over_the_pool(label: str) -> Any:
        async def callback() -> bool:
            await asyncio.wait_for(pool.acquire(), 0.5)  # httpx's PoolTimeout, shortened
            try:
                if label == "sendMessage":
                    await slow.wait()  # Telegram busy: the connection stays taken
                answered.append(label)
                return True
            finally:
                pool.release()

        return callback

    limiter = ChatRateLimiter(ChatLimits().scaled(FAST), max_in_flight=6)
    replies = [asyncio.create_task(limiter.process_request(
        over_the_pool("sendMessage"), (), {}, "sendMessage", {"chat_id": c}, None))
        for c in range(1, 101)]
    await asyncio.sleep(0.01)
    assert await limiter.process_request(over_the_pool("answerCallbackQuery"), (), {},
                                         "answerCallbackQuery", {}, None)
    assert answered == ["answerCallbackQuery"]
    slow.set()
    assert all(await asyncio.gather(*replies))  # and no reply was lost to the pool timeout
    assert answered.count("sendMessage") == 100


async def test_a_request_is_declared_on_the_wire_only_after_its_paced_wait() -> None:
    """bot.notify.ON_WIRE (alerts and fills record "maybe told" there, the delivery queue's
    wire gate waits there): called once per request, after the chat's pace let it go,
    right before it reaches Telegram; for edits too, since Telegram's 30 a second counts
    them (the queue passes no caller's hook with an edit)."""
    from bot.notify import ON_WIRE

    limiter, server = ChatRateLimiter(ChatLimits().scaled(FAST)), Server()
    burst = int(ChatLimits().chat_burst)
    for i in range(burst):  # the chat's burst is spent: the next send waits its turn
        await send(limiter, server, "sendMessage", 7, label=f"m{i}")
    wired: list[tuple[float, int]] = []

    async def hook() -> None:
        wired.append((time.monotonic() - server.t0, len(server.log)))

    token = ON_WIRE.set(hook)
    try:
        before = time.monotonic() - server.t0
        await send(limiter, server, "sendMessage", 7, label="paced")
        await send(limiter, server, "editMessageText", 7, label="edit")
    finally:
        ON_WIRE.reset(token)
    at = {label: t for label, _, t in server.log}
    assert len(wired) == 2, wired  # the send's and the edit's
    (when, reached), (edit_when, edit_reached) = wired
    assert reached == burst  # before the request reached the server...
    assert when - before >= 0.01  # ...after the pace held it (about 21 ms)...
    assert at["paced"] - when < 0.05  # ...and right before it
    assert edit_reached == burst + 1 and at["edit"] - edit_when < 0.05


async def test_a_send_held_for_a_connection_slot_counts_when_it_goes_not_when_its_turn_came(
        ) -> None:
    """A send that had its turn but waited for a connection slot used to have taken its
    chat's token already: a long wait refilled the bucket behind it, and the chat's next
    sends took those tokens and followed it onto the wire in one bunch. Now the tokens are
    taken as it goes, and the next ones wait behind it in the chat's line."""
    offset = [0.0]
    limiter = ChatRateLimiter(ChatLimits().scaled(FAST), max_in_flight=1,
                              clock=lambda: time.monotonic() + offset[0])
    server = Server()
    server.t0 = limiter.clock()
    hold = asyncio.Event()

    async def holding() -> bool:
        await hold.wait()  # the only connection slot is taken meanwhile
        return True

    other = asyncio.create_task(limiter.process_request(
        holding, (), {}, "sendMessage", {"chat_id": 1}, None))

    def logged(label: str) -> Any:
        async def callback() -> bool:
            server.log.append((label, 2, limiter.clock() - server.t0))
            return True

        return callback

    def to_two(label: str) -> asyncio.Task[Any]:
        return asyncio.create_task(limiter.process_request(
            logged(label), (), {}, "sendMessage", {"chat_id": 2}, None))

    sends = [to_two("b0"), to_two("b1")]  # the chat's burst of 2
    for _ in range(10):
        await asyncio.sleep(0)
    offset[0] += 10.0  # the slot stays taken for a long while: the chat's bucket refills
    sends.append(to_two("b2"))
    for _ in range(10):
        await asyncio.sleep(0)
    hold.set()
    assert all(await asyncio.gather(other, *sends))
    assert [label for label, _, _ in server.log] == ["b0", "b1", "b2"]
    at = [t for _, _, t in server.log]
    # The chat's bucket (2, refilled at 0.95/s, here 50x faster) holds at the "server".
    rate = ChatLimits().per_chat_per_sec * FAST
    for i in range(3):
        for j in range(i + 1, 3):
            assert j - i + 1 <= 2 + rate * (at[j] - at[i]) + 1e-6, (i, j, at)
