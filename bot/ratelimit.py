"""Per-user command rate limiting: a token bucket per user id.

A trader hammering /positions from a flaky phone connection must not starve the
exchange rate limit shared by everyone, so each user gets a small burst and a
steady refill. Pure and clock-injected, so tests drive time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    warned: bool = False


class UserRateLimiter:
    def __init__(
        self,
        rate_per_minute: float = 40.0,
        burst: int = 20,
        clock: Callable[[], float] = time.monotonic,
        max_users: int = 100_000,
    ) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.max_users = max_users
        self._buckets: dict[int, _Bucket] = {}

    def check(self, user_id: int) -> tuple[bool, bool]:
        """(allowed, tell_user): tell only on the first refusal of a streak, to avoid spamming."""
        now = self.clock()
        b = self._buckets.get(user_id)
        if b is None:
            if len(self._buckets) >= self.max_users:
                self._evict(now)
            b = self._buckets[user_id] = _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + (now - b.stamp) * self.rate)
        b.stamp = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            b.warned = False
            return True, False
        tell = not b.warned
        b.warned = True
        return False, tell

    def retry_in(self, user_id: int) -> float:
        b = self._buckets.get(user_id)
        if b is None or b.tokens >= 1.0:
            return 0.0
        return (1.0 - b.tokens) / self.rate

    def _evict(self, now: float) -> None:
        # Full buckets carry no information: forgetting them changes nothing.
        full = [uid for uid, b in self._buckets.items()
                if b.tokens + (now - b.stamp) * self.rate >= self.burst]
        for uid in full:
            del self._buckets[uid]
