"""The engine itself: every part put together, started and saved."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from bot.matching.clock import Clock
from bot.matching.clockwork import Clockwork
from bot.matching.instruments import Instrument, default_instruments, next_funding


class Engine(Clockwork):
    """Accounts, orders, positions, margin and market data of a simulated BitMEX."""

    def __init__(
        self, clock: Clock | None = None, instruments: Iterable[Instrument] | None = None
    ) -> None:
        super().__init__(clock, instruments)
        now = self.clock.now()
        for inst in self.instruments.values():
            inst.funding_ts = next_funding(now)
            if inst.expires_in is not None and inst.expiry is None:
                inst.expiry = now + inst.expires_in
            self._set_prices(inst, inst.price)
            inst.prev_price_24h = inst.last
        self.clock.on_advance(self.tick)

    def __getstate__(self) -> dict[str, Any]:
        """Accounts, orders, positions and fills; not listeners, not the tick history.

        Paper accounts are kept across restarts this way. The price history is rebuilt
        by the feed (and would make the snapshot hundreds of MB).
        """
        state = dict(self.__dict__)
        state["_listeners"] = []
        state["history"] = {s: deque(maxlen=200000) for s in self.instruments}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # A snapshot from an earlier version lacks newer instruments and account fields.
        # Listed instruments keep their saved specs: positions' costs were built on them.
        for inst in default_instruments():
            if inst.symbol not in self.instruments:
                self.add_instrument(inst)
        for acct in self.accounts.values():
            for name in ("other_keys", "cidrs"):
                if name not in acct.__dict__:
                    setattr(acct, name, [])
        self.clock.on_advance(self.tick)
