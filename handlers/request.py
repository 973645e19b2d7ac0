"""The Bot API connection pool: one single-connection client per lane, queued in asyncio.

httpcore's pool re-examines every queued request against every connection each time a
request is queued or a connection frees (`_assign_requests_to_connections`), so a queue
of a few hundred waiting requests costs the bot quadratic CPU; and even with no queue it
scans every open connection twice per request (a list of all connections per connection,
and for each idle one `has_expired`: anyio's extra-attribute dict, `getpeername` and
`poll`), so 64 open connections cost far more per request than the one a bare bot keeps
(bench/throughput.py, profiled). Here a request first waits for a slot on a semaphore
(O(1) per request, so httpcore never holds a queue), then takes a lane: a client holding
at most one connection, so httpcore's scan is of one. Lanes are opened on demand and
reused most-recently-freed first, so a quiet bot keeps one or two warm and the rest idle
out (httpx closes a connection idle past its keep-alive expiry when its lane is next used).

`reserved` slots are only for answerCallbackQuery: a press's answer never waits behind
bulk sends, only behind other answers. The pool timeout keeps its meaning.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, HTTPXRequest, RequestData

if TYPE_CHECKING:
    from bot.inbox import UpdateInbox

ANSWER = "/answerCallbackQuery"


class PooledRequest(BaseRequest):
    def __init__(self, connection_pool_size: int, *, pool_timeout: float | None,
                 reserved: int = 0, **kwargs: Any) -> None:
        if not 0 <= reserved < connection_pool_size:
            raise ValueError("reserved must leave at least one slot for ordinary requests")
        # One TLS context for every lane: building one loads the CA bundle (~10 ms of CPU),
        # which lanes opened during a burst would otherwise each pay.
        httpx_kwargs = {"verify": httpx.create_ssl_context(), **kwargs.pop("httpx_kwargs", {})}
        self._kwargs = {"pool_timeout": pool_timeout, "httpx_kwargs": httpx_kwargs, **kwargs}
        self._size = connection_pool_size
        self._ordinary = asyncio.Semaphore(connection_pool_size - reserved)
        self._answers = asyncio.Semaphore(reserved) if reserved else self._ordinary
        self._pool_wait = pool_timeout
        # Every lane made, and the free ones as a stack: the last freed is the warmest.
        self._lanes: list[HTTPXRequest] = [self._lane()]
        self._idle: list[HTTPXRequest] = list(self._lanes)

    def _lane(self) -> HTTPXRequest:
        return HTTPXRequest(connection_pool_size=1, **self._kwargs)

    @property
    def read_timeout(self) -> float | None:
        return self._lanes[0].read_timeout

    @property
    def lanes_open(self) -> int:
        """Lanes made so far (each holds at most one connection)."""
        return len(self._lanes)

    async def initialize(self) -> None:
        for lane in self._lanes:
            await lane.initialize()

    async def shutdown(self) -> None:
        for lane in self._lanes:
            await lane.shutdown()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        # A number (or None: no limit) when the caller set one; PTB's DEFAULT_NONE otherwise.
        given = pool_timeout is None or isinstance(pool_timeout, int | float)
        wait = pool_timeout if given else self._pool_wait
        slots = self._answers if url.endswith(ANSWER) else self._ordinary
        try:
            async with asyncio.timeout(wait):
                await slots.acquire()
        except TimeoutError:
            # What httpx's own pool timeout becomes in PTB.
            raise TimedOut("Pool timeout: All connections in the connection pool are "
                           "occupied. Request was *not* sent to Telegram.") from None
        # Slots never exceed the lanes' number, so a free lane exists or one may be made.
        lane = self._idle.pop() if self._idle else None
        if lane is None:
            lane = self._lane()
            self._lanes.append(lane)
        try:
            return await lane.do_request(url, method, request_data, read_timeout,
                                         write_timeout, connect_timeout, pool_timeout)
        finally:
            self._idle.append(lane)
            slots.release()


class InboxDown(NetworkError):
    """A fetched batch could not be kept (bot/inbox.py): PTB's polling loop retries
    network errors with the same offset, so the batch stays unconfirmed and Telegram sends
    it again."""


class PollRequest(HTTPXRequest):
    """The getUpdates connection (PTB sends nothing else on it; `get_updates_request`):
    each batch fetched is stored in the update inbox before PTB sees it.

    PTB sets the offset that confirms a batch only after `get_updates` has returned, so a
    batch stored here is durable before Telegram forgets it. Stored from Telegram's own
    JSON, before PTB parses it into objects: nothing is serialised back from them. `inbox`
    is read on every call: the inbox exists only once the services do (handlers/app.py
    post_init)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inbox: Callable[[], UpdateInbox | None] = lambda: None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        code, payload = await super().do_request(url, method, request_data, read_timeout,
                                                 write_timeout, connect_timeout, pool_timeout)
        inbox = self.inbox()
        if inbox is None or code != 200 or not url.endswith("/getUpdates"):
            return code, payload
        try:
            batch = json.loads(payload).get("result")
        except (ValueError, AttributeError):  # PTB's own parsing says what is wrong
            return code, payload
        if isinstance(batch, list) and batch:
            try:
                await inbox.store(batch)
            except Exception as e:  # what the database said may quote the rows: its type only
                raise InboxDown(f"the updates fetched could not be kept ({type(e).__name__}); "
                                "Telegram will send them again") from None
        return code, payload
