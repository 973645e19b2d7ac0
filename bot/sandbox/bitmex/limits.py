"""Rate limits as BitMEX applies them: the per-minute token bucket of every key (or address),
the 10/s second layer on order and position writes, and 60 WebSocket connects an hour per IP.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime


@dataclass
class RateLimitConfig:
    """Per-key REST limits; the bench raises them, tests lower them."""

    per_minute: int = 120
    per_second_orders: int = 10
    unauthenticated_per_minute: int = 30


# The 10/s second layer covers exactly these (BitMEX, "Second Layer Rate Limits"): not
# GET /order, not cancelAllAfter, but the position writes.
SECOND_LAYER_ROUTES = frozenset({
    ("POST", "/api/v1/order"), ("PUT", "/api/v1/order"), ("DELETE", "/api/v1/order"),
    ("POST", "/api/v1/order/bulk"), ("PUT", "/api/v1/order/bulk"),
    ("DELETE", "/api/v1/order/all"),
    ("POST", "/api/v1/position/leverage"), ("POST", "/api/v1/position/isolate"),
    ("POST", "/api/v1/position/transferMargin"),
})


class Bucket:
    """BitMEX's per-minute limit: a token bucket of `limit` tokens refilled evenly over a
    minute (120/min = one token every 0.5 s), so a spent budget comes back gradually."""

    def __init__(self, limit: int, now: float) -> None:
        self.limit = limit
        self.tokens = float(limit)
        self.at = now

    def refill(self, limit: int, now: float) -> None:
        if limit != self.limit:  # a test changed the limit: start from a full bucket
            self.limit, self.tokens = limit, float(limit)
        self.tokens = min(float(limit), self.tokens + (now - self.at) * limit / 60.0)
        self.at = now

    def wait(self) -> float:
        """Seconds until one whole token is there."""
        return max(0.0, (1.0 - self.tokens) * 60.0 / self.limit)

    def full_in(self) -> float:
        return (self.limit - self.tokens) * 60.0 / self.limit


class Window:
    """Sliding window of request times (wall monotonic seconds)."""

    def __init__(self, span: float) -> None:
        self.span = span
        self.times: deque[float] = deque()

    def prune(self, now: float) -> None:
        while self.times and self.times[0] <= now - self.span:
            self.times.popleft()

    def retry_after(self, now: float) -> float:
        return self.times[0] + self.span - now if self.times else 0.0


class WsConnectLimit:
    """BitMEX's 60 WebSocket connects per rolling hour per client IP, on simulated time.

    Every accepted upgrade counts, whatever the endpoint (/realtime or /realtimemd).
    """

    def __init__(self, per_hour: int = 60) -> None:
        self.per_hour = per_hour
        self.handshakes: dict[str, deque[datetime]] = {}
        self.refused = 0  # upgrades answered 429

    def _window(self, ip: str, now: datetime) -> deque[datetime]:
        times = self.handshakes.setdefault(ip, deque())
        while times and (now - times[0]).total_seconds() >= 3600:
            times.popleft()
        return times

    def admit(self, ip: str, now: datetime) -> tuple[int, float]:
        """(remaining after this connect, 0) when admitted; (-1, retry_after) when not."""
        times = self._window(ip, now)
        if len(times) >= self.per_hour:
            self.refused += 1
            return -1, 3600 - (now - times[0]).total_seconds()
        times.append(now)
        return self.per_hour - len(times), 0.0

    def used(self, ip: str = "127.0.0.1", now: datetime | None = None) -> int:
        """Handshakes counted in the hour up to `now` (tests read this)."""
        times = self.handshakes.get(ip, deque())
        if now is None:
            return len(times)
        return sum(1 for t in times if (now - t).total_seconds() < 3600)

    def fill(self, n: int, at: datetime, ip: str = "127.0.0.1") -> None:
        """`n` handshakes made at `at` by someone else on `ip` (another process)."""
        self.handshakes.setdefault(ip, deque()).extend([at] * n)

    def reset(self) -> None:
        self.handshakes.clear()
        self.refused = 0
