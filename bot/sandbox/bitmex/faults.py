"""Failure injection for the client's error paths: failed or dropped REST answers, a lagging
engine, load shedding, refused WebSocket subscribes and lost authentication.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class _FailRule:
    remaining: int
    status: int
    route: str
    method: str


@dataclass
class Faults:
    """Failure injection for the client's error paths."""

    latency: float = 0.0
    _rules: list[_FailRule] = field(default_factory=list)
    _drops: int = 0
    _drop_mode: str = "close"
    # Load shedding: BitMEX refuses every order carrying an orderQty while overloaded.
    load_shedding: bool = False
    _lags: list[tuple[float, str | None]] = field(default_factory=list)
    held: int = 0  # order POSTs an engine-lag fault is holding right now
    _closer: Callable[[], Awaitable[None]] | None = None
    ws: WsFaults = field(default_factory=lambda: WsFaults())

    def fail_next(
        self, n: int = 1, status: int = 503, route: str = "order", method: str = "POST"
    ) -> None:
        """The next `n` matching requests answer `status` before reaching the engine."""
        self._rules.append(_FailRule(n, status, route.strip("/"), method.upper()))

    def drop_after_accept(self, n: int = 1, mode: str = "close") -> None:
        """Accept the next `n` order POSTs into the engine, then never answer.

        mode "close" drops the connection; "hang" keeps it open without answering
        (the client's own timeout fires).
        """
        if mode not in ("close", "hang"):
            raise ValueError("mode must be 'close' or 'hang'")
        self._drops = n
        self._drop_mode = mode

    def engine_lag(self, n: int = 1, seconds: float = 12.0, cl_ord_id: str | None = None
                   ) -> None:
        """The next `n` order POSTs (with that clOrdID, if given) are accepted by the
        gateway but reach the engine (and a market order fills) only `seconds` later on
        the simulator's clock; the HTTP answer comes then. Until then a lookup by clOrdID
        finds nothing."""
        self._lags.extend([(seconds, cl_ord_id)] * n)

    async def close_sockets(self) -> None:
        """Close every WebSocket connection, as a network blip would."""
        if self._closer is not None:
            await self._closer()

    def clear(self) -> None:
        self.latency = 0.0
        self._rules.clear()
        self._drops = 0
        self.load_shedding = False
        self._lags.clear()
        self.ws.clear()

    def _take(self, method: str, route: str) -> _FailRule | None:
        for rule in self._rules:
            if rule.remaining > 0 and rule.method == method and rule.route == route:
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._rules.remove(rule)
                return rule
        return None

    def _take_lag(self, cl_ord_id: str) -> float:
        for i, (seconds, only) in enumerate(self._lags):
            if only is None or only == cl_ord_id:
                del self._lags[i]
                return seconds
        return 0.0

    def _take_drop(self) -> str | None:
        if self._drops > 0:
            self._drops -= 1
            return self._drop_mode
        return None


@dataclass
class WsFaults:
    """WebSocket failure injection: refused subscribes and lost authentication."""

    _refuse: list[tuple[int, str | None]] = field(default_factory=list)
    _drop_auth: int = 0

    def refuse_subscribe(self, n: int = 1, table: str | None = None) -> None:
        """Refuse the next `n` subscribes to a private table (`table`, or any)."""
        self._refuse.append((n, table))

    def drop_auth(self, n: int = 1) -> None:
        """The next `n` authKeyExpires requests are lost: never answered, never applied.

        A client that subscribes without waiting for the login's success stays dark.
        """
        self._drop_auth += n

    def clear(self) -> None:
        self._refuse.clear()
        self._drop_auth = 0

    def _take_refusal(self, table: str) -> bool:
        for i, (n, which) in enumerate(self._refuse):
            if which is None or which == table:
                if n <= 1:
                    del self._refuse[i]
                else:
                    self._refuse[i] = (n - 1, which)
                return True
        return False

    def _take_drop_auth(self) -> bool:
        if self._drop_auth > 0:
            self._drop_auth -= 1
            return True
        return False
