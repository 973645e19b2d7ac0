"""One WebSocket kept open: the connect budget, the handshake, the heartbeat, reconnects.

`Socket` is the one read loop of every realtime socket. What its text frames mean is
the subclass's business (`_on_text`): a stream on its own `/realtime` socket reads them
as that stream's messages (`bot.exchange.stream.base.DirectSocket`), a `/realtimemd`
socket as `[type, id, name, payload]` frames of many streams
(`bot.exchange.stream.pool.MuxSocket`). Everything else - when the next handshake may
happen, ping/pong, when a connection counts as dead, how long to back off - is here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from decimal import Decimal
from typing import Any, Protocol

import aiohttp

from bot.exchange import auth

log = logging.getLogger(__name__)


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



def mux_url_for(ws_url: str) -> str:
    """wss://ws.bitmex.com/realtime -> wss://ws.bitmex.com/realtimemd"""
    base = ws_url.split("?", 1)[0].rstrip("/")
    if base.endswith("/realtimemd"):
        return base
    if base.endswith("/realtime"):
        return base + "md"
    return base + "/realtimemd"


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


class Timings(Protocol):
    """What a socket's loop needs to know of its timings (a StreamOptions, or a stream
    on its own socket, which carries them itself)."""

    ping_after: float
    pong_timeout: float
    backoff_base: float
    backoff_max: float
    connect_timeout: float


def jitter(delay: float) -> float:
    # Jitter spreads the reconnects of many sockets after an exchange-wide outage.
    return delay * random.uniform(0.5, 1.0)


def _retry_after(e: aiohttp.WSServerHandshakeError) -> float:
    try:
        return float(e.headers.get("Retry-After", "60") if e.headers else "60")
    except ValueError:
        return 60.0


_CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
           aiohttp.WSMsgType.ERROR)


class Socket:
    """One realtime socket, reopened until closed.

    Subclasses say what a frame means (`_on_text`), what to do once connected
    (`_connected`, then `_open`) and once lost (`_lost`); `serialize_handshakes` holds
    the host's budget lock from the budget check to the welcome, so the next handshake is
    decided on what the server says is left.
    """

    serialize_handshakes = False

    def __init__(self, *, label: str, url: str, session: aiohttp.ClientSession,
                 budget: ConnectionBudget, timings: Timings, task_name: str) -> None:
        self.label = label
        self.url = url
        self.session = session
        self.budget = budget
        self.timings = timings
        self.task_name = task_name
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failures = 0
        self._welcomed = asyncio.Event()

    # --- what the subclass decides --------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {}

    def _connected(self) -> None:
        """The handshake succeeded (before any frame is read)."""

    async def _open(self) -> None:
        """Connected: open what rides on this socket (the reader already runs)."""

    def _welcome_expected(self) -> bool:
        return False

    def _lost(self) -> None:
        """The connection is gone (or never came)."""

    async def _on_text(self, text: str) -> bool:
        """One text frame; True when it carried table data."""
        return False

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.task_name)

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

    async def _send_text(self, text: str) -> None:
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.send_str(text)

    def _note_welcome(self, payload: dict[str, Any]) -> None:
        limit = payload.get("limit")
        remaining = limit.get("remaining") if isinstance(limit, dict) else None
        if isinstance(remaining, int | Decimal):
            self.budget.note_remaining(int(remaining), time.monotonic())
        self._welcomed.set()

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        budget = self.budget
        while not self._closing:
            lock = budget.lock if self.serialize_handshakes else None
            if lock is not None:
                await lock.acquire()
            wait = budget.wait_time(time.monotonic())
            if wait > 0:
                if lock is not None:
                    lock.release()
                log.warning("%s: connection budget used up, waiting %.0fs", self.label, wait)
                await asyncio.sleep(wait)
                continue  # the budget may have changed while we waited
            budget.record(time.monotonic())
            locked = lock is not None
            got_data = False
            reader: asyncio.Task[bool] | None = None
            timings = self.timings
            try:
                # The session's own timeout is long; a stuck handshake must not stall us.
                self._ws = await asyncio.wait_for(
                    self.session.ws_connect(
                        self.url,
                        timeout=aiohttp.ClientWSTimeout(ws_close=timings.connect_timeout),
                        autoping=True,
                        heartbeat=None,
                        headers=self._headers(),
                    ),
                    timings.connect_timeout,
                )
                self._welcomed.clear()
                self._connected()
                reader = asyncio.create_task(self._read(self._ws))
                await self._open()
                if lock is not None:
                    if self._welcome_expected():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(asyncio.shield(self._welcomed.wait()),
                                                   timings.connect_timeout)
                    lock.release()
                    locked = False
                got_data = await reader
            except asyncio.CancelledError:
                raise
            except aiohttp.WSServerHandshakeError as e:
                if e.status == 429:
                    log.warning("%s: too many connects, retry after %ss", self.label,
                                _retry_after(e))
                    budget.refused(_retry_after(e), time.monotonic())
                else:
                    log.info("%s: handshake refused: %s", self.label, e.status)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                log.info("%s: connection problem: %s", self.label, type(e).__name__)
            except Exception:
                log.exception("%s: unexpected error in the socket loop", self.label)
            finally:
                if locked and lock is not None:
                    lock.release()
                if reader is not None and not reader.done():
                    reader.cancel()
                    with contextlib.suppress(BaseException):
                        await reader
                self._lost()
                ws, self._ws = self._ws, None
                if ws is not None and not ws.closed:
                    with contextlib.suppress(Exception):
                        await ws.close()
            if self._closing:
                return
            self._failures = 0 if got_data else self._failures + 1
            base = min(timings.backoff_max,
                       timings.backoff_base * (2 ** min(self._failures, 16)))
            # A healthy connection that dropped comes back fast; repeated failures back off.
            delay = jitter(base if self._failures else timings.backoff_base)
            log.info("%s: reconnecting in %.2fs", self.label, delay)
            await asyncio.sleep(delay)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Read until the socket dies (or this socket is closed); whether table data came."""
        got_data = False
        awaiting_pong = False
        while not self._closing:
            timings = self.timings
            try:
                msg = await ws.receive(timeout=timings.pong_timeout if awaiting_pong
                                       else timings.ping_after)
            except TimeoutError:
                if awaiting_pong:
                    log.info("%s: no pong, reconnecting", self.label)
                    return got_data
                await ws.send_str("ping")
                awaiting_pong = True
                continue
            awaiting_pong = False
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type in _CLOSED:
                    return got_data
                continue
            if msg.data == "pong":
                continue
            got_data = await self._on_text(msg.data) or got_data
        return got_data
