"""A compact sorted book of thresholds whose fired entries are always a tail.

Every alert kind is reduced to one question: "which stored keys are >= q?"
(an *above* price alert stores ``-threshold`` and is asked with ``-price``; a
*below* alert stores ``threshold`` and is asked with ``price``; a move alert
stores ``-pct`` and is asked with ``-move``). Keys are kept ascending, so the
entries that fire are a suffix of the arrays: finding them is one bisect and
cutting them off is ``del a[lo:]``, O(log n + k), and a tick where nothing fires
costs one float comparison against the last key.

Storage is four parallel ``array`` columns (about 25 bytes an alert) instead of
Python objects (well over 100), which is what lets a million alerts fit in
memory:

- ``keys``  float64 sort keys: ``float(Decimal)`` is correctly rounded and so
  monotonic, which means a float comparison is only ever wrong when the two
  floats are *equal*; those boundary entries are re-checked exactly;
- ``coefs`` / ``exps``: the exact Decimal key as ``coef * 10**exp`` (int64,
  int8), used only for that boundary check;
- ``ids``   int64 alert ids.

Removal is lazy: the id goes into ``dead`` (a tombstone) and stays in the
arrays until it reaches the tail (it is then dropped instead of fired) or until
tombstones make up half the book, when the arrays are rebuilt in one O(n) pass.
That keeps removal O(1) amortised without a position index per alert.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from decimal import Decimal
from fractions import Fraction

_INT64_MAX = 2**63 - 1

# Compaction waits until the tombstones are at least this many, so that a tiny
# book is not rebuilt on every removal.
_MIN_DEAD_FOR_COMPACTION = 32


def split_exact(value: Decimal) -> tuple[int, int]:
    """`value` as (coef, exp) with value == coef * 10**exp, fitting int64 / int8.

    Raises ValueError for NaN/infinity, more than 18 significant digits or an
    exponent outside -128..127: such thresholds are not prices a user types.
    """
    if not value.is_finite():
        raise ValueError(f"threshold must be finite, got {value}")
    sign, digits, exp = value.as_tuple()
    assert isinstance(exp, int)  # finite, checked above
    coef = int("".join(map(str, digits))) if digits else 0
    if coef == 0:
        return 0, 0
    # Strip trailing zeros by integer arithmetic: Decimal.normalize() would
    # round to the context precision, which must never touch a threshold.
    while coef % 10 == 0:
        coef //= 10
        exp += 1
    if coef > _INT64_MAX:
        raise ValueError(f"threshold has too many significant digits: {value}")
    if not -128 <= exp <= 127:
        raise ValueError(f"threshold exponent out of range: {value}")
    return (-coef if sign else coef), exp


def join_exact(coef: int, exp: int) -> Fraction:
    """The exact value of a stored key, as a Fraction (for exact comparisons)."""
    if exp >= 0:
        return Fraction(coef * 10**exp)
    return Fraction(coef, 10**-exp)


class Book:
    """Sorted thresholds of one (symbol, alert kind); fires every key >= q."""

    __slots__ = ("code", "coefs", "dead", "exps", "ids", "keys")

    def __init__(self, code: int) -> None:
        # `code` is what the index stores per alert id to find this book again;
        # sharing this one int object across all of the book's alerts costs nothing.
        self.code = code
        self.keys = array("d")
        self.ids = array("q")
        self.coefs = array("q")
        self.exps = array("b")
        self.dead: set[int] = set()

    def __len__(self) -> int:
        """Entries held, tombstoned ones included."""
        return len(self.keys)

    def live_count(self) -> int:
        return len(self.keys) - len(self.dead)

    def add(self, alert_id: int, key: float, coef: int, exp: int) -> None:
        """Insert one entry: O(log n) to find the place, plus a C memmove of the tail."""
        if alert_id in self.dead:
            # The id was removed and re-added before its tombstone was cleared;
            # a stale copy would look alive again, so clear tombstones first.
            self.compact()
        i = bisect_right(self.keys, key)
        self.keys.insert(i, key)
        self.ids.insert(i, alert_id)
        self.coefs.insert(i, coef)
        self.exps.insert(i, exp)

    def extend_unsorted(self, entries: Iterable[tuple[int, float, int, int]]) -> None:
        """Bulk add (id, key, coef, exp) entries, then sort once: O(n log n) for a load."""
        if self.dead:
            self.compact()
        for alert_id, key, coef, exp in entries:
            self.keys.append(key)
            self.ids.append(alert_id)
            self.coefs.append(coef)
            self.exps.append(exp)
        self._sort()

    def extend_columns(self, ids: array[int], keys: array[float], coefs: array[int],
                       exps: array[int]) -> None:
        """Bulk add entries given as columns, then sort once (the index's `BulkLoader`)."""
        if self.dead:
            self.compact()
        self.ids.extend(ids)
        self.keys.extend(keys)
        self.coefs.extend(coefs)
        self.exps.extend(exps)
        self._sort()

    def _sort(self) -> None:
        keys = self.keys
        # Sorting a permutation keeps the columns compact (no tuple per entry).
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self.keys = array("d", [keys[i] for i in order])
        ids = self.ids
        self.ids = array("q", [ids[i] for i in order])
        coefs = self.coefs
        self.coefs = array("q", [coefs[i] for i in order])
        exps = self.exps
        self.exps = array("b", [exps[i] for i in order])

    def remove(self, alert_id: int) -> None:
        """Tombstone an id known to be in this book; compact when they pile up."""
        self.dead.add(alert_id)
        if len(self.dead) >= _MIN_DEAD_FOR_COMPACTION and 2 * len(self.dead) >= len(self.keys):
            self.compact()

    def compact(self) -> None:
        """Drop tombstoned entries in one pass (amortised over the removals)."""
        dead = self.dead
        if not dead:
            return
        keep = [i for i, alert_id in enumerate(self.ids) if alert_id not in dead]
        self.keys = array("d", [self.keys[i] for i in keep])
        self.ids = array("q", [self.ids[i] for i in keep])
        self.coefs = array("q", [self.coefs[i] for i in keep])
        self.exps = array("b", [self.exps[i] for i in keep])
        dead.clear()

    def may_fire(self, q: float) -> bool:
        """Cheap pre-check: False means certainly nothing fires for q."""
        keys = self.keys
        return bool(keys) and keys[-1] >= q

    def fire(
        self, q: float, eps: float, exact_q: Callable[[], Fraction]
    ) -> list[tuple[int, int, int]]:
        """Cut off and return (id, coef, exp) of every live entry whose key >= q.

        `q` is a float approximation of the exact query value returned by
        `exact_q()`, off by at most `eps` (0 when q is a correctly rounded
        float, as for prices). Keys strictly above q + eps fire, keys below
        q - eps do not, and only the entries in the band between are compared
        exactly (usually none; exact_q is not even called then).
        """
        keys = self.keys
        lo = bisect_left(keys, q - eps)
        n = len(keys)
        if lo == n:
            return []
        band_end = bisect_right(keys, q + eps, lo) if eps else bisect_right(keys, q, lo)
        ids, coefs, exps, dead = self.ids, self.coefs, self.exps, self.dead
        fired: list[tuple[int, int, int]] = []
        kept: list[tuple[float, int, int, int]] = []
        if band_end > lo:
            exact = exact_q()
            for i in range(lo, band_end):
                alert_id = ids[i]
                if alert_id in dead:
                    dead.discard(alert_id)
                elif join_exact(coefs[i], exps[i]) >= exact:
                    fired.append((alert_id, coefs[i], exps[i]))
                else:
                    kept.append((keys[i], alert_id, coefs[i], exps[i]))
        for i in range(band_end, n):
            alert_id = ids[i]
            if alert_id in dead:
                dead.discard(alert_id)
            else:
                fired.append((alert_id, coefs[i], exps[i]))
        del keys[lo:], ids[lo:], coefs[lo:], exps[lo:]
        # Band entries that did not fire have keys within eps of each other at
        # the very end of the array, and are re-appended in their sorted order.
        for key, alert_id, coef, exp in kept:
            keys.append(key)
            ids.append(alert_id)
            coefs.append(coef)
            exps.append(exp)
        return fired
