"""Telegram's flood limits, the token bucket they are kept with, and the gate that spaces
requests at the moment they go on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class DeliveryLimits:
    """Telegram's flood limits, kept a little under the real ones.

    The overall rate is for bulk messages only: Telegram does not count answers to people
    who just wrote against its ~30/s (TELEGRAM.md, "Bulk versus replies"), so the handlers'
    direct replies need no share of it.

    Overall, sends go out at most `global_per_sec` with a burst of one, and the queue's
    `WireGate` spaces them again at the moment they go on the wire, 1 / `global_per_sec`
    after the previous one really went (not after the slot it was given). So any one-second
    window of requests on the wire holds at most floor(28.5) + 1 = 29: one under Telegram's
    30 however the window is cut, and a server bucket like the emulator's (30, refilled at
    30/s) stays above empty unless the network bunches requests by more than
    (30 - 1) / 28.5 = 1.02 s. A fan-out to 1,000 chats takes 999 / 28.5 = 35.1 s, 1.05x the
    33.3 s floor. (25/s with a burst of 5 was 1.2x, and no safer: 5 sends at once, then 25
    a second, survive the same 1 s of bunching, and a strict 30-a-second window only 40 ms
    of it, against 52 ms here.)
    """

    global_per_sec: float = 28.5
    # One: a send that was held up must not let the next ones catch up in a bunch.
    global_burst: float = 1.0
    # 10 % under Telegram's pace. The queue counts a chat's message against these buckets
    # when its answer is back (an upper bound on when the server counted it), not when it
    # left, so network jitter cannot bunch one chat's messages at the server.
    per_chat_per_sec: float = 0.9
    chat_burst: float = 3.0
    group_per_min: float = 18.0
    edit_per_chat_per_sec: float = 2.0
    edit_burst: float = 5.0
    max_in_flight: int = 32
    max_attempts: int = 6  # network failures; 429s are retried as told, up to 30 times
    backoff: float = 0.5
    max_backoff: float = 30.0

    def scaled(self, factor: float) -> DeliveryLimits:
        """Every rate `factor` times faster (tests run the emulator's clock faster)."""
        return replace(
            self, global_per_sec=self.global_per_sec * factor,
            per_chat_per_sec=self.per_chat_per_sec * factor,
            group_per_min=self.group_per_min * factor,
            edit_per_chat_per_sec=self.edit_per_chat_per_sec * factor,
            backoff=self.backoff / factor,
        )


class TokenBucket:
    """`capacity` tokens refilled at `rate` a second: Telegram's flood limits have this
    shape (a burst, then a steady pace). Shared by this queue and the handlers' per-chat
    rate limiter, so both pace alike."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity, self.rate, self.tokens, self.updated = capacity, rate, capacity, now

    def wait(self, now: float) -> float:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        self.wait(now)
        return self.tokens >= self.capacity

    def empty(self, now: float) -> None:
        self.wait(now)
        self.tokens = min(self.tokens, 0.0)


class WireGate:
    """Lets requests onto the wire one at a time, each at least `1 / rate` after the previous
    one really went.

    The spacing is counted from the previous request's actual release, never from a slot
    it was given: when the event loop, a database read or a connection pool holds a few
    requests up, they leave the gate spaced as before instead of together. Any window of
    `w` seconds then holds at most floor(w * rate) + 1 releases. It waits in the caller
    (a notifier's ON_WIRE, the last moment before the HTTP request), so everything that
    can delay a request before that point is behind it.
    """

    __slots__ = ("_lock", "clock", "gap", "last", "sleep")

    def __init__(self, rate: float, clock: Callable[[], float],
                 sleep: Callable[[float], Awaitable[Any]]) -> None:
        self.gap = 1.0 / rate
        self.clock, self.sleep = clock, sleep
        self.last = float("-inf")
        self._lock = asyncio.Lock()  # FIFO: requests keep the order they reached it in

    async def through(self) -> None:
        async with self._lock:
            while (wait := self.last + self.gap - self.clock()) > 0:
                # A floor on the nap: a fake clock advanced by a rounding error's worth
                # might not move at all.
                await self.sleep(max(wait, 1e-6))
            self.last = self.clock()
