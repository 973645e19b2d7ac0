"""BitMEX realtime WebSocket: keyed tables, heartbeat, reconnect, fill dedupe.

`MarketStream` is the ONE public stream per network (house rule 6);
`PrivateStream` is one per connected user. Both keep each table as rows keyed
by the partial's `keys`, treat the first partial after a (re)connect as the
truth, and call the consumers' async callbacks.

A stream runs on its own `/realtime` socket, or (as the bot runs them) as one of
a few hundred streams of a `/realtimemd` socket in a `StreamPool`: BitMEX allows
60 socket openings per hour per IP, so a socket per user does not scale, and one
`ConnectionBudget` per host decides when the next handshake may happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
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
    "position": ("account", "symbol", "currency"),
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
    """At most `per_hour` WebSocket connects in any rolling hour (BitMEX refuses, then bans,
    above 60 per IP): our own count, lowered by what the server's welcome says is left
    (`limit.remaining` also counts other processes on the IP, e.g. the one before a
    restart) and stopped by a 429's Retry-After. One per process and host: every socket
    to that host spends from it.
    """

    def __init__(self, per_hour: int = 60) -> None:
        self.per_hour = per_hour
        self.times: deque[float] = deque()
        self.blocked_until = 0.0
        self._server_left: int | None = None  # what the last welcome said, minus ours since
        self._server_at = 0.0
        self.used = 0  # handshakes attempted by this process, for tests and benchmarks
        self._lock: asyncio.Lock | None = None

    @property
    def lock(self) -> asyncio.Lock:
        """Held from the budget check to the welcome: one handshake at a time per host."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def wait_time(self, now: float) -> float:
        while self.times and now - self.times[0] >= 3600:
            self.times.popleft()
        wait = max(0.0, self.blocked_until - now)
        if len(self.times) >= self.per_hour:
            wait = max(wait, self.times[0] + 3600 - now)
        if self._server_left is not None and self._server_left <= 0:
            if now - self._server_at >= 3600:
                self._server_left = None
            else:
                # The server's window is older than ours: its oldest connect is unknown, so
                # wait for the hour since it said "none left" (a 429 would say sooner).
                wait = max(wait, self._server_at + 3600 - now)
        return wait

    def record(self, now: float) -> None:
        self.times.append(now)
        self.used += 1
        if self._server_left is not None:
            self._server_left -= 1

    def note_remaining(self, remaining: int, now: float) -> None:
        """The welcome's `limit.remaining` (after the connect it welcomes)."""
        self._server_left, self._server_at = remaining, now

    def refused(self, retry_after: float, now: float) -> None:
        """A 429 on the upgrade: nothing until Retry-After has passed."""
        self.blocked_until = max(self.blocked_until, now + max(1.0, retry_after))


class StreamOptions:
    """Timings of one realtime stream; tests scale them down (no real-time waits)."""

    def __init__(self, *, ping_after: float = 5.0, pong_timeout: float = 5.0,
                 backoff_base: float = 1.0, backoff_max: float = 60.0,
                 connect_timeout: float = 10.0, auth_timeout: float = 10.0,
                 resubscribe_base: float = 1.0, resubscribe_max: float = 60.0,
                 dark_after: float = 180.0) -> None:
        self.ping_after = ping_after
        self.pong_timeout = pong_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.auth_timeout = auth_timeout
        self.resubscribe_base = resubscribe_base
        self.resubscribe_max = resubscribe_max
        self.dark_after = dark_after


def _jitter(delay: float) -> float:
    # Jitter spreads the reconnects of many sockets after an exchange-wide outage.
    return delay * random.uniform(0.5, 1.0)


def _retry_after(e: aiohttp.WSServerHandshakeError) -> float:
    try:
        return float(e.headers.get("Retry-After", "60") if e.headers else "60")
    except ValueError:
        return 60.0


class _Stream:
    """One realtime stream: its tables, topics, login and subscriptions.

    It runs either on its own `/realtime` socket (`start()` without a pool) or as one
    stream of a shared `/realtimemd` socket (`pool=`), which is how the bot runs
    every account: one socket per few hundred streams, not one per user.
    """

    kind = "stream"

    def __init__(
        self,
        ws_url: str,
        *,
        session: aiohttp.ClientSession,
        pool: StreamPool | None = None,
        ping_after: float = 5.0,
        pong_timeout: float = 5.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        connections_per_hour: int = 60,
        connect_timeout: float = 10.0,
        auth_timeout: float = 10.0,
        resubscribe_base: float | None = None,
        resubscribe_max: float | None = None,
        dark_after: float = 180.0,
        budget: ConnectionBudget | None = None,
        name: str = "ws",
    ) -> None:
        self.ws_url = ws_url
        self._session = session
        self.pool = pool
        self.ping_after = ping_after
        self.pong_timeout = pong_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.budget = budget or (pool.budget if pool is not None
                                 else ConnectionBudget(connections_per_hour))
        self.connect_timeout = connect_timeout
        self.auth_timeout = auth_timeout
        self.resubscribe_base = backoff_base if resubscribe_base is None else resubscribe_base
        self.resubscribe_max = backoff_max if resubscribe_max is None else resubscribe_max
        self.dark_after = dark_after
        self.name = name
        self.tables: dict[str, Table] = {}
        self.connects = 0  # successful connections (stream opens), for tests and health checks
        self.connected = asyncio.Event()
        self.fatal: Exception | None = None
        self._topics: list[str] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failures = 0
        self._ready = asyncio.Event()
        self._on_table: list[Callable[[str, str, list[Row]], Awaitable[None]]] = []
        self._mux: _MuxSocket | None = None
        self._started = False
        self._generation = 0  # bumps on every (re)open, so stale timers do nothing
        self._retries: dict[str, int] = {}  # topic -> refused subscribes in a row
        self._acked: set[str] = set()  # topics subscribed on the current connection
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._closing = False
        if self.pool is not None:
            await self.pool.attach(self)
        else:
            self._task = asyncio.create_task(self._run(), name=f"bitmex-{self.name}")

    async def wait_ready(self, within: float = 10.0) -> None:
        """Wait for the first partial of every subscribed table (or a fatal error)."""
        await asyncio.wait_for(self._ready.wait(), within)
        if self.fatal is not None:
            raise self.fatal

    async def close(self) -> None:
        self._closing = True
        self._cancel_timers()
        if self.pool is not None and self._started:
            await self.pool.detach(self)
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._tasks):
            task.cancel()
        self._started = False
        self.connected.clear()

    def on_table(self, cb: Callable[[str, str, list[Row]], Awaitable[None]]) -> None:
        """Raw (table, action, rows) callback, for tables without a typed one."""
        self._on_table.append(cb)

    def table(self, name: str) -> Table:
        t = self.tables.get(name)
        if t is None:
            t = self.tables[name] = Table(name)
        return t

    def _later(self, delay: float, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `fn` after `delay` unless the stream reopened or closed meanwhile."""
        generation = self._generation
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            if self._closing or generation != self._generation:
                return
            task: asyncio.Task[None] = loop.create_task(fn())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        handle = loop.call_later(max(0.0, delay), fire)
        self._timers.add(handle)

    def _cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    # --- subscription -----------------------------------------------------------------

    async def _send(self, payload: Any) -> None:
        if self._mux is not None:
            await self._mux.send_on(self, payload)
            return
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.send_str(payload if isinstance(payload, str) else json.dumps(payload))

    def _may_subscribe(self) -> bool:
        """Whether subscribes can go out now (private streams: only once logged in)."""
        return self.connected.is_set()

    async def add_topics(self, topics: Sequence[str]) -> None:
        new = [t for t in topics if t not in self._topics]
        if not new:
            return
        self._topics.extend(new)
        self._ready.clear()
        if self._may_subscribe():
            await self._send({"op": "subscribe", "args": new})

    async def remove_topics(self, topics: Sequence[str]) -> None:
        gone = [t for t in topics if t in self._topics]
        if not gone:
            return
        self._topics = [t for t in self._topics if t not in gone]
        self._acked.difference_update(gone)
        if self.connected.is_set():
            await self._send({"op": "unsubscribe", "args": gone})

    def _expected_tables(self) -> set[str]:
        return {t.split(":", 1)[0] for t in self._topics}

    def is_live(self) -> bool:
        """Open, logged in where needed, and every subscribed table's partial arrived."""
        return (self.connected.is_set() and self._may_subscribe()
                and all(self.table(t).has_partial for t in self._expected_tables()))

    def _check_ready(self) -> None:
        if all(self.table(t).has_partial for t in self._expected_tables()):
            self._ready.set()
        self._health_changed()

    def _health_changed(self) -> None:
        """Hook for streams that tell someone when they go dark (PrivateStream)."""

    def _refused(self) -> None:
        """The key was refused for good (`fatal` is set); hook for PrivateStream."""

    async def _subscribe_all(self) -> None:
        topics = [t for t in self._topics if t not in self._acked]
        if topics:
            await self._send({"op": "subscribe", "args": topics})

    async def _after_connect(self) -> None:
        """Login (private) and subscribe; overridden by subclasses that log in."""
        await self._subscribe_all()

    def _opened(self) -> None:
        """A fresh connection (or mux stream): whatever we held may be stale now."""
        self._generation += 1
        self._cancel_timers()
        self._retries.clear()
        self._acked.clear()
        self.connects += 1
        for t in self.tables.values():
            t.clear()  # the next partial is the truth
        self.connected.set()
        self._health_changed()

    def _lost(self) -> None:
        self._generation += 1
        self._cancel_timers()
        self.connected.clear()
        self._health_changed()

    def _resubscribe_later(self, topic: str) -> None:
        """A refused subscribe is retried with backoff, never forgotten."""
        n = self._retries.get(topic, 0)
        self._retries[topic] = n + 1
        delay = _jitter(min(self.resubscribe_max, self.resubscribe_base * (2 ** min(n, 16))))
        log.info("%s: retrying the subscribe to %s in %.2fs", self.name, topic, delay)

        async def again() -> None:
            # The error echoes the whole request: its other topics may have been taken.
            if topic in self._topics and topic not in self._acked and self._may_subscribe():
                await self._send({"op": "subscribe", "args": [topic]})

        self._later(delay, again)

    # --- the standalone loop ------------------------------------------------------------

    def _backoff(self) -> float:
        base = min(self.backoff_max, self.backoff_base * (2 ** min(self._failures, 16)))
        return _jitter(base)

    def _handshake_headers(self) -> dict[str, str]:
        return {}

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
                        headers=self._handshake_headers(),
                    ),
                    self.connect_timeout,
                )
                self._opened()
                await self._after_connect()
                got_data = await self._read(self._ws)
            except asyncio.CancelledError:
                raise
            except AuthError as e:
                log.error("%s: login refused: %s", self.name, e.message)
                self.fatal = e
                self._ready.set()
                self._refused()
                return
            except aiohttp.WSServerHandshakeError as e:
                if e.status == 429:
                    log.warning("%s: too many connects, retry after %ss", self.name,
                                _retry_after(e))
                    self.budget.refused(_retry_after(e), time.monotonic())
                else:
                    log.info("%s: handshake refused: %s", self.name, e.status)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                log.info("%s: connection problem: %s", self.name, type(e).__name__)
            except Exception:
                log.exception("%s: unexpected error in the socket loop", self.name)
            finally:
                self._lost()
                ws, self._ws = self._ws, None
                if ws is not None and not ws.closed:
                    with contextlib.suppress(Exception):
                        await ws.close()
            if self._closing:
                return
            self._failures = 0 if got_data else self._failures + 1
            # A healthy connection that dropped comes back fast; repeated failures back off.
            quick = _jitter(self.backoff_base)
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
            if isinstance(payload, dict) and "limit" in payload and "info" in payload:
                self._note_welcome(payload)
            got_data = await self._on_payload(payload) or got_data

    def _note_welcome(self, payload: dict[str, Any]) -> None:
        limit = payload.get("limit")
        remaining = limit.get("remaining") if isinstance(limit, dict) else None
        if isinstance(remaining, int | Decimal):
            self.budget.note_remaining(int(remaining), time.monotonic())

    async def _on_payload(self, payload: Any) -> bool:
        """One message of this stream; True when it carried table data."""
        if isinstance(payload, dict) and "table" in payload:
            await self._handle_table(payload)
            return True
        if isinstance(payload, dict):
            await self._handle_control(payload)
        return False

    async def _handle_control(self, payload: dict[str, Any]) -> None:
        if payload.get("success") is False or ("error" in payload and "success" not in payload):
            error = str(payload.get("error") or "unknown error")
            request = payload.get("request") or {}
            op = request.get("op") if isinstance(request, dict) else None
            status = payload.get("status")
            log.warning("%s: %s refused: %s", self.name, op or "request", error)
            low = error.lower()
            if "expired" in low and op in ("authKeyExpires", None):
                await self._login_failed(error)
                return
            if op in ("authKeyExpires", "authKey") or "signature" in low or "api key" in low:
                raise AuthError(error, status=401)
            if op == "subscribe":
                if "already subscribed" in low:
                    return
                args = request.get("args") or []
                for topic in args if isinstance(args, list) else [args]:
                    await self._subscribe_refused(str(topic), error, status)
                self._check_ready()
        elif payload.get("success") is True and isinstance(payload.get("request"), dict):
            request = payload["request"]
            if request.get("op") in ("authKeyExpires", "authKey"):
                await self._logged_in()
            elif request.get("op") == "subscribe" and payload.get("subscribe"):
                self._retries.pop(str(payload["subscribe"]), None)
                self._acked.add(str(payload["subscribe"]))

    async def _subscribe_refused(self, topic: str, error: str, status: Any) -> None:
        if topic not in self._topics:
            return
        table, _, symbol = topic.partition(":")
        named = (symbol or table) in error
        if table not in PRIVATE and named and ("unknown" in error.lower() or status == 404):
            # A symbol or table that does not exist will not start to exist: stop asking
            # (and stop waiting for its partial).
            self._topics.remove(topic)
            return
        self._resubscribe_later(topic)

    async def _login_failed(self, error: str) -> None:
        """Overridden by streams that log in."""

    async def _logged_in(self) -> None:
        """Overridden by streams that log in."""

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


PRIVATE = frozenset({"order", "execution", "position", "margin", "wallet", "transact",
                     "privateNotifications", "affiliate"})


def mux_url_for(ws_url: str) -> str:
    """wss://ws.bitmex.com/realtime -> wss://ws.bitmex.com/realtimemd"""
    base = ws_url.split("?", 1)[0].rstrip("/")
    if base.endswith("/realtimemd"):
        return base
    if base.endswith("/realtime"):
        return base + "md"
    return base + "/realtimemd"


class _MuxSocket:
    """One `/realtimemd` socket carrying up to `capacity` streams."""

    def __init__(self, pool: StreamPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.streams: dict[str, _Stream] = {}
        self.connects = 0
        self.connected = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failures = 0
        self._ids = 0
        self._welcomed = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"bitmex-mux-{self.index}")

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

    def _id_of(self, stream: _Stream) -> str:
        return getattr(stream, "_mux_id", "")

    async def add(self, stream: _Stream) -> None:
        self._ids += 1
        sid = f"{self.index}-{self._ids}"
        stream._mux_id = sid  # type: ignore[attr-defined]
        stream._mux = self
        self.streams[sid] = stream
        if self.connected.is_set():
            await self._open(stream)
        self.start()

    async def remove(self, stream: _Stream) -> None:
        sid = self._id_of(stream)
        if self.streams.pop(sid, None) is None:
            return
        if self.connected.is_set() and stream.connected.is_set():
            with contextlib.suppress(Exception):
                await self._frame([2, sid, stream.kind])
        stream._lost()
        stream._mux = None

    async def _frame(self, frame: list[Any]) -> None:
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.send_str(json.dumps(frame))

    async def send_on(self, stream: _Stream, payload: Any) -> None:
        sid = self._id_of(stream)
        if sid in self.streams and stream.connected.is_set():
            await self._frame([0, sid, stream.kind, payload])

    async def _open(self, stream: _Stream) -> None:
        if stream.fatal is not None:
            return
        await self._frame([1, self._id_of(stream), stream.kind])
        stream._opened()
        await stream._after_connect()

    async def _run(self) -> None:
        pool = self.pool
        while not self._closing:
            # One handshake at a time per host, each waiting for its welcome: the next one
            # is decided on what the server says is left, not on what we assumed.
            await pool.budget.lock.acquire()
            locked = True
            wait = pool.budget.wait_time(time.monotonic())
            if wait > 0:
                pool.budget.lock.release()
                log.warning("mux %s: connection budget used up, waiting %.0fs", self.index,
                            wait)
                await asyncio.sleep(wait)
                continue  # the budget may have changed while we waited
            pool.budget.record(time.monotonic())
            got_data = False
            reader: asyncio.Task[bool] | None = None
            try:
                self._ws = await asyncio.wait_for(
                    pool.session.ws_connect(
                        pool.url,
                        timeout=aiohttp.ClientWSTimeout(ws_close=pool.options.connect_timeout),
                        autoping=True, heartbeat=None),
                    pool.options.connect_timeout)
                self.connects += 1
                self.connected.set()
                self._welcomed.clear()
                reader = asyncio.create_task(self._read(self._ws))
                for stream in list(self.streams.values()):
                    await self._open(stream)
                if self.streams:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._welcomed.wait()),
                                               pool.options.connect_timeout)
                pool.budget.lock.release()
                locked = False
                got_data = await reader
            except asyncio.CancelledError:
                raise
            except aiohttp.WSServerHandshakeError as e:
                if e.status == 429:
                    log.warning("mux %s: too many connects, retry after %ss", self.index,
                                _retry_after(e))
                    pool.budget.refused(_retry_after(e), time.monotonic())
                else:
                    log.info("mux %s: handshake refused: %s", self.index, e.status)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                log.info("mux %s: connection problem: %s", self.index, type(e).__name__)
            except Exception:
                log.exception("mux %s: unexpected error in the socket loop", self.index)
            finally:
                if locked:
                    pool.budget.lock.release()
                if reader is not None and not reader.done():
                    reader.cancel()
                    with contextlib.suppress(BaseException):
                        await reader
                self.connected.clear()
                for stream in list(self.streams.values()):
                    stream._lost()
                ws, self._ws = self._ws, None
                if ws is not None and not ws.closed:
                    with contextlib.suppress(Exception):
                        await ws.close()
            if self._closing:
                return
            self._failures = 0 if got_data else self._failures + 1
            opts = pool.options
            base = min(opts.backoff_max, opts.backoff_base * (2 ** min(self._failures, 16)))
            delay = _jitter(base if self._failures else opts.backoff_base)
            log.info("mux %s: reconnecting in %.2fs", self.index, delay)
            await asyncio.sleep(delay)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        got_data = False
        awaiting_pong = False
        opts = self.pool.options
        noted = False
        while True:
            try:
                msg = await ws.receive(timeout=opts.pong_timeout if awaiting_pong
                                       else opts.ping_after)
            except TimeoutError:
                if awaiting_pong:
                    log.info("mux %s: no pong, reconnecting", self.index)
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
                frame = json.loads(msg.data, parse_float=Decimal)
                kind, sid = frame[0], str(frame[1])
            except (ValueError, TypeError, IndexError, KeyError):
                log.debug("mux %s: unreadable frame ignored", self.index)
                continue
            stream = self.streams.get(sid)
            if stream is None:
                continue
            if kind == 2:
                # The server closed this stream: open it again, the others are fine.
                stream._lost()
                await self._open(stream)
                continue
            if kind != 0 or len(frame) < 4:
                continue
            payload = frame[3]
            if not noted and isinstance(payload, dict) and "limit" in payload:
                noted = True  # every stream's welcome repeats the socket's figure
                stream._note_welcome(payload)
                self._welcomed.set()
            try:
                got_data = await stream._on_payload(payload) or got_data
            except AuthError as e:
                log.error("%s: login refused: %s", stream.name, e.message)
                stream.fatal = e
                stream._ready.set()
                await self.remove(stream)
                stream._refused()


class StreamPool:
    """Every stream of one BitMEX host, multiplexed over a few `/realtimemd` sockets.

    60 connects per hour per IP do not allow a socket per user: streams are packed
    `capacity` to a socket, sockets are opened as streams need them, and every
    handshake spends from one budget (`limit.remaining` and 429s included).
    """

    def __init__(self, ws_url: str, *, session: aiohttp.ClientSession, capacity: int = 400,
                 budget: ConnectionBudget | None = None,
                 options: StreamOptions | None = None) -> None:
        self.url = mux_url_for(ws_url)
        self.session = session
        self.capacity = capacity
        self.budget = budget or ConnectionBudget()
        self.options = options or StreamOptions()
        self.sockets: list[_MuxSocket] = []
        self._lock = asyncio.Lock()

    @property
    def handshakes(self) -> int:
        return self.budget.used

    def stream_count(self) -> int:
        return sum(len(s.streams) for s in self.sockets)

    async def attach(self, stream: _Stream) -> None:
        async with self._lock:
            sock = next((s for s in self.sockets if len(s.streams) < self.capacity), None)
            if sock is None:
                sock = _MuxSocket(self, len(self.sockets))
                self.sockets.append(sock)
            await sock.add(stream)

    async def detach(self, stream: _Stream) -> None:
        mux = stream._mux
        if mux is not None:
            await mux.remove(stream)

    async def close(self) -> None:
        sockets, self.sockets = self.sockets, []
        for sock in sockets:
            await sock.close()


async def _safe(cb: Callable[..., Awaitable[None]], *args: Any) -> None:
    """A consumer's bug must not kill the stream that every user shares."""
    try:
        await cb(*args)
    except Exception:
        log.exception("stream callback %r failed", getattr(cb, "__qualname__", cb))


class MarketStream(_Stream):
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


class PrivateStream(_Stream):
    """One user's private tables: order, execution, position, margin.

    Fills are reported exactly once across reconnects: every execID seen is
    remembered, and after a reconnect the execution partial plus recent trade
    history (when a REST client is given) are replayed through that filter.
    """

    TOPICS = ("order", "execution", "position", "margin")
    kind = "private"

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
        self._on_health: list[Callable[[bool], Awaitable[None]]] = []
        self._authed = False
        self._login_tries = 0
        self._dark_timer: asyncio.TimerHandle | None = None
        self.dark = False  # told "dark" and not yet told "back"
        self._started_at = 0.0

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

    def on_health(self, cb: Callable[[bool], Awaitable[None]]) -> None:
        """`cb(False)` once when the stream stayed down for `dark_after` seconds,
        `cb(True)` when it is live again."""
        self._on_health.append(cb)

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
        self._started_at = time.monotonic()
        await super().start()
        self._health_changed()

    async def close(self) -> None:
        if self._dark_timer is not None:
            self._dark_timer.cancel()
            self._dark_timer = None
        await super().close()

    # --- login: before any private subscribe ---------------------------------------------

    def _handshake_headers(self) -> dict[str, str]:
        # On its own socket the stream logs in during the handshake, as the official
        # connectors do: no window in which a subscribe could arrive unauthenticated.
        expires = auth.expires_at()
        return {"api-expires": str(expires), "api-key": self.key,
                "api-signature": auth.signature(self._secret, "GET", "/realtime", expires)}

    def _may_subscribe(self) -> bool:
        return self.connected.is_set() and self._authed

    async def _after_connect(self) -> None:
        if self._mux is None:
            self._authed = True  # the handshake carried the login
            await self._subscribe_all()
            self._health_changed()
            return
        self._authed = False
        await self._login()

    async def _login(self) -> None:
        """authKeyExpires, then subscribe only on its success; an unanswered login is
        sent again (with backoff) rather than waited for forever."""
        self._login_tries += 1
        expires = auth.expires_at()
        await self._send({"op": "authKeyExpires",
                          "args": auth.ws_login_args(self.key, self._secret, expires)})
        tries = self._login_tries
        wait = min(self.backoff_max, self.auth_timeout * (2 ** min(tries - 1, 6)))

        async def check() -> None:
            if not self._authed and self._login_tries == tries and self.connected.is_set():
                log.info("%s: no answer to the login, sending it again", self.name)
                await self._login()

        self._later(wait, check)

    async def _logged_in(self) -> None:
        if self._authed:
            return  # the answer to a login sent again: the first one already subscribed
        self._authed = True
        self._login_tries = 0
        await self._subscribe_all()
        self._health_changed()

    async def _login_failed(self, error: str) -> None:
        self._authed = False
        delay = _jitter(min(self.resubscribe_max,
                            self.resubscribe_base * (2 ** min(self._login_tries, 16))))

        async def again() -> None:
            if not self._authed and self.connected.is_set():
                await self._login()

        self._later(delay, again)

    async def _subscribe_refused(self, topic: str, error: str, status: Any) -> None:
        if status == 401 or "authenticat" in error.lower():
            # The login is gone (or never took): log in again; its success resubscribes.
            if self._authed:
                self._authed = False
                self._health_changed()
                await self._login_failed(error)
            return
        await super()._subscribe_refused(topic, error, status)

    # --- going dark ------------------------------------------------------------------------

    def _health_changed(self) -> None:
        if self._closing or not self._started:
            return
        if self.is_live():
            if self._dark_timer is not None:
                self._dark_timer.cancel()
                self._dark_timer = None
            if self.dark:
                self.dark = False
                self._tell_health(True)
        elif self._dark_timer is None and not self.dark:
            self._dark_timer = asyncio.get_running_loop().call_later(
                self.dark_after, self._went_dark)

    def _refused(self) -> None:
        if self.dark:
            # Already told "down, retrying": now the reason, since no retry will help.
            self._tell_health(False)

    def _went_dark(self) -> None:
        self._dark_timer = None
        if self._closing or self.is_live() or self.dark:
            return
        self.dark = True
        log.warning("%s: private stream down for %.0fs", self.name, self.dark_after)
        self._tell_health(False)

    def _tell_health(self, live: bool) -> None:
        async def tell() -> None:
            for cb in self._on_health:
                await _safe(cb, live)

        task = asyncio.get_running_loop().create_task(tell())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
                # After a reconnect, or a first partial that came late (refused subscribes,
                # a lost login), fills may have happened that the partial no longer holds.
                late = self._rest_baseline and (
                    time.monotonic() - self._started_at > self.auth_timeout)
                if (self._baseline_done or late) and self.history is not None:
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
