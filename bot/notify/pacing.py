"""Telegram's flood limits, the token bucket they are kept with, one chat's buckets, and
the gate that spaces requests at the moment they go on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol


@dataclass(frozen=True)
class DeliveryLimits:
    """Telegram's flood limits, kept a little under the real ones.

    The overall rate is for bulk messages only: Telegram does not count answers to people
    who just wrote against its ~30/s (TELEGRAM.md, "Bulk versus replies"), so the handlers'
    direct replies need no share of it.

    Overall, the queue's `WireGate` lets requests onto the wire at `global_per_sec` with a
    bucket of `wire_burst`, counted at the moment each one really goes (ON_WIRE), so that
    requests held up before that point cannot leave together. Any one-second window of
    requests on the wire then holds at most floor(1.25 + 28.5) = 29: one under Telegram's
    30 however the window is cut, and a server bucket like the emulator's (30, refilled at
    30/s) stays above empty unless the network bunches requests by more than
    (30 - 1.25) / 28.5 = 1.0 s. A fan-out to 1,000 chats takes 999 / 28.5 = 35.1 s, 1.05x
    the 33.3 s floor. (25/s with a burst of 5 was 1.2x and no safer: it survives the same
    1 s of bunching at the emulator, and 40 ms of it under a strict 30-in-any-second
    window, against 44 ms here.)
    """

    global_per_sec: float = 28.5
    # The bucket that picks which chat goes next: a little ahead of the gate, so that one
    # request slow to reach it (a settings read) does not leave the gate idle and the
    # fan-out slower; the gate, not this, bounds what reaches Telegram, edits included
    # (Telegram's 30 a second counts every request that sends or edits).
    global_burst: float = 3.0
    # One message, and a quarter of a gap's slack so that a request that wakes up a little
    # late keeps its slot instead of slowing the pace; at most floor(1.25 + 28.5) = 29 a
    # second (a slack of half a gap would allow 30).
    wire_burst: float = 1.25
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


class ChatLimitsLike(Protocol):
    """The per-chat numbers `ChatBuckets` is built from (`DeliveryLimits` for the delivery
    queue, `handlers.ratelimit.ChatLimits` for replies: each keeps its own figures)."""

    @property
    def per_chat_per_sec(self) -> float: ...
    @property
    def chat_burst(self) -> float: ...
    @property
    def group_per_min(self) -> float: ...
    @property
    def edit_per_chat_per_sec(self) -> float: ...
    @property
    def edit_burst(self) -> float: ...


class ChatBuckets:
    """One chat's share of Telegram's limits: messages (about 1/s with a short burst), in a
    group also 20 a minute, and edits on a looser pace of their own; `not_before` pauses
    the chat (a 429's `retry_after`, a network backoff).

    The caller decides *when* a request is counted: the delivery queue counts a message
    once its answer is back (an upper bound on when the server counted it, with one in
    flight per chat), the handlers' rate limiter as it goes on the wire. Either way
    `count` first brings the buckets up to `now`, so the time a request waited before
    that moment is not credited again after it."""

    __slots__ = ("edits", "group", "not_before", "sends")

    def __init__(self, group: bool, limits: ChatLimitsLike, now: float) -> None:
        self.sends = TokenBucket(limits.chat_burst, limits.per_chat_per_sec, now)
        self.edits = TokenBucket(limits.edit_burst, limits.edit_per_chat_per_sec, now)
        self.group = (TokenBucket(limits.group_per_min, limits.group_per_min / 60, now)
                      if group else None)
        self.not_before = 0.0

    def _buckets(self, edit: bool) -> tuple[TokenBucket, ...]:
        if edit:
            return (self.edits,)
        return (self.sends,) if self.group is None else (self.sends, self.group)

    def wait(self, now: float, edit: bool) -> float:
        """Seconds until one more request of this kind may go (0 or less: now)."""
        return max(self.not_before - now, *(b.wait(now) for b in self._buckets(edit)))

    def count(self, edit: bool, now: float) -> None:
        """One request reached the server no later than `now`."""
        for bucket in self._buckets(edit):
            bucket.wait(now)
            bucket.tokens -= 1

    def refused(self, edit: bool, now: float) -> None:
        """The server's bucket is empty (a 429): ours must be too, or the retry (and the
        others waiting) would knock again at once."""
        for bucket in self._buckets(edit):
            bucket.empty(now)

    def idle(self, now: float) -> bool:
        """Nothing of this chat is remembered any more: no pause, every bucket full (the
        chat can be forgotten and built anew without letting more through)."""
        return self.not_before <= now and all(
            b.full(now) for b in (self.sends, self.edits, self.group) if b is not None)


class WireGate:
    """Lets requests onto the wire one at a time, as a token bucket allows, counted at the
    moment each one really goes.

    With a bucket of 1.25 (one message and a quarter of a gap's slack), the k-th request
    after another goes no sooner than (k - 0.25) gaps after it, however the ones before
    were held up: when the event loop, a database read or a connection pool holds a few
    requests back, they leave the gate spaced as before instead of together, and a window
    of `w` seconds holds at most floor(1.25 + w * rate). The slack only lets a request that
    woke up a little late keep its slot, so a busy loop does not slow the pace down.
    It waits in the caller (a notifier's ON_WIRE, the last moment before the HTTP
    request), so everything that can delay a request before that point is behind it.
    """

    __slots__ = ("_lock", "bucket", "clock", "sleep")

    def __init__(self, bucket: TokenBucket, clock: Callable[[], float],
                 sleep: Callable[[float], Awaitable[Any]]) -> None:
        self.bucket, self.clock, self.sleep = bucket, clock, sleep
        self._lock = asyncio.Lock()  # FIFO: requests keep the order they reached it in

    async def through(self) -> None:
        async with self._lock:
            while (wait := self.bucket.wait(self.clock())) > 0:
                # A floor on the nap: a fake clock advanced by a rounding error's worth
                # might not move at all.
                await self.sleep(max(wait, 1e-6))
            self.bucket.tokens -= 1
