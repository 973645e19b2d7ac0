"""The webhook listener: Telegram's posts in, checked before a byte of the body is read.

PTB's own webhook server (tornado) reads a whole body, up to 100 MB, before its handler
checks the secret token, so anyone who learns the URL can make the bot hold hundreds of
megabytes with a few unauthenticated posts. Here the order is the other way round: the
secret token (X-Telegram-Bot-Api-Secret-Token) is compared in constant time from the
headers alone, the declared size is checked next, and only then is the body read, in
chunks, stopping at the limit even when no size was declared. A refused request closes
its connection without reading on. An update is a few kilobytes; 1 MB is generous.

Telegram-agnostic (rule 1): accepted updates are handed on as parsed JSON objects; 200 is
answered only once the delivery returned (handlers/app.py keeps the update first), and a
delivery that fails is answered 503, which Telegram retries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_BODY = 1 << 20
Deliver = Callable[[dict[str, Any]], Awaitable[None]]


def _digest(value: bytes) -> bytes:
    # Equal-length digests: compare_digest's time then depends on neither the guess's
    # length nor how much of it is right.
    return hashlib.sha256(value).digest()


class WebhookListener:
    def __init__(self, path: str, secret: str, deliver: Deliver, *,
                 max_body: int = MAX_BODY) -> None:
        self.path = "/" + path.lstrip("/")
        self._secret = _digest(secret.encode())
        self.deliver = deliver
        self.max_body = max_body
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.refused = 0  # for tests and logs: posts turned away before their body was read

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post(self.path, self._post)
        return app

    async def start(self, host: str, port: int) -> int:
        # lingering_time=0: after refusing, close at once instead of reading (and dropping)
        # the rest of a huge body for another ten seconds.
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                                     lingering_time=0, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _refuse(self, status: int, reason: str) -> web.Response:
        self.refused += 1
        response = web.Response(status=status, text=reason)
        response.force_close()
        return response

    async def _post(self, request: web.Request) -> web.StreamResponse:
        got = request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
        if not hmac.compare_digest(_digest(got), self._secret):
            return self._refuse(403, "forbidden")
        if request.content_length is not None and request.content_length > self.max_body:
            return self._refuse(413, "too large")
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > self.max_body:  # chunked, or a Content-Length that lied
                return self._refuse(413, "too large")
        try:
            data = json.loads(body)
        except ValueError:
            return self._refuse(400, "not JSON")
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return self._refuse(400, "not an update")
        try:
            await self.deliver(data)
        except Exception as e:  # not taken (the update inbox could not keep it, say)
            # Anything but a 2xx and Telegram posts it again later: nothing is lost.
            log.warning("update %s not taken (%s): Telegram will post it again",
                        data["update_id"], type(e).__name__)
            return web.Response(status=503, text="try again")
        return web.Response(text="ok")
