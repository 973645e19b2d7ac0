"""Many streams over a few `/realtimemd` sockets: one connect budget per host.

60 connects per hour per IP do not allow a socket per user: a `StreamPool` packs streams
`capacity` to a `MuxSocket` and opens sockets as streams need them. A mux socket wraps
each stream's messages in `[type, id, name, payload]` frames (0 message, 1 open,
2 close); the read loop itself is `Socket`'s, the same as a stream's own socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from decimal import Decimal
from typing import Any

import aiohttp

from bot.errors import AuthError
from bot.exchange.stream.base import BaseStream
from bot.exchange.stream.connection import ConnectionBudget, Socket, StreamOptions, mux_url_for

log = logging.getLogger(__name__)


class MuxSocket(Socket):
    """One `/realtimemd` socket carrying up to `capacity` streams."""

    serialize_handshakes = True

    def __init__(self, pool: StreamPool, index: int) -> None:
        super().__init__(label=f"mux {index}", url=pool.url, session=pool.session,
                         budget=pool.budget, timings=pool.options,
                         task_name=f"bitmex-mux-{index}")
        self.pool = pool
        self.index = index
        self.streams: dict[str, BaseStream] = {}
        self.connects = 0
        self.connected = asyncio.Event()
        self._ids = 0
        self._noted = False  # every stream's welcome repeats the socket's figure: note one

    async def add(self, stream: BaseStream) -> None:
        self._ids += 1
        sid = f"{self.index}-{self._ids}"
        stream._mux_id = sid
        stream._mux = self
        self.streams[sid] = stream
        if self.connected.is_set():
            await self._open_stream(stream)
        self.start()

    async def remove(self, stream: BaseStream) -> None:
        sid = stream._mux_id
        if self.streams.pop(sid, None) is None:
            return
        if self.connected.is_set() and stream.connected.is_set():
            with contextlib.suppress(Exception):
                await self._frame([2, sid, stream.kind])
        stream._lost()
        stream._mux = None

    async def _frame(self, frame: list[Any]) -> None:
        await self._send_text(json.dumps(frame))

    async def send_on(self, stream: BaseStream, payload: Any) -> None:
        sid = stream._mux_id
        if sid in self.streams and stream.connected.is_set():
            await self._frame([0, sid, stream.kind, payload])

    async def _open_stream(self, stream: BaseStream) -> None:
        if stream.fatal is not None:
            return
        await self._frame([1, stream._mux_id, stream.kind])
        stream._opened()
        await stream._after_connect()

    # --- the socket's hooks -----------------------------------------------------------

    def _connected(self) -> None:
        self.connects += 1
        self.connected.set()
        self._noted = False

    async def _open(self) -> None:
        for stream in list(self.streams.values()):
            await self._open_stream(stream)

    def _welcome_expected(self) -> bool:
        return bool(self.streams)

    def _lost(self) -> None:
        self.connected.clear()
        for stream in list(self.streams.values()):
            stream._lost()

    async def _on_text(self, text: str) -> bool:
        try:
            frame = json.loads(text, parse_float=Decimal)
            kind, sid = frame[0], str(frame[1])
        except (ValueError, TypeError, IndexError, KeyError):
            log.debug("%s: unreadable frame ignored", self.label)
            return False
        stream = self.streams.get(sid)
        if stream is None:
            return False
        if kind == 2:
            # The server closed this stream: open it again, the others are fine.
            stream._lost()
            await self._open_stream(stream)
            return False
        if kind != 0 or len(frame) < 4:
            return False
        payload = frame[3]
        if not self._noted and isinstance(payload, dict) and "limit" in payload:
            self._noted = True
            self._note_welcome(payload)
        try:
            return await stream._on_payload(payload)
        except AuthError as e:
            stream._fail(e)
            await self.remove(stream)
            stream._refused()
            return False


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
        self.sockets: list[MuxSocket] = []
        self._lock = asyncio.Lock()

    @property
    def handshakes(self) -> int:
        return self.budget.used

    def stream_count(self) -> int:
        return sum(len(s.streams) for s in self.sockets)

    async def attach(self, stream: BaseStream) -> None:
        async with self._lock:
            sock = next((s for s in self.sockets if len(s.streams) < self.capacity), None)
            if sock is None:
                sock = MuxSocket(self, len(self.sockets))
                self.sockets.append(sock)
            await sock.add(stream)

    async def detach(self, stream: BaseStream) -> None:
        mux = stream._mux
        if isinstance(mux, MuxSocket):
            await mux.remove(stream)

    async def close(self) -> None:
        sockets, self.sockets = self.sockets, []
        for sock in sockets:
            await sock.close()

