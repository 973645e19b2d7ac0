"""Telegram's flood control, per bot, as token buckets.

Real limits (Bot API FAQ): about one message per second to a private chat with short bursts
tolerated, about 30 messages per second overall, 20 messages per minute to a group. The
overall 30/s is for bulk notifications: answers to people who just wrote are not held to it
(TELEGRAM.md, "Bulk versus replies"); the emulator tells them apart (`bulk`).
Edits are not free on the real server either but are looser; here they draw from their own
per-chat bucket (2/s, burst 5 by default) and from the shared 30/s bucket, so an edit storm
is caught while a progress message edited a few times is not.

Like Telegram, the server chooses `retry_after` and holds to it: a bot that knocks again
before it is up is refused again (with what is left). `min_retry_after` (emulated seconds)
is the mode where Telegram answers a flood with long waits (tens of seconds), so a bot
that lets one chat's 429 stall the others shows it.

`time_scale` lets tests run the clock faster: with 20, a 60 s group window lasts 3 s and
`retry_after` is sent in real seconds, as a fraction (PTB accepts it); at 1 it is whole seconds
like Telegram's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

Clock = Callable[[], float]


@dataclass(frozen=True)
class FloodLimits:
    per_chat_per_sec: float = 1.0
    burst: float = 3.0
    global_per_sec: float = 30.0
    group_per_min: float = 20.0
    edit_per_chat_per_sec: float = 2.0
    edit_burst: float = 5.0
    time_scale: float = 1.0
    enabled: bool = True
    min_retry_after: float = 0.0

    @classmethod
    def off(cls) -> FloodLimits:
        return cls(enabled=False)

    def scaled(self, time_scale: float) -> FloodLimits:
        return replace(self, time_scale=time_scale)


@dataclass
class _Bucket:
    capacity: float
    rate: float  # tokens per (emulated) second
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def wait(self) -> float:
        """Emulated seconds until one token is available (0 when one is)."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class FloodLimiter:
    """Decides, per bot, whether one more message may go out now."""

    def __init__(self, limits: FloodLimits, clock: Clock | None = None) -> None:
        self.limits = limits
        self._origin = time.monotonic()
        self._clock = clock
        self._buckets: dict[tuple[object, ...], _Bucket] = {}
        # bucket key -> emulated time until which the server refuses, as it said it would.
        self._refused_until: dict[tuple[object, ...], float] = {}

    def now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return (time.monotonic() - self._origin) * self.limits.time_scale

    def _bucket(self, key: tuple[object, ...], capacity: float, rate: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(capacity, rate, capacity, self.now())
            self._buckets[key] = bucket
        return bucket

    def acquire(self, bot_id: int, chat_id: int, *, group: bool, edit: bool = False,
                bulk: bool = True) -> float:
        """Take a token from every bucket concerned, or none; return the real seconds to
        wait (the `retry_after` to send) when one of them is empty, else 0. The overall
        30/s holds for `bulk` messages only, not for answers to people who just wrote."""
        lim = self.limits
        if not lim.enabled:
            return 0.0
        specs: list[tuple[tuple[object, ...], float, float]] = []
        if bulk:
            specs.append((("global", bot_id), lim.global_per_sec, lim.global_per_sec))
        if edit:
            specs.append((("edit", bot_id, chat_id), lim.edit_burst, lim.edit_per_chat_per_sec))
        else:
            specs.append((("chat", bot_id, chat_id), lim.burst, lim.per_chat_per_sec))
            if group:
                specs.append((("group", bot_id, chat_id), lim.group_per_min,
                              lim.group_per_min / 60))
        now = self.now()
        held = max((self._refused_until.get(key, 0.0) - now for key, _, _ in specs), default=0.0)
        if held > 0:
            return self._real_retry_after(held)
        buckets = [(key, self._bucket(key, cap, rate)) for key, cap, rate in specs]
        for _, bucket in buckets:
            bucket.refill(now)
        key, wait = max(((k, b.wait()) for k, b in buckets), key=lambda kw: kw[1])
        if wait > 0:
            wait = max(wait, lim.min_retry_after)
            self._refused_until[key] = now + wait
            return self._real_retry_after(wait)
        for _, bucket in buckets:
            bucket.tokens -= 1
        return 0.0

    def _real_retry_after(self, emulated_wait: float) -> float:
        if self._clock is None and self.limits.time_scale != 1:
            real = emulated_wait / self.limits.time_scale
            return max(math.ceil(real * 100) / 100, 0.01)
        return float(max(math.ceil(emulated_wait), 1))
