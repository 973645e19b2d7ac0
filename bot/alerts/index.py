"""The in-memory alert index, evaluated on every instrument tick.

The index knows alert ids and thresholds only; the alert service maps ids to
database rows, marks them fired and queues the messages. Nothing here does I/O
or reads the clock: the caller passes the tick's time, so tests drive time.

Semantics (the service relies on these):

- **Price** ``above P`` fires on the first tick with ``price >= P``, ``below P``
  on the first with ``price <= P``, compared exactly as Decimals. One-shot: a
  fired alert leaves the index before ``on_tick`` returns. An alert created
  while the price is already past it fires on the next tick; the service is
  expected to refuse such an alert at creation ("price is already above") if
  it does not want that.
- **Funding** ``above / below X``: the same, against ``on_funding`` values, one-shot.
  The index compares numbers as given: the service must use one unit for both
  (BitMEX's fraction, 0.0001 = 0.01 %, is the natural one).
- **Move** ``N % within W`` (W one of 15m, 1h, 4h, 24h): fires on a tick when
  the price moved at least N % within the trailing window, up from the window
  low, ``(price - low) / low``, or down from the window high,
  ``(high - price) / high``. The window holds the ticks of the last W seconds
  inclusive, timed to the whole second (``floor``), so a move spread over exactly
  W seconds counts and one over W + 1 seconds does not. Every tick of a symbol
  updates its history, whether or not it has move alerts, so an alert added after
  a move that is still inside the window fires on the next tick.
  A move alert is *recurring*: after firing it sleeps until the window has rolled
  completely past the firing second (W + 1 seconds), then re-arms, so one move
  is reported once and the next move of N % is reported again. ``one_shot=True``
  removes it on firing instead. A sleeping alert is still in the index (``in``,
  ``len``, ``remove`` see it).
- Ticks that arrive out of order are treated as arriving at the latest time
  already seen for that symbol.

Cost: a tick on which nothing fires is O(1) (one comparison per book of the
symbol plus four window updates); with k alerts firing it is O(log n + k).
Adding is O(log n) comparisons plus a memmove of the book's tail (C speed:
about a millisecond for a million alerts on one symbol); ``load`` sorts once.
Removal is O(1) amortised (tombstones, see ``book.py``).
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from operator import itemgetter, methodcaller, neg
from typing import Literal, cast

from bot.alerts.book import _INT64_MAX, Book, join_exact, split_exact
from bot.alerts.window import Window

Direction = Literal["above", "below"]
AlertKind = Literal["price", "move", "funding"]

# The only move windows the bot offers (15m, 1h, 4h, 24h), in seconds.
WINDOWS: tuple[int, ...] = (900, 3600, 14400, 86400)


@dataclass(frozen=True, slots=True)
class Fired:
    """One alert that fired on a tick.

    `value` is what triggered it: the price, the funding rate, or for a move
    the signed move in percent (positive up, negative down).
    """

    alert_id: int
    kind: AlertKind
    symbol: str
    value: Decimal
    # Where it was kept (book code, exact coef, exp), for `rearm`; not part of its value.
    stored: tuple[int, int, int] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PriceAlert:
    alert_id: int
    symbol: str
    direction: Direction
    price: Decimal


@dataclass(frozen=True, slots=True)
class MoveAlert:
    alert_id: int
    symbol: str
    pct: Decimal
    window: timedelta | int
    one_shot: bool = False


@dataclass(frozen=True, slots=True)
class FundingAlert:
    alert_id: int
    symbol: str
    direction: Direction
    rate: Decimal


AlertSpec = PriceAlert | MoveAlert | FundingAlert


class _MoveBook(Book):
    """Move alerts of one (symbol, window), plus the ones sleeping after firing."""

    __slots__ = ("cool_q", "cooling", "window")

    def __init__(self, code: int, window: Window) -> None:
        super().__init__(code)
        self.window = window
        # id -> (rearm second, coef, exp); the queue orders re-arming. Firing
        # seconds only grow and the delay is the same for the whole book, so
        # the queue is sorted by construction (no heap needed).
        self.cooling: dict[int, tuple[int, int, int]] = {}
        self.cool_q: deque[tuple[int, int]] = deque()

    def sleep(self, alert_id: int, rearm_at: int, coef: int, exp: int) -> None:
        self.cooling[alert_id] = (rearm_at, coef, exp)
        self.cool_q.append((rearm_at, alert_id))

    def rearm(self, now: int) -> None:
        queue, cooling = self.cool_q, self.cooling
        while queue and queue[0][0] <= now:
            rearm_at, alert_id = queue.popleft()
            entry = cooling.get(alert_id)
            # A removed (or removed and re-added) alert leaves a stale queue entry.
            if entry is not None and entry[0] == rearm_at:
                del cooling[alert_id]
                _, coef, exp = entry
                self.add(alert_id, float(join_exact(coef, exp)), coef, exp)


class _Symbol:
    __slots__ = ("above", "below", "fund_above", "fund_below", "last_sec", "moves", "windows")

    def __init__(self) -> None:
        self.above: Book | None = None
        self.below: Book | None = None
        self.fund_above: Book | None = None
        self.fund_below: Book | None = None
        self.moves: list[_MoveBook] = []
        self.windows = tuple(Window(w) for w in WINDOWS)
        self.last_sec: int | None = None


def _second(at: datetime | float) -> int:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("tick time must be timezone-aware")
        return math.floor(at.timestamp())
    return math.floor(at)


def _window_seconds(window: timedelta | int) -> int:
    seconds = window.total_seconds() if isinstance(window, timedelta) else window
    if seconds not in WINDOWS:
        raise ValueError(f"move window must be one of {WINDOWS} seconds, got {seconds}")
    return int(seconds)


def _check_direction(direction: str) -> None:
    if direction not in ("above", "below"):
        raise ValueError(f"direction must be 'above' or 'below', got {direction!r}")


class AlertIndex:
    """Price, move and funding alerts of every user, keyed by alert id."""

    def __init__(self) -> None:
        self._symbols: dict[str, _Symbol] = {}
        self._books: list[Book] = []
        # alert id -> code of the book holding it. One dict entry per alert is
        # the whole per-alert overhead outside the books' arrays.
        self._live: dict[int, int] = {}
        self._one_shot_moves: set[int] = set()

    # -- size -----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._live

    # -- adding -----------------------------------------------------------------

    def add_price(self, alert_id: int, symbol: str, direction: Direction, price: Decimal) -> None:
        self._add(PriceAlert(alert_id, symbol, direction, price))

    def add_move(
        self,
        alert_id: int,
        symbol: str,
        pct: Decimal,
        window: timedelta | int,
        *,
        one_shot: bool = False,
    ) -> None:
        self._add(MoveAlert(alert_id, symbol, pct, window, one_shot))

    def add_funding(self, alert_id: int, symbol: str, direction: Direction, rate: Decimal) -> None:
        self._add(FundingAlert(alert_id, symbol, direction, rate))

    def load(self, alerts: Iterable[AlertSpec]) -> int:
        """Bulk add (at start, from the database): one sort per book. Returns the count.

        All specs are validated before any is added, so a bad row leaves the
        index as it was.
        """
        pending: dict[int, list[tuple[int, float, int, int]]] = {}
        ids: dict[int, int] = {}
        one_shot: list[int] = []
        for spec in alerts:
            if spec.alert_id in self._live or spec.alert_id in ids:
                raise ValueError(f"duplicate alert id {spec.alert_id}")
            book, key, coef, exp = self._prepare(spec)
            pending.setdefault(book.code, []).append((spec.alert_id, key, coef, exp))
            ids[spec.alert_id] = book.code
            if isinstance(spec, MoveAlert) and spec.one_shot:
                one_shot.append(spec.alert_id)
        for code, entries in pending.items():
            self._books[code].extend_unsorted(entries)
        self._live.update(ids)
        self._one_shot_moves.update(one_shot)
        return len(ids)

    def _add(self, spec: AlertSpec) -> None:
        if spec.alert_id in self._live:
            raise ValueError(f"duplicate alert id {spec.alert_id}")
        book, key, coef, exp = self._prepare(spec)
        book.add(spec.alert_id, key, coef, exp)
        self._live[spec.alert_id] = book.code
        if isinstance(spec, MoveAlert) and spec.one_shot:
            self._one_shot_moves.add(spec.alert_id)

    def bulk_loader(self) -> BulkLoader:
        """A loader for many rows at once, fed in chunks (`BulkLoader`)."""
        return BulkLoader(self)

    def _prepare(self, spec: AlertSpec) -> tuple[Book, float, int, int]:
        """Validate a spec; return its book (created if needed) and its stored key."""
        if isinstance(spec, MoveAlert):
            seconds = _window_seconds(spec.window)
            if not spec.pct.is_finite() or spec.pct <= 0:
                raise ValueError(f"move percentage must be positive, got {spec.pct}")
            book = self._book_for(spec.symbol, "move", None, seconds)
            # Stored negated so that the alerts a move of m% fires (pct <= m)
            # are the keys >= -m, a tail like every other book.
            stored = spec.pct.copy_negate()
        else:
            _check_direction(spec.direction)
            kind: AlertKind = "price" if isinstance(spec, PriceAlert) else "funding"
            threshold = spec.price if isinstance(spec, PriceAlert) else spec.rate
            book = self._book_for(spec.symbol, kind, spec.direction, None)
            # "above" fires when value >= t, i.e. -t >= -value: negating turns
            # both directions into the same keys->=q question. copy_negate is
            # exact, unlike unary minus, which rounds to the context precision.
            stored = threshold.copy_negate() if spec.direction == "above" else threshold
        coef, exp = split_exact(stored)
        return book, float(stored), coef, exp

    def _book_for(self, symbol: str, kind: str, direction: str | None,
                  seconds: int | None) -> Book:
        """The book of (symbol, kind, direction or window), created if needed."""
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbols[symbol] = _Symbol()
        if kind == "move":
            assert seconds is not None
            for move_book in state.moves:
                if move_book.window.seconds == seconds:
                    return move_book
            window = state.windows[WINDOWS.index(seconds)]
            move_book = _MoveBook(len(self._books), window)
            self._books.append(move_book)
            state.moves.append(move_book)
            state.moves.sort(key=lambda b: b.window.seconds)
            return move_book
        assert direction is not None
        attr = ("" if kind == "price" else "fund_") + direction
        existing: Book | None = getattr(state, attr)
        if existing is None:
            existing = Book(len(self._books))
            self._books.append(existing)
            setattr(state, attr, existing)
        return existing

    def rearm(self, fired: Iterable[Fired]) -> int:
        """Put one-shot alerts that fired back, as they were (the caller could not record
        the firing, so the next tick tries again). Returns how many went back."""
        count = 0
        for f in fired:
            if f.stored is None or f.alert_id in self._live:
                continue  # not from this index, or still in it (a recurring move)
            code, coef, exp = f.stored
            book = self._books[code]
            book.add(f.alert_id, float(join_exact(coef, exp)), coef, exp)
            self._live[f.alert_id] = code
            if isinstance(book, _MoveBook):  # a move out of the index was a one-shot one
                self._one_shot_moves.add(f.alert_id)
            count += 1
        return count

    # -- removing ---------------------------------------------------------------

    def remove(self, alert_id: int) -> bool:
        """Forget an alert; False if it is not in the index (already fired or unknown)."""
        code = self._live.pop(alert_id, None)
        if code is None:
            return False
        book = self._books[code]
        if isinstance(book, _MoveBook) and alert_id in book.cooling:
            del book.cooling[alert_id]
        else:
            book.remove(alert_id)
        self._one_shot_moves.discard(alert_id)
        return True

    # -- evaluation -------------------------------------------------------------

    def on_tick(self, symbol: str, price: Decimal, at: datetime | float) -> list[Fired]:
        """Feed one price tick; return the price and move alerts it fired.

        Order: "above" alerts, "below" alerts, then move alerts from the
        shortest window up; within one group the order carries no meaning.
        """
        if not price.is_finite():
            raise ValueError(f"tick price must be finite, got {price}")
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbols[symbol] = _Symbol()
        now = _second(at)
        last = state.last_sec
        if last is not None and now < last:
            now = last
        else:
            state.last_sec = now
        for window in state.windows:
            window.push(now, price)

        fired: list[Fired] = []
        x = float(price)
        book = state.above
        if book is not None and book.may_fire(-x):
            self._fire_once(book, -x, -Fraction(price), "price", symbol, price, fired)
        book = state.below
        if book is not None and book.may_fire(x):
            self._fire_once(book, x, Fraction(price), "price", symbol, price, fired)
        for move_book in state.moves:
            self._fire_moves(move_book, symbol, price, x, now, fired)
        return fired

    def on_funding(self, symbol: str, rate: Decimal) -> list[Fired]:
        """Feed a funding rate (same unit as the thresholds); return the alerts fired."""
        if not rate.is_finite():
            raise ValueError(f"funding rate must be finite, got {rate}")
        state = self._symbols.get(symbol)
        if state is None:
            return []
        fired: list[Fired] = []
        x = float(rate)
        book = state.fund_above
        if book is not None and book.may_fire(-x):
            self._fire_once(book, -x, -Fraction(rate), "funding", symbol, rate, fired)
        book = state.fund_below
        if book is not None and book.may_fire(x):
            self._fire_once(book, x, Fraction(rate), "funding", symbol, rate, fired)
        return fired

    def _fire_once(
        self,
        book: Book,
        q: float,
        exact: Fraction,
        kind: AlertKind,
        symbol: str,
        value: Decimal,
        out: list[Fired],
    ) -> None:
        # q is float(exact), correctly rounded, hence eps = 0 (see Book.fire).
        live = self._live
        code = book.code
        for alert_id, coef, exp in book.fire(q, 0.0, lambda: exact):
            del live[alert_id]
            out.append(Fired(alert_id, kind, symbol, value, (code, coef, exp)))

    def _fire_moves(
        self,
        book: _MoveBook,
        symbol: str,
        price: Decimal,
        x: float,
        now: int,
        out: list[Fired],
    ) -> None:
        if book.cool_q and book.cool_q[0][0] <= now:
            book.rearm(now)
        keys = book.keys
        if not keys:
            return
        window = book.window
        low, high = window.low(), window.high()
        if low <= 0:
            return  # not a price a percentage can be taken of
        flow, fhigh = float(low), float(high)
        up = (x - flow) / flow * 100.0
        down = (fhigh - x) / fhigh * 100.0
        move = up if up >= down else down
        # The float move is off by a few ulps relative to |move|; eps is far
        # wider than that, and entries inside +-eps are settled exactly.
        eps = 1e-9 * (1.0 + move)
        if keys[-1] < -move - eps:
            return

        def exact_neg_move() -> Fraction:
            p, lo, hi = Fraction(price), Fraction(low), Fraction(high)
            return -max((p - lo) / lo * 100, (hi - p) / hi * 100)

        fired = book.fire(-move, eps, exact_neg_move)
        if not fired:
            return
        up_pct = (price - low) / low * 100
        down_pct = (high - price) / high * 100
        signed = up_pct if up_pct >= down_pct else -down_pct
        rearm_at = now + window.seconds + 1
        live, one_shot = self._live, self._one_shot_moves
        for alert_id, coef, exp in fired:
            if alert_id in one_shot:
                one_shot.discard(alert_id)
                del live[alert_id]
            else:
                book.sleep(alert_id, rearm_at, coef, exp)
            out.append(Fired(alert_id, "move", symbol, signed, (book.code, coef, exp)))


class BulkLoader:
    """Rows straight from the database into the index, a million in a second or two.

    `add` takes a row's plain values, the threshold as the text the database stores
    (bot.db.types.DecimalText writes plain notation, "60000.5"), and builds no spec object
    and no Decimal: the float key and the exact (coef, exp) are read off the text. Rows
    pile up per book and `finish` sorts each book once, so a load fed in chunks costs one
    sort, not one per chunk. No alert is in the index before `finish`; an invalid row raises
    ValueError from `add`, and then none of the rows goes in. Ids already in the index are
    skipped: an alert created while the start-up load was under way is in it already.
    """

    __slots__ = ("_books", "_codes", "_index", "_moves", "_pending", "_raw_books", "_seen",
                 "_slots", "symbols")

    def __init__(self, index: AlertIndex) -> None:
        self._index = index
        self.symbols: set[str] = set()  # of the rows added
        # (symbol, kind, direction, window) -> (book code, negate, id/key/coef/exp columns)
        self._books: dict[tuple[str, str, str | None, int | None],
                          tuple[int, bool, array[int], array[float], array[int],
                                array[int]]] = {}
        self._pending: list[tuple[int, array[int], array[float], array[int],
                                  array[int]]] = []
        self._seen: dict[int, int] = {}
        # add_columns: a book's raw kind, symbol, direction and window, tab-joined -> its place
        # in _slots (the same slots as `add`'s)
        self._raw_books: dict[bytes, int] = {}
        self._slots: list[tuple[int, bool, array[int], array[float], array[int],
                                array[int]]] = []
        # ... and per place: its book's code, and whether it is a move book
        self._codes: list[int] = []
        self._moves: list[bool] = []

    def add(self, alert_id: int, kind: str, symbol: str, direction: str | None,
            threshold: str, window_seconds: int | None) -> None:
        if alert_id in self._seen or alert_id in self._index._live:
            return
        slot = self._books.get((symbol, kind, direction, window_seconds))
        if slot is None:
            slot = self._slot(symbol, kind, direction, window_seconds)
        code, negate, ids, keys, coefs, exps = slot
        key = float(threshold)
        if not -_FLOAT_MAX <= key <= _FLOAT_MAX:  # also False for NaN
            raise ValueError(f"alert {alert_id}: threshold must be finite, got {threshold}")
        # The exact value off the text: "-0.50" is -050 x 10^-2 (trailing zeros need no
        # stripping: the value, not the digits, is compared). Anything else (an exponent,
        # spaces, more digits than int64 holds) goes the Decimal way, which also refuses.
        dot = threshold.find(".")
        try:
            if dot < 0:
                coef, exp = int(threshold), 0
            else:
                coef, exp = int(threshold.replace(".", "", 1)), dot + 1 - len(threshold)
        except ValueError:
            coef, exp = split_exact(Decimal(threshold))
        if not -_INT64_MAX <= coef <= _INT64_MAX or exp < -128:
            coef, exp = split_exact(Decimal(threshold))
        if kind == "move" and key <= 0:
            raise ValueError(f"alert {alert_id}: move percentage must be positive, "
                             f"got {threshold}")
        if negate:
            key, coef = -key, -coef
        ids.append(alert_id)
        keys.append(key)
        coefs.append(coef)
        exps.append(exp)
        self._seen[alert_id] = code

    def add_columns(self, ids: list[bytes], kinds: list[bytes], symbols: list[bytes],
                    directions: list[bytes], thresholds: list[bytes], windows: list[bytes],
                    decode: Callable[[bytes], str | None]) -> None:
        """`add` for a chunk of rows given as columns of raw text values (the database's
        COPY text: `decode` turns one into the text it stands for, None for NULL).

        The same result as `add` row by row, without a Python call per row: the rows are
        listed under their books, and each book's share of a column is gathered and
        converted whole (int, float, the (coef, exp) off the digits); `finish` sorts each
        book once, as after `add`. A chunk this cannot take
        whole (a threshold not plain digits with an optional sign and point, or too many
        of them for int64; an id already added; any invalid row) goes through `add` row
        by row instead, which skips and refuses exactly as always.
        """
        if ids and not self._columns(ids, kinds, symbols, directions, thresholds, windows,
                                     decode):
            for row in zip(ids, kinds, symbols, directions, thresholds, windows, strict=True):
                alert_id, kind, symbol, direction, threshold, window = map(decode, row)
                if alert_id is None or kind is None or symbol is None or threshold is None:
                    raise ValueError("an alert row with no id, kind, symbol or threshold")
                self.add(int(alert_id), kind, symbol, direction, threshold,
                         None if window is None else int(window))

    def _columns(self, raw_ids: list[bytes], kinds: list[bytes], symbols: list[bytes],
                 directions: list[bytes], thresholds: list[bytes], windows: list[bytes],
                 decode: Callable[[bytes], str | None]) -> bool:
        """The column-wise `add_columns`; False (and nothing added) when the chunk needs
        the row-by-row way."""
        n = len(raw_ids)
        if len(kinds) != n or len(symbols) != n or len(directions) != n \
                or len(thresholds) != n or len(windows) != n:
            raise ValueError("columns of unequal length")
        # Plain decimal text only: digits, points and minus signs (int() and float() below
        # refuse a misplaced or second one; they would also take spaces, underscores and
        # exponents, which is why those go the row-by-row way).
        if b"".join(thresholds).translate(None, b"0123456789.-"):
            return False
        try:
            ids = array("q", map(int, raw_ids))
        except (ValueError, OverflowError):
            return False
        books = self._book_places(kinds, symbols, directions, windows, decode)
        if books is None:
            return False
        # id -> book code: the chunk's share of `_seen`, and an id twice is caught here.
        fresh = dict(zip(ids, map(self._codes.__getitem__, books), strict=True))
        if len(fresh) != n or not self._index._live.keys().isdisjoint(fresh) \
                or not self._seen.keys().isdisjoint(fresh):
            return False  # an id twice, or already in: `add` skips those
        picked: list[list[int]] = [[] for _ in self._slots]
        for i, book in enumerate(books):
            picked[book].append(i)
        # Each book's rows gathered first (while the chunk is still in the cache), then
        # its thresholds converted: one gather per column less than converting first.
        converted = []
        for slot, rows, move in zip(self._slots, picked, self._moves, strict=True):
            if not rows:
                continue
            texts = list(map(thresholds.__getitem__, rows))
            negate = slot[1]
            try:
                # The float key and the exact (coef, exp) off the text, as `add` reads them,
                # negated where the book stores -t; exp = -(digits after the point).
                floats = map(float, texts)
                ints = map(int, map(methodcaller("replace", b".", b"", 1), texts))
                if negate:  # -int(-2**63) overflows the array: the row-by-row way then
                    floats, ints = map(neg, floats), map(neg, ints)
                keys = array("d", floats)
                coefs = array("q", ints)
                exps = array("b", map(neg, map(len, map(itemgetter(2), map(
                    methodcaller("partition", b"."), texts)))))
            except (ValueError, OverflowError):  # not a number, or beyond int64 / int8
                return False
            if min(coefs) < -_INT64_MAX or not -_FLOAT_MAX <= min(keys) <= max(keys) \
                    <= _FLOAT_MAX:
                return False
            if move and max(keys) >= 0:  # stored negated: a percentage must be positive
                return False  # `add` says which alert
            converted.append((slot, array("q", map(ids.__getitem__, rows)), keys, coefs,
                              exps))
        for (_, _, slot_ids, slot_keys, slot_coefs, slot_exps), book_ids, keys, coefs, exps \
                in converted:
            slot_ids.extend(book_ids)
            slot_keys.extend(keys)
            slot_coefs.extend(coefs)
            slot_exps.extend(exps)
        if self._seen:
            self._seen.update(fresh)
        else:
            self._seen = fresh
        return True

    def _book_places(self, kinds: list[bytes], symbols: list[bytes], directions: list[bytes],
                     windows: list[bytes], decode: Callable[[bytes], str | None],
                     ) -> list[int] | None:
        """Each row's place in `_slots`, new books made (and refused: ValueError) as `add`
        would; None if a kind or symbol is NULL."""
        raw_books = self._raw_books
        # One bytes key per row, the four values tab-joined (a raw value never holds a
        # tab: COPY escapes it): bytes are not tracked by the garbage collector, while a
        # million tuples would set off its full collections.
        raw_keys = list(map(b"\t".join, zip(kinds, symbols, directions, windows,
                                             strict=True)))
        found = list(map(raw_books.get, raw_keys))
        if None in found:
            for raw in set(raw_keys) - raw_books.keys():
                kind, symbol, direction, window = map(decode, raw.split(b"\t"))
                if kind is None or symbol is None:
                    return None
                seconds = None if window is None else int(window)
                slot = self._books.get((symbol, kind, direction, seconds))
                if slot is None:
                    slot = self._slot(symbol, kind, direction, seconds)  # refuses bad ones
                raw_books[raw] = len(self._slots)
                self._slots.append(slot)
                self._codes.append(slot[0])
                self._moves.append(kind == "move")
            found = list(map(raw_books.__getitem__, raw_keys))
        return cast("list[int]", found)  # every key is known now

    def _slot(self, symbol: str, kind: str, direction: str | None,
              seconds: int | None) -> tuple[int, bool, array[int], array[float], array[int],
                                            array[int]]:
        if kind == "move":
            if seconds not in WINDOWS:
                raise ValueError(f"move window must be one of {WINDOWS} seconds, "
                                 f"got {seconds}")
            direction = None
        elif kind in ("price", "funding"):
            _check_direction(direction or "")
            seconds = None
        else:
            raise ValueError(f"unknown alert kind {kind!r}")
        book = self._index._book_for(symbol, kind, direction, seconds)
        self.symbols.add(symbol)
        columns = (array("q"), array("d"), array("q"), array("b"))
        slot = (book.code, kind == "move" or direction == "above", *columns)
        self._books[(symbol, kind, direction, seconds)] = slot
        self._pending.append((book.code, *columns))
        return slot

    def finish(self) -> int:
        """Put every row added into the index (one sort per book); returns how many."""
        index = self._index
        for code, ids, keys, coefs, exps in self._pending:
            index._books[code].extend_columns(ids, keys, coefs, exps)
        if index._live:
            index._live.update(self._seen)
        else:  # the common start: no copy of a million entries
            index._live = self._seen
        count = len(self._seen)
        self._pending.clear()
        self._books.clear()
        self._raw_books.clear()
        self._slots.clear()
        self._codes.clear()
        self._moves.clear()
        self._seen = {}
        return count


_FLOAT_MAX = sys.float_info.max

