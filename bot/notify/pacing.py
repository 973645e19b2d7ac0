"""Telegram's flood limits, and the token bucket they are kept with."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class DeliveryLimits:
    """Telegram's flood limits, kept a little under the real ones.

    The overall rate is for bulk messages only: Telegram does not count answers to people
    who just wrote against its ~30/s (TELEGRAM.md, "Bulk versus replies"), so the handlers'
    direct replies need no share of it. 25/s makes a fan-out 1.2x the floor that 30/s
    sets; 29/s (1.05x) met a strict emulator's 429s, since 29 + a burst of 5 exceeds 30 in
    one second.
    """

    global_per_sec: float = 25.0
    # Burst + rate bounds any one-second window: 5 + 25 stays within Telegram's 30.
    global_burst: float = 5.0
    # 10 % under Telegram's pace: requests reach the server with jitter, and one that
    # arrives a little early would otherwise meet a 429.
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
