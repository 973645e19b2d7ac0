"""BitMEX realtime WebSocket: keyed tables, heartbeat, reconnect, fill dedupe.

`MarketStream` is the ONE public connection per network (house rule 6);
`PrivateStream` is one per connected user. Both keep each table as rows keyed
by the partial's `keys`, treat the first partial after a (re)connect as the
truth, and call the consumers' async callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import aiohttp

from bot.errors import AuthError
from bot.exchange import auth
from bot.exchange.types import Execution, Instrument, Liquidation, Margin, Order, Position

log = logging.getLogger(__name__)

Row = dict[str, Any]
Callback = Callable[[Any], Awaitable[None]]

# BitMEX's keys per table, used until a partial tells otherwise.
DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "instrument": ("symbol",),
    "quote": ("symbol",),
    "order": ("orderID",),
    "liquidation": ("orderID",),
    "execution": ("execID",),
    "position": ("account", "symbol"),
    "margin": ("account", "currency"),
    "wallet": ("account", "currency"),
    "funding": ("symbol",),
}
# Tables without keys are event logs: keep only the most recent rows.
LOG_LIMIT = 200


def ws_url_for(base_url: str) -> str:
    """REST origin -> realtime URL (https://www.bitmex.com -> wss://ws.bitmex.com/realtime)."""
    origin = base_url.rstrip("/")
    if origin.endswith(auth.API_PREFIX):
        origin = origin[: -len(auth.API_PREFIX)]
    if origin.startswith("https://www."):
        return "wss://ws." + origin[len("https://www.") :] + "/realtime"
    if origin.startswith("https://"):
        return "wss://ws." + origin[len("https://") :] + "/realtime"
    if origin.startswith("http://"):
        return "ws://" + origin[len("http://") :] + "/realtime"
    return origin + "/realtime"


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
        for row in data:
            if not self.keys:
                self.log.append(row)
                out.append(row)
                continue
            k = self.key_of(row)
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
        return out

    def get(self, *key: Any) -> Row | None:
        return self.rows.get(tuple(key))

    def values(self) -> list[Row]:
        return [dict(r) for r in self.rows.values()] if self.keys else list(self.log)


class ConnectionBudget:
    """At most `per_hour` connects in any rolling hour (BitMEX bans IPs above 60)."""

    def __init__(self, per_hour: int = 60) -> None:
        self.per_hour = per_hour
        self.times: deque[float] = deque()

    def wait_time(self, now: float) -> float:
        while self.times and now - self.times[0] >= 3600:
            self.times.popleft()
        if len(self.times) < self.per_hour:
            return 0.0
        return self.times[0] + 3600 - now

    def record(self, now: float) -> None:
        self.times.append(now)


class _Socket:
    """Connection, heartbeat, reconnect with backoff; subclasses say what to subscribe."""

    def __init__(
        self,
        ws_url: str,
        *,
        session: aiohttp.ClientSession,
        ping_after: float = 5.0,
        pong_timeout: float = 5.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        connections_per_hour: int = 60,
        connect_timeout: float = 10.0,
        name: str = "ws",
    ) -> None:
        self.ws_url = ws_url
        self._session = session
        self.ping_after = ping_after
        self.pong_timeout = pong_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.budget = ConnectionBudget(connections_per_hour)
        self.connect_timeout = connect_timeout
        self.name = name
        self.tables: dict[str, Table] = {}
        self.connects = 0  # successful connections, for tests and health checks
        self.connected = asyncio.Event()
        self.fatal: Exception | None = None
        self._topics: list[str] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failures = 0
        self._ready = asyncio.Event()
        self._on_table: list[Callable[[str, str, list[Row]], Awaitable[None]]] = []

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name=f"bitmex-{self.name}")

    async def wait_ready(self, within: float = 10.0) -> None:
        """Wait for the first partial of every subscribed table (or a fatal error)."""
        await asyncio.wait_for(self._ready.wait(), within)
        if self.fatal is not None:
            raise self.fatal

    async def close(self) -> None:
        self._closing = True
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.connected.clear()

    def on_table(self, cb: Callable[[str, str, list[Row]], Awaitable[None]]) -> None:
        """Raw (table, action, rows) callback, for tables without a typed one."""
        self._on_table.append(cb)

    def table(self, name: str) -> Table:
        t = self.tables.get(name)
        if t is None:
            t = self.tables[name] = Table(name)
        return t

    # --- subscription -----------------------------------------------------------------

    async def _send(self, payload: Any) -> None:
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.send_str(payload if isinstance(payload, str) else json.dumps(payload))

    async def add_topics(self, topics: Sequence[str]) -> None:
        new = [t for t in topics if t not in self._topics]
        if not new:
            return
        self._topics.extend(new)
        self._ready.clear()
        await self._send({"op": "subscribe", "args": new})

    async def remove_topics(self, topics: Sequence[str]) -> None:
        gone = [t for t in topics if t in self._topics]
        if not gone:
            return
        self._topics = [t for t in self._topics if t not in gone]
        await self._send({"op": "unsubscribe", "args": gone})

    def _expected_tables(self) -> set[str]:
        return {t.split(":", 1)[0] for t in self._topics}

    def _check_ready(self) -> None:
        if all(self.table(t).has_partial for t in self._expected_tables()):
            self._ready.set()

    async def _after_connect(self) -> None:
        """Login (private) and subscribe; overridden by subclasses that log in."""
        if self._topics:
            await self._send({"op": "subscribe", "args": list(self._topics)})

    # --- the loop --------------------------------------------------------------------

    def _backoff(self) -> float:
        base = min(self.backoff_max, self.backoff_base * (2 ** min(self._failures, 16)))
        # Jitter spreads the reconnects of many users after an exchange-wide outage.
        return base * random.uniform(0.5, 1.0)

    async def _run(self) -> None:
        while not self._closing:
            wait = self.budget.wait_time(time.monotonic())
            if wait > 0:
                log.warning("%s: connection budget used up, waiting %.0fs", self.name, wait)
                await asyncio.sleep(wait)
            self.budget.record(time.monotonic())
            got_data = False
            try:
                # The session's own timeout is long; a stuck handshake must not stall us.
                self._ws = await asyncio.wait_for(
                    self._session.ws_connect(
                        self.ws_url,
                        timeout=aiohttp.ClientWSTimeout(ws_close=self.connect_timeout),
                        autoping=True,
                        heartbeat=None,
                    ),
                    self.connect_timeout,
                )
                self.connects += 1
                for t in self.tables.values():
                    # Whatever we held may be stale now: the next partial is the truth.
                    t.clear()
                self.connected.set()
                await self._after_connect()
                got_data = await self._read(self._ws)
            except asyncio.CancelledError:
                raise
            except AuthError as e:
                log.error("%s: login refused: %s", self.name, e.message)
                self.fatal = e
                self._ready.set()
                return
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                log.info("%s: connection problem: %s", self.name, type(e).__name__)
            except Exception:
                log.exception("%s: unexpected error in the socket loop", self.name)
            finally:
                self.connected.clear()
                ws, self._ws = self._ws, None
                if ws is not None and not ws.closed:
                    with contextlib.suppress(Exception):
                        await ws.close()
            if self._closing:
                return
            self._failures = 0 if got_data else self._failures + 1
            # A healthy connection that dropped comes back fast; repeated failures back off.
            quick = self.backoff_base * random.uniform(0.5, 1.0)
            delay = self._backoff() if self._failures else quick
            log.info("%s: reconnecting in %.2fs", self.name, delay)
            await asyncio.sleep(delay)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Read until the socket dies; returns whether any table data arrived."""
        got_data = False
        awaiting_pong = False
        while True:
            try:
                wait = self.pong_timeout if awaiting_pong else self.ping_after
                msg = await ws.receive(timeout=wait)
            except TimeoutError:
                if awaiting_pong:
                    log.info("%s: no pong, reconnecting", self.name)
                    return got_data
                await ws.send_str("ping")
                awaiting_pong = True
                continue
            awaiting_pong = False
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                    return got_data
                continue
            if msg.data == "pong":
                continue
            try:
                payload = json.loads(msg.data, parse_float=Decimal)
            except ValueError:
                log.debug("%s: non-JSON message ignored", self.name)
                continue
            if isinstance(payload, dict) and "table" in payload:
                got_data = True
                await self._handle_table(payload)
            elif isinstance(payload, dict):
                await self._handle_control(payload)

    async def _handle_control(self, payload: dict[str, Any]) -> None:
        if payload.get("success") is False or ("error" in payload and "success" not in payload):
            error = str(payload.get("error") or "unknown error")
            request = payload.get("request") or {}
            op = request.get("op") if isinstance(request, dict) else None
            log.warning("%s: %s refused: %s", self.name, op or "request", error)
            if op in ("authKeyExpires", "authKey") or "signature" in error.lower() or (
                "api key" in error.lower()
            ):
                raise AuthError(error, status=401)
            if op == "subscribe" and "already subscribed" not in error.lower():
                # Don't wait forever for a partial that will never come.
                args = request.get("args") or []
                for topic in args if isinstance(args, list) else [args]:
                    if topic in self._topics:
                        self._topics.remove(topic)
                self._check_ready()

    async def _handle_table(self, payload: dict[str, Any]) -> None:
        name = str(payload["table"])
        action = str(payload.get("action") or "insert")
        data = payload.get("data") or []
        table = self.table(name)
        if action != "partial" and not table.has_partial and table.keys:
            # Before the partial, deltas have nothing to apply to (BitMEX says: drop them).
            return
        rows = table.apply(action, data, payload.get("keys"))
        if action == "partial":
            self._check_ready()
        await self._dispatch(name, action, rows)
        for cb in self._on_table:
            await _safe(cb, name, action, rows)

    async def _dispatch(self, name: str, action: str, rows: list[Row]) -> None:
        """Typed callbacks; overridden by subclasses."""


async def _safe(cb: Callable[..., Awaitable[None]], *args: Any) -> None:
    """A consumer's bug must not kill the stream that every user shares."""
    try:
        await cb(*args)
    except Exception:
        log.exception("stream callback %r failed", getattr(cb, "__qualname__", cb))


class MarketStream(_Socket):
    """The shared public connection: instrument, liquidation, funding (and trades)."""

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
                    await _safe(tick_cb, inst)
        elif name == "liquidation":
            for row in rows:
                liq = Liquidation.from_row(row, action)
                for liq_cb in self._on_liquidation:
                    await _safe(liq_cb, liq)
        elif name == "trade" and action != "partial":
            for row in rows:
                for trade_cb in self._on_trade:
                    await _safe(trade_cb, row)
        elif name == "funding" and action in ("insert", "partial"):
            for row in rows:
                for funding_cb in self._on_funding:
                    await _safe(funding_cb, row)


_SHARED: dict[str, MarketStream] = {}


def shared_market_stream(
    ws_url: str, session: aiohttp.ClientSession, **kwargs: Any
) -> MarketStream:
    """The one public stream per network URL in this process (house rule 6)."""
    stream = _SHARED.get(ws_url)
    if stream is None or stream._session.closed:
        stream = _SHARED[ws_url] = MarketStream(ws_url, session=session, **kwargs)
    return stream


class FillHistory(Protocol):
    """What PrivateStream needs to backfill fills missed while disconnected."""

    async def executions(
        self, symbol: str | None = None, *, start_time: datetime | None = None,
        end_time: datetime | None = None, count: int = 100,
    ) -> list[Execution]: ...


class PrivateStream(_Socket):
    """One user's private tables: order, execution, position, margin.

    Fills are reported exactly once across reconnects: every execID seen is
    remembered, and after a reconnect the execution partial plus recent trade
    history (when a REST client is given) are replayed through that filter.
    """

    TOPICS = ("order", "execution", "position", "margin")

    def __init__(self, ws_url: str, key: str, secret: str, *, session: aiohttp.ClientSession,
                 history: FillHistory | None = None, seen_limit: int = 20000,
                 **kwargs: Any) -> None:
        super().__init__(ws_url, session=session, name=kwargs.pop("name", "private"), **kwargs)
        self.key = key
        self._secret = secret
        self.history = history
        self._topics = list(self.TOPICS)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_limit = seen_limit
        self._baseline_done = False
        self._rest_baseline = False
        self._on_fill: list[Callable[[Execution], Awaitable[None]]] = []
        self._on_order: list[Callable[[Order], Awaitable[None]]] = []
        self._on_position: list[Callable[[Position], Awaitable[None]]] = []
        self._on_margin: list[Callable[[Margin], Awaitable[None]]] = []

    def __repr__(self) -> str:
        return f"PrivateStream({self.ws_url!r}, key=set)"

    def on_fill(self, cb: Callable[[Execution], Awaitable[None]]) -> None:
        self._on_fill.append(cb)

    def on_order(self, cb: Callable[[Order], Awaitable[None]]) -> None:
        self._on_order.append(cb)

    def on_position(self, cb: Callable[[Position], Awaitable[None]]) -> None:
        self._on_position.append(cb)

    def on_margin(self, cb: Callable[[Margin], Awaitable[None]]) -> None:
        self._on_margin.append(cb)

    def orders(self) -> list[Order]:
        return [Order.from_row(r) for r in self.table("order").values()]

    def positions(self) -> list[Position]:
        return [Position.from_row(r) for r in self.table("position").values()]

    async def start(self) -> None:
        if not self._baseline_done and self.history is not None:
            # Fills that exist before we start are history, not news.
            try:
                for ex in await self.history.executions(count=1000):
                    self._remember(ex.exec_id)
                self._rest_baseline = True
            except Exception:
                log.warning("%s: could not read fill history for the baseline", self.name)
        await super().start()

    async def _after_connect(self) -> None:
        expires = auth.expires_at()
        await self._send({"op": "authKeyExpires",
                          "args": auth.ws_login_args(self.key, self._secret, expires)})
        await super()._after_connect()

    async def cancel_all_after(self, timeout_ms: int) -> None:
        """Dead-man's switch over the socket (no REST budget spent); 0 disarms it."""
        await self._send({"op": "cancelAllAfter", "args": int(timeout_ms)})

    def _remember(self, exec_id: str) -> bool:
        """True when this execID is new."""
        if not exec_id or exec_id in self._seen:
            return False
        self._seen[exec_id] = None
        if len(self._seen) > self._seen_limit:
            self._seen.popitem(last=False)
        return True

    async def _emit_fills(self, executions: Iterable[Execution]) -> None:
        fresh = [e for e in executions if self._remember(e.exec_id)]
        fresh.sort(key=lambda e: (e.timestamp is None, e.timestamp))
        for ex in fresh:
            if ex.is_fill:
                for cb in self._on_fill:
                    await _safe(cb, ex)

    async def _dispatch(self, name: str, action: str, rows: list[Row]) -> None:
        if name == "execution":
            if action == "partial":
                execs = [Execution.from_row(r) for r in rows]
                if not self._baseline_done and not self._rest_baseline:
                    # No REST baseline to tell old from new: the first partial is it.
                    for ex in execs:
                        self._remember(ex.exec_id)
                    execs = []
                if self._baseline_done and self.history is not None:
                    try:
                        execs += await self.history.executions(count=1000)
                    except Exception:
                        log.warning("%s: fill backfill failed; relying on the partial", self.name)
                self._baseline_done = True
                await self._emit_fills(execs)
            elif action == "insert":
                await self._emit_fills(Execution.from_row(r) for r in rows)
        elif name == "order":
            for row in rows:
                order = Order.from_row(row)
                for order_cb in self._on_order:
                    await _safe(order_cb, order)
        elif name == "position":
            for row in rows:
                pos = Position.from_row(row)
                for pos_cb in self._on_position:
                    await _safe(pos_cb, pos)
        elif name == "margin":
            for row in rows:
                margin = Margin.from_row(row)
                for margin_cb in self._on_margin:
                    await _safe(margin_cb, margin)
