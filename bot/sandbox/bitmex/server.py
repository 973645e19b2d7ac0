"""An aiohttp server that speaks BitMEX's REST API v1 and realtime WebSocket.

The client in bot/exchange must work unchanged against this server and the real
exchange, so routes, field names, error bodies, status codes and headers follow
BitMEX (see shared BITMEX.md). Everything runs in the caller's event loop;
state lives in the `Engine`, which tests drive directly (`simulator.engine`).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import hmac
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from bot.matching import (
    ASSETS,
    OPEN_STATUSES,
    Account,
    Engine,
    EngineError,
    Event,
    Row,
    iso,
)

OVERLOADED = "The system is currently overloaded. Please try again later."
PUBLIC_TABLES = ("instrument", "trade", "quote", "liquidation", "funding")
PRIVATE_TABLES = ("order", "execution", "position", "margin", "wallet")
KEYS: dict[str, list[str]] = {
    "instrument": ["symbol"],
    "trade": [],
    "quote": [],
    "liquidation": ["orderID"],
    "funding": ["timestamp", "symbol"],
    "order": ["orderID"],
    "execution": ["execID"],
    "position": ["account", "symbol", "currency"],
    "margin": ["account", "currency"],
    "wallet": ["account", "currency"],
}
MAX_COUNT = 1000
DEFAULT_COUNT = 100
# Test hook (the contract test): called with ("rest", exchange) for every REST request
# and its answer, and ("ws", message) for every WebSocket data message, of every
# simulator in the process. Empty outside tests, so it costs one truth test.
OBSERVERS: list[Callable[[str, dict[str, Any]], None]] = []
# The 10/s second layer covers exactly these (BitMEX, "Second Layer Rate Limits"): not
# GET /order, not cancelAllAfter, but the position writes.
SECOND_LAYER_ROUTES = frozenset({
    ("POST", "/api/v1/order"), ("PUT", "/api/v1/order"), ("DELETE", "/api/v1/order"),
    ("POST", "/api/v1/order/bulk"), ("PUT", "/api/v1/order/bulk"),
    ("DELETE", "/api/v1/order/all"),
    ("POST", "/api/v1/position/leverage"), ("POST", "/api/v1/position/isolate"),
    ("POST", "/api/v1/position/transferMargin"),
})


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        # JSON numbers, like BitMEX: integral values without a fraction.
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    if isinstance(obj, datetime):
        return iso(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_default, separators=(",", ":"))


def sign(secret: str, verb: str, path: str, expires: int | str, body: str | bytes = "") -> str:
    """hex(HMAC_SHA256(secret, VERB + PATH + EXPIRES + BODY)), as BitMEX computes it."""
    data = body.decode() if isinstance(body, bytes) else body
    message = f"{verb}{path}{expires}{data}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        name: str = "HTTPError",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.name = name
        self.headers = headers or {}


def error_response(
    status: int, message: str, name: str = "HTTPError", headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=dumps({"error": {"message": message, "name": name}}),
        content_type="application/json",
        headers=headers,
    )


@dataclass
class RateLimitConfig:
    """Per-key REST limits; the bench raises them, tests lower them."""

    per_minute: int = 120
    per_second_orders: int = 10
    unauthenticated_per_minute: int = 30


@dataclass
class _FailRule:
    remaining: int
    status: int
    route: str
    method: str


@dataclass
class Faults:
    """Failure injection for the client's error paths."""

    latency: float = 0.0
    _rules: list[_FailRule] = field(default_factory=list)
    _drops: int = 0
    _drop_mode: str = "close"
    # Load shedding: BitMEX refuses every order carrying an orderQty while overloaded.
    load_shedding: bool = False
    _lags: list[tuple[float, str | None]] = field(default_factory=list)
    held: int = 0  # order POSTs an engine-lag fault is holding right now
    _closer: Callable[[], Awaitable[None]] | None = None
    ws: WsFaults = field(default_factory=lambda: WsFaults())

    def fail_next(
        self, n: int = 1, status: int = 503, route: str = "order", method: str = "POST"
    ) -> None:
        """The next `n` matching requests answer `status` before reaching the engine."""
        self._rules.append(_FailRule(n, status, route.strip("/"), method.upper()))

    def drop_after_accept(self, n: int = 1, mode: str = "close") -> None:
        """Accept the next `n` order POSTs into the engine, then never answer.

        mode "close" drops the connection; "hang" keeps it open without answering
        (the client's own timeout fires).
        """
        if mode not in ("close", "hang"):
            raise ValueError("mode must be 'close' or 'hang'")
        self._drops = n
        self._drop_mode = mode

    def engine_lag(self, n: int = 1, seconds: float = 12.0, cl_ord_id: str | None = None
                   ) -> None:
        """The next `n` order POSTs (with that clOrdID, if given) are accepted by the
        gateway but reach the engine (and a market order fills) only `seconds` later on
        the simulator's clock; the HTTP answer comes then. Until then a lookup by clOrdID
        finds nothing."""
        self._lags.extend([(seconds, cl_ord_id)] * n)

    async def close_sockets(self) -> None:
        """Close every WebSocket connection, as a network blip would."""
        if self._closer is not None:
            await self._closer()

    def clear(self) -> None:
        self.latency = 0.0
        self._rules.clear()
        self._drops = 0
        self.load_shedding = False
        self._lags.clear()
        self.ws.clear()

    def _take(self, method: str, route: str) -> _FailRule | None:
        for rule in self._rules:
            if rule.remaining > 0 and rule.method == method and rule.route == route:
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._rules.remove(rule)
                return rule
        return None

    def _take_lag(self, cl_ord_id: str) -> float:
        for i, (seconds, only) in enumerate(self._lags):
            if only is None or only == cl_ord_id:
                del self._lags[i]
                return seconds
        return 0.0

    def _take_drop(self) -> str | None:
        if self._drops > 0:
            self._drops -= 1
            return self._drop_mode
        return None


class _Bucket:
    """BitMEX's per-minute limit: a token bucket of `limit` tokens refilled evenly over a
    minute (120/min = one token every 0.5 s), so a spent budget comes back gradually."""

    def __init__(self, limit: int, now: float) -> None:
        self.limit = limit
        self.tokens = float(limit)
        self.at = now

    def refill(self, limit: int, now: float) -> None:
        if limit != self.limit:  # a test changed the limit: start from a full bucket
            self.limit, self.tokens = limit, float(limit)
        self.tokens = min(float(limit), self.tokens + (now - self.at) * limit / 60.0)
        self.at = now

    def wait(self) -> float:
        """Seconds until one whole token is there."""
        return max(0.0, (1.0 - self.tokens) * 60.0 / self.limit)

    def full_in(self) -> float:
        return (self.limit - self.tokens) * 60.0 / self.limit


@dataclass
class WsFaults:
    """WebSocket failure injection: refused subscribes and lost authentication."""

    _refuse: list[tuple[int, str | None]] = field(default_factory=list)
    _drop_auth: int = 0

    def refuse_subscribe(self, n: int = 1, table: str | None = None) -> None:
        """Refuse the next `n` subscribes to a private table (`table`, or any)."""
        self._refuse.append((n, table))

    def drop_auth(self, n: int = 1) -> None:
        """The next `n` authKeyExpires requests are lost: never answered, never applied.

        A client that subscribes without waiting for the login's success stays dark.
        """
        self._drop_auth += n

    def clear(self) -> None:
        self._refuse.clear()
        self._drop_auth = 0

    def _take_refusal(self, table: str) -> bool:
        for i, (n, which) in enumerate(self._refuse):
            if which is None or which == table:
                if n <= 1:
                    del self._refuse[i]
                else:
                    self._refuse[i] = (n - 1, which)
                return True
        return False

    def _take_drop_auth(self) -> bool:
        if self._drop_auth > 0:
            self._drop_auth -= 1
            return True
        return False


class WsConnectLimit:
    """BitMEX's 60 WebSocket connects per rolling hour per client IP, on simulated time.

    Every accepted upgrade counts, whatever the endpoint (/realtime or /realtimemd).
    """

    def __init__(self, per_hour: int = 60) -> None:
        self.per_hour = per_hour
        self.handshakes: dict[str, deque[datetime]] = {}
        self.refused = 0  # upgrades answered 429

    def _window(self, ip: str, now: datetime) -> deque[datetime]:
        times = self.handshakes.setdefault(ip, deque())
        while times and (now - times[0]).total_seconds() >= 3600:
            times.popleft()
        return times

    def admit(self, ip: str, now: datetime) -> tuple[int, float]:
        """(remaining after this connect, 0) when admitted; (-1, retry_after) when not."""
        times = self._window(ip, now)
        if len(times) >= self.per_hour:
            self.refused += 1
            return -1, 3600 - (now - times[0]).total_seconds()
        times.append(now)
        return self.per_hour - len(times), 0.0

    def used(self, ip: str = "127.0.0.1", now: datetime | None = None) -> int:
        """Handshakes counted in the hour up to `now` (tests read this)."""
        times = self.handshakes.get(ip, deque())
        if now is None:
            return len(times)
        return sum(1 for t in times if (now - t).total_seconds() < 3600)

    def fill(self, n: int, at: datetime, ip: str = "127.0.0.1") -> None:
        """`n` handshakes made at `at` by someone else on `ip` (another process)."""
        self.handshakes.setdefault(ip, deque()).extend([at] * n)

    def reset(self) -> None:
        self.handshakes.clear()
        self.refused = 0


class _Window:
    """Sliding window of request times (wall monotonic seconds)."""

    def __init__(self, span: float) -> None:
        self.span = span
        self.times: deque[float] = deque()

    def prune(self, now: float) -> None:
        while self.times and self.times[0] <= now - self.span:
            self.times.popleft()

    def retry_after(self, now: float) -> float:
        return self.times[0] + self.span - now if self.times else 0.0


@dataclass(eq=False)
class _Conn:
    """One realtime stream: a /realtime socket, or one stream of a /realtimemd socket."""

    ws: web.WebSocketResponse
    queue: asyncio.Queue[str | None]
    account: Account | None = None
    subs: set[tuple[str, str | None]] = field(default_factory=set)
    mux: tuple[str, str] | None = None  # (stream id, topic) on /realtimemd
    closed: bool = False


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "1", "yes")


def _parse_time(value: Any) -> datetime:
    text = str(value).strip()
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ApiError(400, "startTime is invalid", "ValidationError") from e
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts


def _json_param(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as e:
            raise ApiError(400, f"{what} is not valid", "ValidationError") from e
    return value


def list_query(rows: list[Row], params: dict[str, Any], *, newest_default: bool = False,
               keep: Iterable[str] = ()) -> list[Row]:
    """BitMEX list-call semantics: symbol, filter, columns, count, start, reverse, times."""
    symbol = params.get("symbol")
    if symbol:
        rows = [r for r in rows if r.get("symbol") == symbol]
    if params.get("filter"):
        flt = _json_param(params["filter"], "filter values")
        if not isinstance(flt, dict):
            raise ApiError(400, "filter values are not valid", "ValidationError")
        for key, want in flt.items():
            if key == "open":
                if _bool(want):
                    rows = [r for r in rows if r.get("ordStatus") in OPEN_STATUSES]
                continue
            wants = want if isinstance(want, list) else [want]
            rows = [r for r in rows if any(_same(r.get(key), w) for w in wants)]
    for name, keep_if in (("startTime", lambda a, b: a >= b), ("endTime", lambda a, b: a <= b)):
        if params.get(name):
            bound = iso(_parse_time(params[name]))
            rows = [r for r in rows if keep_if(str(r.get("timestamp", "")), bound)]
    try:
        count = int(params.get("count") or DEFAULT_COUNT)
        start = int(params.get("start") or 0)
    except ValueError as e:
        raise ApiError(400, "count is invalid", "ValidationError") from e
    if count > MAX_COUNT or count < 0:
        raise ApiError(400, "count is invalid", "ValidationError")
    if start < 0:
        raise ApiError(400, "start is invalid", "ValidationError")
    reverse = _bool(params["reverse"]) if "reverse" in params else newest_default
    if reverse:
        rows = list(reversed(rows))
    rows = rows[start : start + count]
    if params.get("columns"):
        cols = params["columns"]
        if isinstance(cols, str):
            cols = json.loads(cols) if cols.startswith("[") else cols.split(",")
        wanted = set(cols) | set(keep) | {"timestamp"}
        rows = [{k: v for k, v in r.items() if k in wanted} for r in rows]
    return rows


def _same(have: Any, want: Any) -> bool:
    if have == want:
        return True
    if isinstance(have, Decimal | int) and not isinstance(have, bool):
        try:
            return Decimal(str(want)) == Decimal(have)
        except ArithmeticError:
            return False
    return False


def _types(rows: list[Row]) -> dict[str, str]:
    types: dict[str, str] = {}
    for row in rows[:1]:
        for key, value in row.items():
            if key in ("timestamp", "transactTime") or key.endswith("Timestamp"):
                types[key] = "timestamp"
            elif key == "symbol":
                types[key] = "symbol"
            elif key.endswith("ID"):
                types[key] = "guid"
            elif isinstance(value, bool):
                types[key] = "boolean"
            elif isinstance(value, int):
                types[key] = "long"
            elif isinstance(value, Decimal | float):
                types[key] = "float"
            else:
                types[key] = "symbol"
    return types


class BitmexSimulator:
    """The simulated exchange on 127.0.0.1: REST under /api/v1 and WS at /realtime."""

    def __init__(
        self, engine: Engine | None = None, rate_limit: RateLimitConfig | None = None
    ) -> None:
        self.engine = engine or Engine()
        self.rate_limit: RateLimitConfig | None = rate_limit or RateLimitConfig()
        self.faults = Faults()
        self.faults._closer = self._close_sockets
        # Seconds BitMEX's clock is ahead of this host's (negative: behind). The gateway
        # stamps every answer's Date and judges api-expires by its own clock, not the
        # client's; tests that drive time move it together with the engine clock.
        self.clock_skew = 0.0
        self._windows: dict[tuple[str, str], _Window] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._conns: set[_Conn] = set()
        self._account_conns: dict[int, set[_Conn]] = {}
        self._table_conns: dict[str, set[_Conn]] = {}  # public table -> its subscribers
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
        self.app = self._make_app()

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._host}:{self._port}/realtime"

    @property
    def ws_mux_url(self) -> str:
        return f"ws://{self._host}:{self._port}/realtimemd"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        address = self._runner.addresses[0]
        self._host, self._port = host, int(address[1])
        self._unlisten = self.engine.listen(self._on_event)
        self._ticker = asyncio.create_task(self._tick_loop())

    async def stop(self) -> None:
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._unlisten is not None:
            self._unlisten()
        await self._close_sockets()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _tick_loop(self) -> None:
        # A wall-following clock needs someone to run what falls due.
        while True:
            await asyncio.sleep(0.2)
            self.engine.tick()

    def add_account(
        self,
        key: str | None = None,
        secret: str | None = None,
        permissions: Iterable[str] = ("order", "orderCancel"),
        xbt: Decimal | float | int = 1.0,
        usdt: Decimal | float | int = 10000,
        enabled: bool = True,
        bmex: Decimal | float | int = 0,
    ) -> tuple[str, str]:
        key = key or secrets.token_urlsafe(18)[:24]
        secret = secret or secrets.token_urlsafe(36)[:48]
        self.engine.add_account(key, secret, permissions, xbt=xbt, usdt=usdt, enabled=enabled,
                                bmex=bmex)
        return key, secret

    def account(self, key: str) -> Account:
        account = self.engine.account_by_key(key)
        if account is None:
            raise KeyError(key)
        return account

    # ------------------------------------------------------------------- plumbing
    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        api = "/api/v1"
        r.add_get(f"{api}/instrument", self._instrument)
        r.add_get(f"{api}/instrument/active", self._instrument_active)
        r.add_get(f"{api}/order", self._get_orders)
        r.add_post(f"{api}/order", self._post_order)
        r.add_put(f"{api}/order", self._put_order)
        r.add_delete(f"{api}/order", self._delete_order)
        r.add_delete(f"{api}/order/all", self._delete_all)
        r.add_post(f"{api}/order/cancelAllAfter", self._cancel_all_after)
        r.add_get(f"{api}/position", self._get_positions)
        r.add_post(f"{api}/position/leverage", self._leverage)
        r.add_get(f"{api}/user/margin", self._margin)
        r.add_get(f"{api}/user/wallet", self._wallet)
        r.add_get(f"{api}/user", self._user)
        r.add_get(f"{api}/execution", self._executions)
        r.add_get(f"{api}/execution/tradeHistory", self._trade_history)
        r.add_get(f"{api}/trade", self._trades)
        r.add_get(f"{api}/trade/bucketed", self._bucketed)
        r.add_get(f"{api}/apiKey", self._api_keys)
        r.add_get(f"{api}/wallet/assets", self._wallet_assets)
        r.add_get("/realtime", self._realtime)
        r.add_get("/realtimemd", self._realtimemd)
        return app

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
            minute = self._buckets[who] = _Bucket(limit, now)
        minute.refill(limit, now)
        second: _Window | None = None
        if (request.method, request.path) in SECOND_LAYER_ROUTES:
            second = self._windows.setdefault((who, "s"), _Window(1.0))
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

    # ---------------------------------------------------------------- public REST
    async def _instrument(self, request: web.Request) -> web.Response:
        params = await self._optional_auth(request)
        rows = [self.engine.instrument_row(i) for i in self.engine.instruments.values()]
        return self._json(list_query(rows, params, keep=("symbol",)))

    async def _instrument_active(self, request: web.Request) -> web.Response:
        await self._optional_auth(request)
        return self._json([self.engine.instrument_row(i) for i in self.engine.active_instruments()])

    async def _wallet_assets(self, request: web.Request) -> web.Response:
        await self._optional_auth(request)
        return self._json(ASSETS)

    async def _trades(self, request: web.Request) -> web.Response:
        params = await self._optional_auth(request)
        rows = self.engine.trades(params.get("symbol") or None)
        return self._json(list_query(rows, params, keep=("symbol",)))

    async def _bucketed(self, request: web.Request) -> web.Response:
        params = await self._optional_auth(request)
        bin_size = params.get("binSize")
        if not bin_size:
            raise ApiError(400, "'binSize' is a required arg.", "ValidationError")
        symbol = params.get("symbol") or "XBTUSD"
        rows = self.engine.bucketed(str(symbol), str(bin_size), _bool(params.get("partial")))
        return self._json(list_query(rows, params, keep=("symbol",)))

    # --------------------------------------------------------------- private REST
    async def _get_orders(self, request: web.Request) -> web.Response:
        account, params = await self._private(request)
        rows = self.engine.order_rows(account.id)
        return self._json(list_query(rows, params, keep=("orderID", "symbol")))

    async def _post_order(self, request: web.Request) -> web.StreamResponse:
        account, params = await self._private(request, "order")
        if self.faults.load_shedding and params.get("orderQty") not in (None, ""):
            # "If you do intend to close your full position, please omit the orderQty
            # field": only a Close without a quantity gets through while shedding load.
            raise ApiError(503, OVERLOADED)
        lag = self.faults._take_lag(str(params.get("clOrdID") or ""))
        if lag:
            await self._engine_lag(request, lag)
        row = self.engine.place_order(account.id, params)
        mode = self.faults._take_drop()
        if mode == "hang":
            # Never answer; released (and dropped) only when the server stops.
            await self._stopping.wait()
            mode = "close"
        if mode == "close" and request.transport is not None:
            request.transport.close()
        return self._json(row)

    async def _engine_lag(self, request: web.Request, seconds: float) -> None:
        """Hold an accepted order until `seconds` of simulated time have passed; the engine
        then drops it if its api-expires is behind it (what bounds a late arrival)."""
        clock = self.engine.clock
        start, wall = clock.now(), self.exchange_time()
        due = start + timedelta(seconds=seconds)
        self.faults.held += 1
        try:
            while clock.now() < due:
                if self._stopping.is_set():
                    raise ApiError(503, OVERLOADED)
                self._clock_moved.clear()
                # A wall-following clock moves without advance(): look again soon.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._clock_moved.wait(), 0.05)
        finally:
            self.faults.held -= 1
        # The gateway checks api-expires on its own clock; the held request reaches the
        # engine at the later of that clock and its simulated arrival.
        arrived = max(self.exchange_time(), wall + (clock.now() - start).total_seconds())
        expires = int(request.headers.get("api-expires") or 0)
        if expires < arrived:
            raise ApiError(
                401,
                "This request has expired - `expires` is in the past. "
                f"Current time: {int(arrived)}",
            )

    async def _put_order(self, request: web.Request) -> web.Response:
        account, params = await self._private(request, "order")
        return self._json(self.engine.amend_order(account.id, params))

    async def _delete_order(self, request: web.Request) -> web.Response:
        account, params = await self._private(request, "order", "orderCancel")

        def ids(name: str) -> list[str]:
            value = params.get(name)
            if value is None or value == "":
                return []
            if isinstance(value, str) and value.startswith("["):
                value = json.loads(value)
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]

        order_ids, cl_ids = ids("orderID"), ids("clOrdID")
        if not order_ids and not cl_ids:
            raise ApiError(400, "At least one of orderID or clOrdID must be provided",
                           "ValidationError")
        rows = self.engine.cancel_orders(
            account.id, order_ids, cl_ids, text=str(params.get("text") or "")
        )
        return self._json(rows)

    async def _delete_all(self, request: web.Request) -> web.Response:
        account, params = await self._private(request, "order", "orderCancel")
        rows = self.engine.cancel_all(
            account.id, params.get("symbol") or None, text=str(params.get("text") or "")
        )
        return self._json(rows)

    async def _cancel_all_after(self, request: web.Request) -> web.Response:
        account, params = await self._private(request, "order", "orderCancel")
        if params.get("timeout") is None:
            raise ApiError(400, "'timeout' is a required arg.", "ValidationError")
        try:
            timeout = int(Decimal(str(params["timeout"])))
        except ArithmeticError as e:
            raise ApiError(400, "Invalid timeout", "ValidationError") from e
        return self._json(self.engine.cancel_all_after(account.id, timeout))

    async def _get_positions(self, request: web.Request) -> web.Response:
        account, params = await self._private(request)
        rows = self.engine.position_rows(account.id)
        return self._json(list_query(rows, params, keep=("account", "symbol", "currency")))

    async def _leverage(self, request: web.Request) -> web.Response:
        account, params = await self._private(request, "order")
        if params.get("symbol") is None or params.get("leverage") is None:
            raise ApiError(400, "'symbol' and 'leverage' are required args.", "ValidationError")
        return self._json(
            self.engine.set_leverage(account.id, str(params["symbol"]), params["leverage"])
        )

    async def _margin(self, request: web.Request) -> web.Response:
        account, params = await self._private(request)
        currency = str(params.get("currency") or "XBt")
        if currency == "all":
            return self._json(self.engine.margins(account.id))
        if currency not in account.wallet:
            raise ApiError(404, "Account has no [" + currency + "]")
        return self._json(self.engine.margin_row(account.id, currency))

    async def _wallet(self, request: web.Request) -> web.Response:
        account, params = await self._private(request)
        currency = str(params.get("currency") or "XBt")
        if currency == "all":
            return self._json([self.engine.wallet_row(account.id, c) for c in account.wallet])
        if currency not in account.wallet:
            raise ApiError(404, "Account has no [" + currency + "]")
        return self._json(self.engine.wallet_row(account.id, currency))

    async def _user(self, request: web.Request) -> web.Response:
        account, _ = await self._private(request)
        return self._json(
            {
                "id": account.id,
                "ownerId": None,
                "firstname": "Sim",
                "lastname": "Trader",
                "username": f"sim{account.id}",
                "email": f"sim{account.id}@example.invalid",
                "created": iso(account.created or datetime.now(UTC)),
                "lastUpdated": iso(self.engine.clock.now()),
                "preferences": {},
            }
        )

    async def _executions(self, request: web.Request) -> web.Response:
        account, params = await self._private(request)
        rows = self.engine.execution_rows(account.id)
        return self._json(list_query(rows, params, keep=("execID", "symbol")))

    async def _trade_history(self, request: web.Request) -> web.Response:
        account, params = await self._private(request)
        rows = self.engine.trade_history(account.id)
        return self._json(list_query(rows, params, keep=("execID", "symbol")))

    async def _api_keys(self, request: web.Request) -> web.Response:
        account, _ = await self._private(request)
        return self._json(self.engine.api_key_rows(account.id))

    # ----------------------------------------------------------------- WebSocket
    def _admit(self, request: web.Request) -> tuple[int, web.Response | None]:
        """Count one handshake against the IP's hourly budget, or refuse it with 429."""
        ip = request.remote or "unknown"
        remaining, retry = self.ws_limit.admit(ip, self.engine.clock.now())
        if remaining >= 0:
            return remaining, None
        wait = max(1, math.ceil(retry))
        body = dumps({"error": {"message": "Rate limit exceeded, retry in "
                                f"{wait} seconds.", "name": "HTTPError"}})
        return -1, web.Response(status=429, text=body, content_type="application/json",
                                headers={"Retry-After": str(wait)})

    def _welcome(self, remaining: int) -> dict[str, Any]:
        return {
            "info": "Welcome to the BitMEX Realtime API.",
            "version": "2.0.0-sim",
            "timestamp": iso(self.engine.clock.now()),
            "docs": "https://www.bitmex.com/app/wsAPI",
            "heartbeatEnabled": False,
            "limit": {"remaining": remaining},
        }

    async def _realtime(self, request: web.Request) -> web.StreamResponse:
        remaining, refused = self._admit(request)
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, asyncio.Queue())
        self._conns.add(conn)
        sender = asyncio.create_task(self._sender(ws, conn.queue))
        self._send(conn, self._welcome(remaining))
        creds = {
            name: request.query.get(name) or request.headers.get(name)
            for name in ("api-key", "api-expires", "api-signature")
        }
        try:
            if creds["api-key"]:
                try:
                    self._set_account(conn, self._verify(
                        str(creds["api-key"]), str(creds["api-expires"] or ""),
                        str(creds["api-signature"] or ""), "GET", "/realtime", b"",
                    ))
                except ApiError as e:
                    self._send(conn, {"status": e.status, "error": e.message, "meta": {}})
                    conn.queue.put_nowait(None)
                    await sender
                    await ws.close()
                    return ws
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if msg.data == "ping":
                    conn.queue.put_nowait("pong")
                    continue
                self._on_ws_message(conn, msg.data)
        finally:
            self._drop(conn)
            conn.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await sender
        return ws

    async def _realtimemd(self, request: web.Request) -> web.StreamResponse:
        """Many streams on one socket: frames `[type, id, topic, payload]` (BitMEX's format).

        1 opens a stream, 2 closes it, 0 carries a message; each stream logs in and
        subscribes on its own and receives exactly what a /realtime socket would.
        """
        remaining, refused = self._admit(request)
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        sender = asyncio.create_task(self._sender(ws, queue))
        streams: dict[str, _Conn] = {}
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if msg.data == "ping":
                    queue.put_nowait("pong")
                    continue
                try:
                    frame = json.loads(msg.data)
                    kind, sid, topic = frame[0], frame[1], frame[2]
                    if kind not in (0, 1, 2) or not isinstance(sid, str) or not isinstance(
                            topic, str):
                        raise ValueError(frame)
                except (ValueError, TypeError, IndexError, KeyError):
                    queue.put_nowait(dumps({"status": 400, "error": "Unrecognized request.",
                                            "meta": {}, "request": msg.data[:100]}))
                    continue
                conn = streams.get(sid)
                if kind == 1:
                    if conn is None:
                        conn = streams[sid] = _Conn(ws, queue, mux=(sid, topic))
                        self._conns.add(conn)
                        self._send(conn, self._welcome(remaining))
                elif kind == 2:
                    if conn is not None:
                        del streams[sid]
                        self._drop(conn)
                elif conn is not None and len(frame) > 3:
                    payload = frame[3]
                    if isinstance(payload, str):
                        self._on_ws_message(conn, payload)
                    else:
                        self._on_ws_request(conn, payload)
        finally:
            for conn in streams.values():
                self._drop(conn)
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await sender
        return ws

    def _set_account(self, conn: _Conn, account: Account | None) -> None:
        if conn.account is not None:
            self._account_conns.get(conn.account.id, set()).discard(conn)
        conn.account = account
        if account is not None:
            self._account_conns.setdefault(account.id, set()).add(conn)

    def _drop(self, conn: _Conn) -> None:
        conn.closed = True
        self._conns.discard(conn)
        for table, _ in conn.subs:
            self._table_conns.get(table, set()).discard(conn)
        self._set_account(conn, None)

    async def _sender(self, ws: web.WebSocketResponse, queue: asyncio.Queue[str | None]) -> None:
        while True:
            text = await queue.get()
            if text is None or ws.closed:
                return
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    def _send(self, conn: _Conn, message: Any) -> None:
        if conn.closed and conn.mux is not None:
            return
        if OBSERVERS and isinstance(message, dict) and "table" in message:
            for observer in list(OBSERVERS):
                observer("ws", message)
        if conn.mux is not None:
            sid, topic = conn.mux
            conn.queue.put_nowait(dumps([0, sid, topic, message]))
        else:
            conn.queue.put_nowait(message if isinstance(message, str) else dumps(message))

    async def _close_sockets(self) -> None:
        sockets = {id(c.ws): c for c in self._conns}
        for conn in list(self._conns):
            self._drop(conn)
        for conn in sockets.values():
            conn.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"closed by simulator")

    def _ws_error(self, conn: _Conn, status: int, message: str, request: Any) -> None:
        # BitMEX's error frame: no "success" field, the request echoed back.
        self._send(conn, {"status": status, "error": message, "meta": {}, "request": request})

    def _on_ws_message(self, conn: _Conn, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            self._ws_error(conn, 400, f"Unrecognized request. {text[:100]}", text)
            return
        self._on_ws_request(conn, request)

    def _on_ws_request(self, conn: _Conn, request: Any) -> None:
        if not isinstance(request, dict):
            self._ws_error(conn, 400, "Unrecognized request.", request)
            return
        op = request.get("op")
        args: Any = request.get("args")
        if op == "authKeyExpires":
            try:
                key, expires, signature = (str(a) for a in args)
            except (TypeError, ValueError):
                self._ws_error(conn, 400, "Invalid args for authKeyExpires", request)
                return
            if self.faults.ws._take_drop_auth():
                return  # lost on the way: no answer, no login
            task = asyncio.get_running_loop().create_task(
                self._login(conn, key, expires, signature, request))
            self._login_tasks.add(task)
            task.add_done_callback(self._login_tasks.discard)
        elif op in ("subscribe", "unsubscribe"):
            topics = args if isinstance(args, list) else [args]
            for topic in topics:
                if op == "subscribe":
                    self._subscribe(conn, str(topic), request)
                else:
                    table, _, symbol = str(topic).partition(":")
                    conn.subs.discard((table, symbol or None))
                    if not any(t == table for t, _ in conn.subs):
                        self._table_conns.get(table, set()).discard(conn)
                    self._send(conn, {"success": True, "unsubscribe": topic, "request": request})
        elif op == "cancelAllAfter":
            if conn.account is None:
                self._ws_error(conn, 401, "You must be authenticated to use cancelAllAfter.",
                               request)
                return
            timeout = args[0] if isinstance(args, list) else args
            try:
                result = self.engine.cancel_all_after(conn.account.id, int(timeout))
            except (TypeError, ValueError, EngineError):
                self._ws_error(conn, 400, "Invalid timeout", request)
                return
            self._send(conn, {**result, "request": request})
        else:
            self._ws_error(conn, 400, f"Unknown or unsupported op: {op}", request)

    async def _login(self, conn: _Conn, key: str, expires: str, signature: str,
                     request: Any) -> None:
        if self.ws_auth_delay:
            await asyncio.sleep(self.ws_auth_delay)
        if conn.closed:
            return
        try:
            account = self._verify(key, expires, signature, "GET", "/realtime", b"")
        except ApiError as e:
            self._ws_error(conn, e.status, e.message, request)
            return
        self._set_account(conn, account)
        self._send(conn, {"success": True, "request": request})

    def _subscribe(self, conn: _Conn, topic: str, request: Any) -> None:
        table, _, symbol = topic.partition(":")
        if table not in KEYS:
            self._ws_error(conn, 400, f"Unknown table: {table}", request)
            return
        if symbol and symbol not in self.engine.instruments:
            self._ws_error(conn, 400, f"Unknown symbol: {symbol}", request)
            return
        if table in PRIVATE_TABLES and conn.account is None:
            self._ws_error(
                conn, 401, f"You must be authenticated to subscribe to {table}.", request
            )
            return
        if table in PRIVATE_TABLES and self.faults.ws._take_refusal(table):
            self._ws_error(conn, 503, f"Unable to subscribe to {topic} right now. "
                           "Please try again.", request)
            return
        sub = (table, symbol or None)
        if sub in conn.subs:
            self._ws_error(conn, 400, f"You are already subscribed to this topic: {topic}",
                           request)
            return
        conn.subs.add(sub)
        self._table_conns.setdefault(table, set()).add(conn)
        self._send(conn, {"success": True, "subscribe": topic, "request": request})
        # BitMEX leaves empty fields out of a partial rather than sending nulls.
        rows = [{k: v for k, v in r.items() if v is not None}
                for r in self._snapshot(conn, table, symbol or None)]
        flt: dict[str, Any] = {}
        if conn.account is not None and table in PRIVATE_TABLES:
            flt["account"] = conn.account.id
        if symbol:
            flt["symbol"] = symbol
        self._send(conn, {
            "table": table,
            "action": "partial",
            "keys": KEYS[table],
            "types": _types(rows),
            "foreignKeys": {"symbol": "instrument"} if table not in ("instrument", "margin",
                                                                      "wallet") else {},
            "attributes": {k: "grouped" for k in KEYS[table]},
            "filter": flt,
            "data": rows,
        })

    def _snapshot(self, conn: _Conn, table: str, symbol: str | None) -> list[Row]:
        e = self.engine
        acct = conn.account.id if conn.account is not None else None
        rows: list[Row]
        if table == "instrument":
            rows = [e.instrument_row(i) for i in e.instruments.values()]
        elif table == "trade":
            rows = e.trades(symbol)[-100:]
        elif table == "quote":
            rows = [e.quote_row(i) for i in e.instruments.values()]
        elif table == "liquidation":
            rows = [dict(r) for r in e.liquidations.values()]
        elif table == "funding":
            rows = e.fundings[-50:]
        elif acct is None:
            rows = []
        elif table == "order":
            rows = e.open_order_rows(acct)
        elif table == "execution":
            rows = e.execution_rows(acct)[-100:]
        elif table == "position":
            rows = e.position_rows(acct)
        elif table == "margin":
            rows = e.margins(acct)
        else:
            rows = [e.wallet_row(acct, c) for c in ("XBt", "USDt")]
        if symbol:
            rows = [r for r in rows if r.get("symbol") == symbol]
        return rows

    def _on_event(self, event: Event) -> None:
        # Private events go only to that account's streams (thousands of streams share
        # this loop in the benchmarks).
        conns = (self._table_conns.get(event.table, set()) if event.account is None
                 else self._account_conns.get(event.account, set()))
        for conn in list(conns):
            wanted = [sym for (table, sym) in conn.subs if table == event.table]
            if not wanted:
                continue
            if None in wanted:
                rows = event.data
            else:
                rows = [r for r in event.data if r.get("symbol") in wanted]
            if rows:
                self._send(conn, {"table": event.table, "action": event.action, "data": rows})
