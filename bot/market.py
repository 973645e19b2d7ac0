"""The shared public market data: one MarketStream per network, fanned out to listeners.

House rule 6 says one market-data socket per network, shared by every user. The
hub owns those sockets, subscribes symbols on demand (the first alert on ETHUSD
subscribes ETHUSD) and hands every instrument tick and liquidation to whoever
listens: the alert service and the liquidation feed today, liquidation-distance
alerts and paper pricing later. Listeners get `(network, item)`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp

from bot.exchange.stream import ConnectionBudget, MarketStream, StreamOptions, StreamPool
from bot.exchange.types import Exchange, Instrument, Liquidation
from bot.metrics import StreamState

log = logging.getLogger(__name__)

TickListener = Callable[[str, Instrument], Awaitable[None]]
LiquidationListener = Callable[[str, Liquidation], Awaitable[None]]
StreamFactory = Callable[[str], MarketStream]

# The topic without a symbol: every symbol's liquidations (what /liqfeed needs).
ALL_LIQUIDATIONS = "liquidation"


ClientMaker = Callable[[str, str | None, str | None], Exchange]


class PublicMarket:
    """Keyless clients for public data, one per network; paper accounts read mainnet's."""

    def __init__(self, make_client: ClientMaker) -> None:
        self._make_client = make_client
        self._clients: dict[str, Exchange] = {}

    def client(self, network: str = "mainnet") -> Exchange:
        net = "mainnet" if network == "paper" else network
        client = self._clients.get(net)
        if client is None:
            client = self._clients[net] = self._make_client(net, None, None)
        return client


class MarketHub:
    """Owns the public sockets; `watch` subscribes, listeners receive the data."""

    def __init__(
        self,
        ws_url: Callable[[str], str],
        session: aiohttp.ClientSession,
        *,
        stream_factory: StreamFactory | None = None,
        networks: tuple[str, ...] = ("mainnet", "testnet"),
        streams_per_socket: int = 400,
        pool_options: StreamOptions | None = None,
    ) -> None:
        self._ws_url = ws_url
        self._session = session
        self._factory = stream_factory
        self.networks = networks
        self.streams: dict[str, MarketStream] = {}
        self.streams_per_socket = streams_per_socket
        self.pool_options = pool_options
        # BitMEX counts connects per IP and host: one budget per host for the whole process.
        self.budgets: dict[str, ConnectionBudget] = {}
        self.pools: dict[str, StreamPool] = {}
        self._tick_listeners: list[TickListener] = []
        self._liq_listeners: list[LiquidationListener] = []
        self._lock = asyncio.Lock()
        self.ticks = 0  # instrument updates fanned out, for tests and health checks

    # --- listeners ------------------------------------------------------------------------

    def on_tick(self, cb: TickListener) -> None:
        self._tick_listeners.append(cb)

    def on_liquidation(self, cb: LiquidationListener) -> None:
        self._liq_listeners.append(cb)

    # --- sockets ---------------------------------------------------------------------------

    @staticmethod
    def network_of(network: str) -> str:
        """Paper accounts price against mainnet's market."""
        return "mainnet" if network == "paper" else network

    def pool(self, network: str) -> StreamPool:
        """The multiplexed sockets of `network`: its market stream and every account's
        private stream share them (a few sockets, however many users)."""
        network = self.network_of(network)
        if network not in self.networks:
            raise ValueError(f"unknown network {network!r}")
        pool = self.pools.get(network)
        if pool is None:
            session = self._session
            url = self._ws_url(network)
            budget = self.budgets.setdefault(urlsplit(url).netloc, ConnectionBudget())
            pool = self.pools[network] = StreamPool(
                url, session=session, capacity=self.streams_per_socket, budget=budget,
                options=self.pool_options)
        return pool

    def stream_states(self) -> list[StreamState]:
        """The shared market sockets opened so far (a network nobody watches has none)."""
        return [StreamState(s.name, s.connected.is_set()) for s in list(self.streams.values())]

    def handshakes(self) -> int:
        """WebSocket handshakes this process made (every host)."""
        return sum(b.used for b in self.budgets.values())

    def stream(self, network: str) -> MarketStream:
        """The one market stream of `network` (on its shared sockets), created on first use."""
        network = self.network_of(network)
        if network not in self.networks:
            raise ValueError(f"unknown network {network!r}")
        existing = self.streams.get(network)
        if existing is not None:
            return existing
        if self._factory is not None:
            s = self._factory(network)
        else:
            session = self._session
            s = MarketStream(self._ws_url(network), session=session, pool=self.pool(network),
                             name=f"market-{network}")

        async def tick(inst: Instrument) -> None:
            self.ticks += 1
            for cb in self._tick_listeners:
                await _safe(cb, network, inst)

        async def liquidation(liq: Liquidation) -> None:
            for cb in self._liq_listeners:
                await _safe(cb, network, liq)

        s.on_tick(tick)
        s.on_liquidation(liquidation)
        self.streams[network] = s
        return s

    async def watch(self, network: str, *symbols: str) -> None:
        """Subscribe these symbols (instrument, liquidation, funding); starts the socket."""
        if not symbols:
            return
        async with self._lock:
            await self.stream(network).watch(*symbols)

    async def watch_liquidations(self, network: str) -> None:
        """Every symbol's liquidations (one topic), for the market liquidation feed."""
        async with self._lock:
            s = self.stream(network)
            await s.add_topics([ALL_LIQUIDATIONS])
            await s.start()

    def watching(self, network: str) -> set[str]:
        s = self.streams.get(self.network_of(network))
        return set(s.symbols) if s is not None else set()

    def instrument(self, network: str, symbol: str) -> Instrument | None:
        """The latest instrument row the socket holds (None when not subscribed yet)."""
        s = self.streams.get(self.network_of(network))
        return s.instrument(symbol) if s is not None else None

    async def wait_ready(self, network: str, within: float = 10.0) -> None:
        """Wait for the first partial of every topic subscribed on `network`."""
        s = self.streams.get(self.network_of(network))
        if s is not None:
            await s.wait_ready(within)

    async def close(self) -> None:
        streams, self.streams = list(self.streams.values()), {}
        for s in streams:
            await s.close()
        pools, self.pools = list(self.pools.values()), {}
        for pool in pools:
            await pool.close()


async def _safe(cb: Callable[..., Awaitable[None]], *args: object) -> None:
    """One listener's bug must not starve the others of the shared feed."""
    try:
        await cb(*args)
    except Exception:
        log.exception("market listener %r failed", getattr(cb, "__qualname__", cb))
