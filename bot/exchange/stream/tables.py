"""Realtime tables as BitMEX sends them: rows keyed by the partial's `keys`, merged in
place by insert/update/delete, and the first partial after a (re)connect is the truth."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from typing import Any

Row = dict[str, Any]

# BitMEX's keys per table, used until a partial tells otherwise.
DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "instrument": ("symbol",),
    "quote": ("symbol",),
    "order": ("orderID",),
    "liquidation": ("orderID",),
    "execution": ("execID",),
    "position": ("account", "symbol", "currency"),
    "margin": ("account", "currency"),
    "wallet": ("account", "currency"),
    "funding": ("symbol",),
}
# Tables without keys are event logs: keep only the most recent rows.
LOG_LIMIT = 200
# BitMEX never deletes an execution nor a filled or cancelled order from its tables, so
# kept as sent they grow with every fill for as long as the bot runs (the soak found it:
# RSS up ~1 MB a minute, and capped at 20 rows per table per account still ~18 MB at
# 1,000 users once full). Nothing reads them after the message that brought them: its
# listeners get the merged rows from `apply`, and the fill notice reads what it needs off
# the `Execution`. So an execution is never kept, and an order leaves the table on the
# message that finishes it, as BitMEX's own connector does (sample-market-maker,
# ws_thread.py: "Remove cancelled / filled orders"). What a table holds is the account's
# open orders, positions and margins: bounded by what the user has open, not by time.
EVENTS = frozenset({"execution"})
FINISHED = frozenset({"Filled", "Canceled", "Rejected"})


# Tables only a logged-in stream may subscribe to.
PRIVATE = frozenset({"order", "execution", "position", "margin", "wallet", "transact",
                     "privateNotifications", "affiliate"})


class Table:
    """One realtime table: rows keyed by `keys`, updates merged in place."""

    def __init__(self, name: str, keys: Sequence[str] = ()) -> None:
        self.name = name
        self.keys: tuple[str, ...] = tuple(keys) or DEFAULT_KEYS.get(name, ())
        self.rows: OrderedDict[tuple[Any, ...], Row] = OrderedDict()
        self.log: deque[Row] = deque(maxlen=LOG_LIMIT)
        self.has_partial = False

    def key_of(self, row: Row) -> tuple[Any, ...]:
        return tuple(row.get(k) for k in self.keys)

    def clear(self) -> None:
        self.rows.clear()
        self.log.clear()
        self.has_partial = False

    def apply(
        self, action: str, data: Iterable[Row], keys: Sequence[str] | None = None
    ) -> list[Row]:
        """Apply one message; returns the resulting rows (merged; as sent for deletes)."""
        if action == "partial":
            if keys:
                self.keys = tuple(keys)
            self.has_partial = True
        out: list[Row] = []
        # The order keys this message touched, to drop the ones it finished (only orders:
        # the instrument table's many updates a second need no such bookkeeping).
        touched: set[tuple[Any, ...]] | None = set() if self.name == "order" else None
        for row in data:
            if self.name in EVENTS:
                out.append(row)  # told once, through `out`, and never read again
                continue
            if not self.keys:
                self.log.append(row)
                out.append(row)
                continue
            k = self.key_of(row)
            if touched is not None:
                touched.add(k)
            if action == "delete":
                gone = self.rows.pop(k, None)
                out.append({**gone, **row} if gone else row)
            elif action == "update":
                current = self.rows.get(k)
                if current is None:
                    # An update for a row we never saw (e.g. before our partial): keep it,
                    # the next partial corrects it if it was incomplete.
                    current = {}
                    self.rows[k] = current
                current.update(row)
                out.append(dict(current))
            else:  # partial or insert
                self.rows[k] = dict(row)
                out.append(dict(row))
        if touched is not None:
            for k in touched:
                held = self.rows.get(k)
                if held is not None and held.get("ordStatus") in FINISHED:
                    del self.rows[k]
        return out

    def get(self, *key: Any) -> Row | None:
        return self.rows.get(tuple(key))

    def values(self) -> list[Row]:
        return [dict(r) for r in self.rows.values()] if self.keys else list(self.log)

