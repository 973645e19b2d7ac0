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

    def check(self, user_id: int, *, quiet: bool = False) -> tuple[bool, bool]:
        """(allowed, tell_user): tell only on the first refusal of a streak, to avoid spamming.
        `quiet`: this refusal cannot be told (group chatter), so the next one still is."""
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
        if quiet:
            return False, False
        tell = not b.warned
        b.warned = True
        return False, tell

    def refund(self, user_id: int) -> None:
        """Give back the token of an action that did not happen after all."""
        b = self._buckets.get(user_id)
        if b is not None:
            b.tokens = min(self.burst, b.tokens + 1.0)

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


class OncePer:
    """At most one event per key per `seconds`: "tell a refused stranger once an hour".

    Bounded: past `max_keys` the oldest entries go first (the dict keeps them in the order
    they were last told), so a flood of new ids costs constant memory.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.seconds = seconds
        self.clock = clock
        self.max_keys = max_keys
        self._last: dict[object, float] = {}

    def due(self, key: object) -> bool:
        """True (and remembered) when `key` was not told within the last `seconds`."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.seconds:
            return False
        self._last.pop(key, None)
        while len(self._last) >= self.max_keys:
            del self._last[next(iter(self._last))]
        self._last[key] = now
        return True

    def __len__(self) -> int:
        return len(self._last)


class SlidingLimit:
    """At most `limit` events per `window` seconds per key, counted exactly.

    For costly, rare actions (verifying an API key against the exchange): a user who types
    garbage keys in a loop spends the bot's exchange budget, so the count is exact over the
    window rather than a refilling bucket. Bounded like OncePer.
    """

    def __init__(self, limit: int, window: float, *,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._events: dict[object, list[float]] = {}

    def take(self, key: object) -> float:
        """0.0 and counted when allowed; otherwise the seconds until the next one is."""
        now = self.clock()
        mine = [t for t in self._events.pop(key, []) if now - t < self.window]
        if len(mine) >= self.limit:
            self._events[key] = mine
            return max(0.01, mine[0] + self.window - now)
        mine.append(now)
        while len(self._events) >= self.max_keys:
            del self._events[next(iter(self._events))]
        self._events[key] = mine
        return 0.0

    def give_back(self, key: object) -> None:
        """Undo the latest take: the action it allowed did not happen after all."""
        mine = self._events.get(key)
        if mine:
            mine.pop()


class PublicQuota:
    """Each user's share of the exchange's public (unauthenticated) budget, and a ceiling
    for all users together that leaves room for the bot's own public calls.

    BitMEX allows 30 unauthenticated requests a minute per address. A user gets a few
    uncached public calls a minute (charts, /price fallbacks); everyone together gets 20,
    so instrument refreshes and the market socket's catch-up always find budget left.
    """

    def __init__(self, per_user_per_minute: float = 4.0, burst: int = 4,
                 total_per_minute: float = 20.0, total_burst: int = 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.users = UserRateLimiter(per_user_per_minute, burst, clock=clock)
        self.total = UserRateLimiter(total_per_minute, total_burst, clock=clock)

    def take(self, user_id: int) -> tuple[float, bool]:
        """(0.0, _) and spent when allowed; otherwise (seconds to wait, whether the ceiling
        for everyone, not the user's own share, is what refused)."""
        if not self.users.check(user_id)[0]:
            return max(0.5, self.users.retry_in(user_id)), False
        if not self.total.check(0)[0]:
            self.users.refund(user_id)
            return max(0.5, self.total.retry_in(0)), True
        return 0.0, False
