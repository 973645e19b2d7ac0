"""One realtime stream: its topics and subscriptions, its tables, its control messages.

A stream runs on its own `/realtime` socket (`DirectSocket`, here) or as one of a few
hundred streams of a `/realtimemd` socket (`bot.exchange.stream.pool`), which is how the
bot runs them: BitMEX allows 60 socket openings per hour per IP, so a socket per user
does not scale. Either way the socket calls the same hooks: `_opened`, `_after_connect`,
`_on_payload`, `_lost`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from decimal import Decimal
from typing import Any, Protocol

import aiohttp

from bot.errors import AuthError
from bot.exchange.stream.connection import ConnectionBudget, Socket, jitter
from bot.exchange.stream.tables import PRIVATE, Row, Table

log = logging.getLogger(__name__)

Callback = Callable[[Any], Awaitable[None]]


async def safe(cb: Callable[..., Awaitable[None]], *args: Any) -> None:
    """A consumer's bug must not kill the stream that every user shares."""
    try:
        await cb(*args)
    except Exception:
        log.exception("stream callback %r failed", getattr(cb, "__qualname__", cb))


class Carrier(Protocol):
    """The socket a stream's messages go out on."""

    async def send_on(self, stream: BaseStream, payload: Any) -> None: ...


class StreamHost(Protocol):
    """A pool of shared sockets a stream can ride on (`StreamPool`)."""

    budget: ConnectionBudget

    async def attach(self, stream: BaseStream) -> None: ...

    async def detach(self, stream: BaseStream) -> None: ...


class BaseStream:
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
        pool: StreamHost | None = None,
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
        self._closing = False
        self._ready = asyncio.Event()
        self._on_table: list[Callable[[str, str, list[Row]], Awaitable[None]]] = []
        self._mux: Carrier | None = None  # the shared socket this stream rides on
        self._mux_id = ""  # its id there
        self._socket: DirectSocket | None = None  # its own socket, without a pool
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
            self._socket = DirectSocket(self)
            self._socket.start()

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
        if self._socket is not None:
            await self._socket.close()
            self._socket = None
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
        carrier: Carrier | None = self._mux if self._mux is not None else self._socket
        if carrier is not None:
            await carrier.send_on(self, payload)

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
        delay = jitter(min(self.resubscribe_max, self.resubscribe_base * (2 ** min(n, 16))))
        log.info("%s: retrying the subscribe to %s in %.2fs", self.name, topic, delay)

        async def again() -> None:
            # The error echoes the whole request: its other topics may have been taken.
            if topic in self._topics and topic not in self._acked and self._may_subscribe():
                await self._send({"op": "subscribe", "args": [topic]})

        self._later(delay, again)

    # --- what the socket hands over -----------------------------------------------------

    def _handshake_headers(self) -> dict[str, str]:
        """Headers of this stream's own handshake (a private stream logs in with them)."""
        return {}

    def _fail(self, e: AuthError) -> None:
        """The key was refused for good: nothing more to wait for."""
        log.error("%s: login refused: %s", self.name, e.message)
        self.fatal = e
        self._ready.set()

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
            await safe(cb, name, action, rows)

    async def _dispatch(self, name: str, action: str, rows: list[Row]) -> None:
        """Typed callbacks; overridden by subclasses."""



class DirectSocket(Socket):
    """A stream on its own `/realtime` socket: every text frame is that stream's message."""

    def __init__(self, stream: BaseStream) -> None:
        super().__init__(label=stream.name, url=stream.ws_url, session=stream._session,
                         budget=stream.budget, timings=stream, task_name=f"bitmex-{stream.name}")
        self.stream = stream

    def _headers(self) -> dict[str, str]:
        return self.stream._handshake_headers()

    def _connected(self) -> None:
        self.stream._opened()

    async def _open(self) -> None:
        await self.stream._after_connect()

    def _lost(self) -> None:
        self.stream._lost()

    async def send_on(self, stream: BaseStream, payload: Any) -> None:
        await self._send_text(payload if isinstance(payload, str) else json.dumps(payload))

    async def _on_text(self, text: str) -> bool:
        try:
            payload = json.loads(text, parse_float=Decimal)
        except ValueError:
            log.debug("%s: non-JSON message ignored", self.label)
            return False
        if isinstance(payload, dict) and "limit" in payload and "info" in payload:
            self._note_welcome(payload)
        stream = self.stream
        try:
            return await stream._on_payload(payload)
        except AuthError as e:
            stream._fail(e)
            stream._refused()
            self._closing = True  # the key was refused: no reconnect will change that
            return False
