"""The shared public stream: instrument, liquidation, funding (and trades) per symbol.

`MarketStream` is the ONE public stream per network (house rule 6), shared by every user;
symbols are watched on demand, as users need them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bot.exchange.stream.base import BaseStream, safe
from bot.exchange.stream.tables import Row
from bot.exchange.types import Instrument, Liquidation


class MarketStream(BaseStream):
    """The shared public connection: instrument, liquidation, funding (and trades)."""

    kind = "market"

    def __init__(self, ws_url: str, *, session: aiohttp.ClientSession, with_trades: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(ws_url, session=session, name=kwargs.pop("name", "market"), **kwargs)
        self.with_trades = with_trades
        self._on_tick: list[Callable[[Instrument], Awaitable[None]]] = []
        self._on_liquidation: list[Callable[[Liquidation], Awaitable[None]]] = []
        self._on_trade: list[Callable[[Row], Awaitable[None]]] = []
        self._on_funding: list[Callable[[Row], Awaitable[None]]] = []
        self.symbols: set[str] = set()

    def on_tick(self, cb: Callable[[Instrument], Awaitable[None]]) -> None:
        self._on_tick.append(cb)

    def on_liquidation(self, cb: Callable[[Liquidation], Awaitable[None]]) -> None:
        self._on_liquidation.append(cb)

    def on_trade(self, cb: Callable[[Row], Awaitable[None]]) -> None:
        self._on_trade.append(cb)

    def on_funding(self, cb: Callable[[Row], Awaitable[None]]) -> None:
        self._on_funding.append(cb)

    def topics_for(self, symbol: str) -> list[str]:
        topics = [f"instrument:{symbol}", f"liquidation:{symbol}", f"funding:{symbol}"]
        if self.with_trades:
            topics.append(f"trade:{symbol}")
        return topics

    async def watch(self, *symbols: str) -> None:
        """Subscribe to the symbols not yet watched (on demand, as users need them)."""
        new = [s for s in symbols if s not in self.symbols]
        self.symbols.update(new)
        await self.add_topics([t for s in new for t in self.topics_for(s)])
        await self.start()

    async def unwatch(self, *symbols: str) -> None:
        gone = [s for s in symbols if s in self.symbols]
        self.symbols.difference_update(gone)
        await self.remove_topics([t for s in gone for t in self.topics_for(s)])

    def instrument(self, symbol: str) -> Instrument | None:
        row = self.table("instrument").get(symbol)
        return Instrument.from_row(row) if row else None

    async def _dispatch(self, name: str, action: str, rows: list[Row]) -> None:
        if name == "instrument" and action != "delete":
            for row in rows:
                inst = Instrument.from_row(row)
                for tick_cb in self._on_tick:
                    await safe(tick_cb, inst)
        elif name == "liquidation":
            for row in rows:
                liq = Liquidation.from_row(row, action)
                for liq_cb in self._on_liquidation:
                    await safe(liq_cb, liq)
        elif name == "trade" and action != "partial":
            for row in rows:
                for trade_cb in self._on_trade:
                    await safe(trade_cb, row)
        elif name == "funding" and action in ("insert", "partial"):
            for row in rows:
                for funding_cb in self._on_funding:
                    await safe(funding_cb, row)


_SHARED: dict[str, MarketStream] = {}


def shared_market_stream(
    ws_url: str, session: aiohttp.ClientSession, **kwargs: Any
) -> MarketStream:
    """The one public stream per network URL in this process (house rule 6)."""
    stream = _SHARED.get(ws_url)
    if stream is None or stream._session.closed:
        stream = _SHARED[ws_url] = MarketStream(ws_url, session=session, **kwargs)
    return stream

