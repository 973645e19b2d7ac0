"""The Bot API connection pool, queued in asyncio rather than in httpcore.

httpcore's pool re-examines every queued request against every connection each time a
request is queued or a connection frees (`_assign_requests_to_connections`), so a queue
of a few hundred waiting requests costs the bot quadratic CPU: with 256 concurrent updates
and 64 connections, a burst of replies spent most of its time there (bench/throughput.py,
profiled). Here a request first waits for a free connection on a semaphore (O(1) per
request), so httpcore never holds a queue; the pool timeout keeps its meaning.
"""

from __future__ import annotations

import asyncio
from typing import Any

from telegram.error import TimedOut
from telegram.request import BaseRequest, HTTPXRequest, RequestData


class PooledRequest(HTTPXRequest):
    def __init__(self, connection_pool_size: int, *, pool_timeout: float | None,
                 **kwargs: Any) -> None:
        super().__init__(connection_pool_size=connection_pool_size, pool_timeout=pool_timeout,
                         **kwargs)
        self._free = asyncio.Semaphore(connection_pool_size)
        self._pool_wait = pool_timeout

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
        try:
            async with asyncio.timeout(wait):
                await self._free.acquire()
        except TimeoutError:
            # What httpx's own pool timeout becomes in PTB.
            raise TimedOut("Pool timeout: All connections in the connection pool are "
                           "occupied. Request was *not* sent to Telegram.") from None
        try:
            return await super().do_request(url, method, request_data, read_timeout,
                                            write_timeout, connect_timeout, pool_timeout)
        finally:
            self._free.release()
