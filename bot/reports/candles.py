"""Candles shared by everyone who asks: one fetch per symbol and bin while the bin lasts.

BitMEX gives the bot's address 30 unauthenticated requests a minute, for all users
together; without sharing, two users typing /chart could spend it and make everyone's
chart wait for the next minute. A candle only changes while its bin is open, so an answer
is kept until the bin closes (never longer than the bin, nor than MAX_AGE), and people
asking for the same chart at the same moment share one request.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.exchange.types import Candle

BIN_SECONDS = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
# A 1h or 1d chart kept for its whole bin would show a forming candle up to a day old.
MAX_AGE = 300.0
FETCH = 100  # candles fetched at least: a later /chart with fewer is served from this

Key = tuple[str, str, str]  # network, symbol, bin


@dataclass
class _Entry:
    rows: list[Candle]
    asked: int  # how many were requested; fewer rows back = the whole history
    until: float


class CandleCache:
    def __init__(self, clock: Callable[[], float] = time.time, max_entries: int = 2048) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[Key, _Entry] = {}
        self._locks: dict[Key, asyncio.Lock] = {}

    def get(self, network: str, symbol: str, bin_size: str, count: int) -> list[Candle] | None:
        entry = self._entries.get((network, symbol, bin_size))
        if entry is None or self.clock() >= entry.until:
            return None
        if count > entry.asked and len(entry.rows) >= entry.asked:
            return None  # more asked than fetched, and there may be more history
        return entry.rows[-count:]

    def put(self, network: str, symbol: str, bin_size: str, asked: int,
            rows: Sequence[Candle]) -> None:
        now = self.clock()
        span = BIN_SECONDS.get(bin_size, 60)
        bin_end = math.floor(now / span) * span + span
        key = (network, symbol, bin_size)
        self._entries.pop(key, None)
        while len(self._entries) >= self.max_entries:  # the oldest entry goes first
            old = next(iter(self._entries))
            del self._entries[old]
            self._locks.pop(old, None)
        self._entries[key] = _Entry(list(rows), asked, min(bin_end, now + MAX_AGE))

    def lock(self, network: str, symbol: str, bin_size: str) -> asyncio.Lock:
        """Held while one request fetches: the others wait and read what it brought."""
        return self._locks.setdefault((network, symbol, bin_size), asyncio.Lock())
