"""A small per-process cache of rows the hot paths read, kept honest by commits.

Filled by readers, emptied by `Database.on_commit` (the rows a committed transaction
changed). A fill is kept only if no such commit came between the start of its read and
the fill (`generation`): a reader that saw a row before a concurrent /use or /settings
committed cannot put the old one back after the invalidation.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Bounds what a row written by another process (an operator's SQL, a second instance that
# led before) can leave stale, and the memory: 20,000 small entries are a few MB.
TTL_S = 600.0
MAX_ENTRIES = 20_000


class RowCache(Generic[K, V]):
    """Values by key, least recently used dropped first, each for at most `ttl` seconds."""

    def __init__(self, ttl: float = TTL_S, size: int = MAX_ENTRIES) -> None:
        self.ttl, self.size = ttl, size
        self._rows: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.generation = 0
        self.hits = self.misses = 0

    def get(self, key: K) -> tuple[bool, V | None]:
        got = self._rows.get(key)
        if got is None or time.monotonic() - got[0] > self.ttl:
            self.misses += 1
            return False, None
        self._rows.move_to_end(key)
        self.hits += 1
        return True, got[1]

    def put(self, key: K, value: V, generation: int) -> None:
        if generation != self.generation:
            return  # a write committed while we read: the next reader loads it afresh
        self._rows[key] = (time.monotonic(), value)
        self._rows.move_to_end(key)
        while len(self._rows) > self.size:
            self._rows.popitem(last=False)

    def invalidate(self, keys: set[Any] | None) -> None:
        """Drop these keys (None: all of them)."""
        self.generation += 1
        if keys is None:
            self._rows.clear()
            return
        for k in keys:
            self._rows.pop(k, None)
