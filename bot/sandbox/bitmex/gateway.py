"""The simulator's front door: its state, and what every REST request passes through before
a route sees it (the middleware: injected faults, rate limits, the Date header, error
bodies), and the authentication both REST and the WebSocket use: api-key, api-expires
judged on the gateway's own clock, api-signature, permissions.
"""

from __future__ import annotations

import asyncio
import email.utils
import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bot.matching import Account, Engine, EngineError
from bot.sandbox.bitmex.faults import Faults
from bot.sandbox.bitmex.limits import (
    SECOND_LAYER_ROUTES,
    Bucket,
    RateLimitConfig,
    Window,
    WsConnectLimit,
)
from bot.sandbox.bitmex.wire import OBSERVERS, OVERLOADED, ApiError, dumps, error_response, sign


@dataclass(eq=False)
class Conn:
    """One realtime stream: a /realtime socket, or one stream of a /realtimemd socket."""

    ws: web.WebSocketResponse
    queue: asyncio.Queue[str | None]
    account: Account | None = None
    subs: set[tuple[str, str | None]] = field(default_factory=set)
    mux: tuple[str, str] | None = None  # (stream id, topic) on /realtimemd
    closed: bool = False


class Gateway:
    """State and request plumbing shared by the REST routes and the WebSocket."""

    def __init__(
        self, engine: Engine | None = None, rate_limit: RateLimitConfig | None = None
    ) -> None:
        self.engine = engine or Engine()
        self.rate_limit: RateLimitConfig | None = rate_limit or RateLimitConfig()
        self.faults = Faults()
        # Seconds BitMEX's clock is ahead of this host's (negative: behind). The gateway
        # stamps every answer's Date and judges api-expires by its own clock, not the
        # client's; tests that drive time move it together with the engine clock.
        self.clock_skew = 0.0
        self._windows: dict[tuple[str, str], Window] = {}
        self._buckets: dict[str, Bucket] = {}
        self._conns: set[Conn] = set()
        self._account_conns: dict[int, set[Conn]] = {}
        self._table_conns: dict[str, set[Conn]] = {}  # public table -> its subscribers
        self.ws_limit = WsConnectLimit()
        # Login is not instant on BitMEX: a subscribe sent right behind authKeyExpires,
        # without waiting for its success, finds the stream not yet authenticated.
        self.ws_auth_delay = 0.02
        self._login_tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._host = "127.0.0.1"
        self._ticker: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self._stopping = asyncio.Event()
        self._clock_moved = asyncio.Event()
        self.engine.clock.on_advance(self._clock_moved.set)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        headers: dict[str, str] = {}
        try:
            headers = self._rate_check(request)
            route = request.path[len("/api/v1/") :]
            rule = self.faults._take(request.method, route)
            if rule is not None:
                if rule.status == 429:  # as BitMEX answers it: with Retry-After
                    raise ApiError(429, "Rate limit exceeded, retry in 1 seconds.",
                                   headers={"Retry-After": "1"})
                message = OVERLOADED if rule.status == 503 else "Injected failure"
                raise ApiError(rule.status, message)
            response = await handler(request)
        except ApiError as e:
            headers.update(e.headers)
            response = error_response(e.status, e.message, e.name)
        except EngineError as e:
            response = error_response(e.status, e.message, e.name)
        except web.HTTPNotFound:
            response = error_response(404, "Not Found")
        except web.HTTPMethodNotAllowed:
            response = error_response(405, "Method Not Allowed")
        if not response.prepared:
            response.headers.update(headers)
            # RFC 7231 IMF-fixdate, whole seconds, like BitMEX's servers send.
            response.headers["Date"] = email.utils.formatdate(self.exchange_time(), usegmt=True)
        if OBSERVERS:
            await self._observe(request, response)
        return response

    def exchange_time(self) -> float:
        """The gateway's clock (UNIX s): what api-expires is judged by and Date says."""
        return time.time() + self.clock_skew

    def reset_rate_limits(self) -> None:
        """Full budgets for every key and address (a new deployment, or a new test)."""
        self._buckets.clear()
        self._windows.clear()

    @staticmethod
    async def _observe(request: web.Request, response: web.StreamResponse) -> None:
        body = response.body if isinstance(response, web.Response) else None
        exchange = {
            "method": request.method,
            "path": request.path,
            "query": [(k, v) for k, v in request.query.items()],
            "body": await request.read(),
            "content_type": request.content_type,
            "status": response.status,
            "response": body if isinstance(body, bytes) else None,
        }
        for observer in list(OBSERVERS):
            observer("rest", exchange)

    def _rate_check(self, request: web.Request) -> dict[str, str]:
        config = self.rate_limit
        if config is None:
            return {}
        key = request.headers.get("api-key") or ""
        who = key or (request.remote or "anon")
        limit = config.per_minute if key else config.unauthenticated_per_minute
        now = time.monotonic()
        wall = time.time()
        minute = self._buckets.get(who)
        if minute is None:
            minute = self._buckets[who] = Bucket(limit, now)
        minute.refill(limit, now)
        second: Window | None = None
        if (request.method, request.path) in SECOND_LAYER_ROUTES:
            second = self._windows.setdefault((who, "s"), Window(1.0))
            second.prune(now)
        if minute.tokens < 1:
            wait = minute.wait()
            raise ApiError(
                429,
                f"Rate limit exceeded, retry in {math.ceil(wait)} seconds.",
                headers=self._rl_headers(limit, 0, wall + minute.full_in(), retry=wait,
                                         second=None),
            )
        if second is not None and len(second.times) >= config.per_second_orders:
            wait = second.retry_after(now)
            raise ApiError(
                429,
                f"Rate limit exceeded, retry in {math.ceil(wait)} seconds.",
                headers=self._rl_headers(
                    limit, int(minute.tokens), wall + minute.full_in(), retry=wait, second=0,
                ),
            )
        minute.tokens -= 1
        left_1s = None
        if second is not None:
            second.times.append(now)
            left_1s = config.per_second_orders - len(second.times)
        return self._rl_headers(
            limit, int(minute.tokens), wall + minute.full_in(), retry=None, second=left_1s,
        )

    @staticmethod
    def _rl_headers(
        limit: int, remaining: int, reset: float, *, retry: float | None, second: int | None
    ) -> dict[str, str]:
        headers = {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(max(0, remaining)),
            "x-ratelimit-reset": str(math.ceil(reset)),
        }
        if second is not None:
            headers["x-ratelimit-remaining-1s"] = str(max(0, second))
        if retry is not None:
            headers["Retry-After"] = str(max(1, math.ceil(retry)))
        return headers

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], bytes]:
        raw = await request.read()
        params: dict[str, Any] = {}
        for key in request.query:
            values = request.query.getall(key)
            params[key] = values[0] if len(values) == 1 else list(values)
        if raw:
            text = raw.decode()
            if request.content_type == "application/json" or text.lstrip().startswith("{"):
                try:
                    body = json.loads(text)
                except ValueError as e:
                    raise ApiError(400, "Invalid JSON body", "ValidationError") from e
                if isinstance(body, dict):
                    params.update(body)
            else:
                params.update(dict(parse_qsl(text, keep_blank_values=True)))
        return params, raw

    def _authenticate(self, request: web.Request, raw: bytes) -> Account:
        key = request.headers.get("api-key")
        expires = request.headers.get("api-expires")
        signature = request.headers.get("api-signature")
        if not key or not signature or not expires:
            raise ApiError(401, "Missing API key.")
        return self._verify(key, expires, signature, request.method, request.raw_path, raw)

    def _verify(
        self, key: str, expires: str, signature: str, verb: str, path: str, raw: bytes
    ) -> Account:
        account = self.engine.account_by_key(key)
        if account is None:
            raise ApiError(401, "Invalid API Key.")
        try:
            expires_at = int(expires)
        except ValueError as e:
            raise ApiError(401, "Signature not valid.") from e
        now = int(self.exchange_time())
        if expires_at < now:
            raise ApiError(
                401,
                f"This request has expired - `expires` is in the past. Current time: {now}",
            )
        expected = sign(account.secret, verb, path, expires, raw)
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(401, "Signature not valid.")
        if not account.enabled:
            raise ApiError(401, "This key is disabled.")
        return account

    @staticmethod
    def _require(account: Account, *any_of: str) -> None:
        if not any(p in account.permissions for p in any_of):
            raise ApiError(403, "Access Denied")

    async def _private(
        self, request: web.Request, *permissions: str
    ) -> tuple[Account, dict[str, Any]]:
        params, raw = await self._params(request)
        account = self._authenticate(request, raw)
        if permissions:
            self._require(account, *permissions)
        return account, params

    async def _optional_auth(self, request: web.Request) -> dict[str, Any]:
        params, raw = await self._params(request)
        if request.headers.get("api-key"):
            self._authenticate(request, raw)
        return params

    @staticmethod
    def _json(data: Any) -> web.Response:
        return web.Response(text=dumps(data), content_type="application/json")
