"""Trailing-window minimum and maximum of a price, O(1) amortised per tick.

Two monotonic deques per window: the min-deque holds the prices that can still
become the window minimum (increasing from front to back), the max-deque the
mirror image. A new price pops every entry it dominates from the back, expired
entries leave from the front, so each price is pushed and popped at most once.

Time is kept in whole seconds. Two entries in the same second leave the window
together, so the later one is redundant whenever the earlier one already
dominates it; skipping it bounds a deque to one entry per second of window
(86,400 for 24 h) even for a price that trends in one direction all day.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal


class Window:
    """Min and max of the prices seen in the last `seconds` seconds (inclusive)."""

    __slots__ = ("max_p", "max_t", "min_p", "min_t", "seconds")

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.min_t: deque[int] = deque()
        self.min_p: deque[Decimal] = deque()
        self.max_t: deque[int] = deque()
        self.max_p: deque[Decimal] = deque()

    def push(self, now: int, price: Decimal) -> None:
        """Record `price` at second `now` (non-decreasing) and expire old entries."""
        start = now - self.seconds
        t, p = self.min_t, self.min_p
        while p and p[-1] >= price:
            p.pop()
            t.pop()
        if not t or t[-1] != now:
            t.append(now)
            p.append(price)
        while t[0] < start:
            t.popleft()
            p.popleft()
        t, p = self.max_t, self.max_p
        while p and p[-1] <= price:
            p.pop()
            t.pop()
        if not t or t[-1] != now:
            t.append(now)
            p.append(price)
        while t[0] < start:
            t.popleft()
            p.popleft()

    def low(self) -> Decimal:
        return self.min_p[0]

    def high(self) -> Decimal:
        return self.max_p[0]
