"""BitMEX REST client: signing, error mapping, retries by error type, rate limits.

One `aiohttp.ClientSession` per process is passed in (house rule 6). Every
request is built and signed once per attempt by `auth.build_request`, and the
exact signed path and body bytes are what go on the wire (`yarl.URL(...,
encoded=True)`, body as bytes), so aiohttp never re-encodes what was signed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp
from yarl import URL

from bot.errors import (
    AuthError,
    DuplicateClOrdID,
    ExchangeError,
    InsufficientBalance,
    NetworkError,
    NotFound,
    NotPlaced,
    OutcomeUnknown,
    Overloaded,
    PermissionDenied,
    RateLimited,
    Rejected,
    Temporary,
)
from bot.exchange import auth, contracts
from bot.exchange.timesync import ExchangeClock
from bot.exchange.types import (
    ApiKeyInfo,
    CancelResult,
    Candle,
    Execution,
    Instrument,
    Margin,
    Order,
    Position,
    Ticker,
    format_time,
    known_currency,
    register_assets,
)

log = logging.getLogger(__name__)

MAINNET = "https://www.bitmex.com"
# api-expires of order writes: short, because it bounds how long a request whose answer
# was lost can still reach the engine - and so how long its lookup must go on.
ORDER_EXPIRES_IN = 15
SETTLE_MARGIN = 5.0  # seconds past an order's api-expires before "not found" is final
TESTNET = "https://testnet.bitmex.com"


def new_cl_ord_id(prefix: str = "tg") -> str:
    """The one clOrdID maker: random, so a retried POST or a lookup after a lost answer
    finds this order and no other. 23 chars for "tg" leaves room within BitMEX's 36 for
    the suffixes of a card's exits (":sl", ":tp9", see bot/trading/exits.py)."""
    return f"{prefix}-{secrets.token_hex(10)}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff settings; tests shrink the delays, production keeps ≥ 500 ms for 503."""

    max_attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 8.0
    overload_delay: float = 0.5  # BitMEX asks for ≥ 500 ms after a 503
    max_rate_limit_wait: float = 65.0  # longer waits are reported, not slept through
    jitter: float = 0.1
    lookup_delay: float = 0.5  # first pause between lookups of an order whose answer was lost
    max_lookup_delay: float = 2.0

    def delay(self, attempt: int, *, overloaded: bool = False) -> float:
        base = min(self.max_delay, self.base_delay * (2**attempt))
        if overloaded:
            base = max(base, self.overload_delay)
        return base * (1 + random.uniform(0, self.jitter))


# BitMEX's 10/s second layer covers exactly these routes (everything else only counts
# against the per-minute bucket).
SECOND_LAYER = frozenset({
    ("POST", "/order"), ("PUT", "/order"), ("DELETE", "/order"),
    ("POST", "/order/bulk"), ("PUT", "/order/bulk"), ("DELETE", "/order/all"),
    ("POST", "/position/leverage"), ("POST", "/position/isolate"),
    ("POST", "/position/transferMargin"),
})


@dataclass
class RateState:
    """A mirror of one key's budget on BitMEX (shared by every client of that key).

    The per-minute limit is a token bucket refilled at limit/60 tokens a second, so the
    mirror is too: `tokens` is the last `x-ratelimit-remaining` seen, minus the requests
    sent or scheduled since, plus what has refilled since `at`.
    """

    limit: int | None = None
    remaining: int | None = None  # as last reported
    reset: float | None = None  # epoch seconds
    tokens: float | None = None
    at: float = 0.0  # monotonic time `tokens` was last brought up to date
    waiting: int = 0  # ordinary requests asleep for their token
    remaining_1s: int | None = None
    at_1s: float = 0.0  # monotonic time the 1 s figure was read

    def refill(self, now: float) -> float | None:
        if self.tokens is None or not self.limit:
            return None
        self.tokens = min(float(self.limit), self.tokens + (now - self.at) * self.limit / 60.0)
        self.at = now
        return self.tokens


class _MaybeSent(NetworkError):
    """The connection failed after the request went out: it may have been executed."""


# Errors after which the request certainly did not reach the matching engine.
_NOT_EXECUTED = (Overloaded, RateLimited)


class BitmexClient:
    """Typed calls on one BitMEX account (or the public API when key is None)."""

    # Keyed by (origin, api key): two clients of the same key share one budget.
    _rate_states: dict[tuple[str, str | None], RateState] = {}  # noqa: RUF012

    def __init__(
        self,
        base_url: str,
        key: str | None = None,
        secret: str | None = None,
        *,
        session: aiohttp.ClientSession,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        instrument_ttl: float = 60.0,
        expires_in: int = auth.DEFAULT_EXPIRES_IN,
        rate_reserve: int = 2,
        cl_ord_prefix: str = "tg",
        order_expires_in: int = ORDER_EXPIRES_IN,
        settle_margin: float = SETTLE_MARGIN,
        on_error: Callable[[ExchangeError], None] | None = None,
    ) -> None:
        origin = base_url.rstrip("/")
        if origin.endswith(auth.API_PREFIX):
            origin = origin[: -len(auth.API_PREFIX)]
        self.origin = origin
        self.key = key
        self._secret = secret
        self._session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 5.0))
        self.retry = retry or RetryPolicy()
        self.instrument_ttl = instrument_ttl
        self.expires_in = expires_in
        self.rate_reserve = rate_reserve
        self.cl_ord_prefix = cl_ord_prefix
        self.order_expires_in = order_expires_in
        self.settle_margin = settle_margin
        self.on_error = on_error  # every failed attempt, for the metrics (bot/metrics.py)
        self._instruments: dict[str, Instrument] = {}
        self._instruments_at = float("-inf")
        self._instruments_lock = asyncio.Lock()
        # Test-only: lets a test alter a request after it was signed (tampering).
        self.after_sign: Callable[[auth.SignedRequest], auth.SignedRequest] | None = None
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        # This host's UNIX seconds; tests drive it. api-expires and every "can it still
        # arrive" deadline are in exchange time (`exchange_time`), learned from answers.
        self.clock: Callable[[], float] = time.time
        self.exchange_clock = ExchangeClock()

    def __repr__(self) -> str:  # never show the secret
        return f"BitmexClient({self.origin!r}, key={'set' if self.key else None})"

    def exchange_time(self) -> float:
        """BitMEX's clock now (UNIX s), as best known: what api-expires is signed in."""
        return self.clock() + self.exchange_clock.offset

    def exchange_time_at_least(self, local: float | None = None) -> float:
        """A lower bound of BitMEX's clock at local time `local` (default now): a deadline
        is only past once this is past it. Until an answer taught us the offset, the
        bound is wide (the host's clock is not trusted)."""
        at = self.clock() if local is None else local
        return at + self.exchange_clock.offset - self.exchange_clock.error

    @property
    def rate(self) -> RateState:
        return self._rate_states.setdefault((self.origin, self.key), RateState())

    def forget_rate_state(self) -> None:
        """Drop this key's rate state: a refused key must not leave memory behind."""
        self._rate_states.pop((self.origin, self.key), None)

    # --- transport -----------------------------------------------------------------

    async def _respect_rate_limit(self, second_layer: bool, *, priority: bool = False) -> None:
        """Take a token from the key's bucket, sleeping only as long as it takes to refill
        (about 0.5 s a token at 120/min), instead of running into a 429 (repeated 429s
        get the key banned for an hour).

        Ordinary requests leave `rate_reserve` tokens untouched and queue behind each
        other; a `priority` request (the dead-man's switch refresh, which cancels every
        order if it is late) may spend the reserve and does not queue behind them.
        """
        st = self.rate
        now = time.monotonic()
        tokens = st.refill(now)
        if tokens is not None and st.limit:
            per_token = 60.0 / st.limit
            if priority:
                # Tokens promised to sleeping requests are still in the bucket right now.
                free = tokens + st.waiting
                wait = max(0.0, (1.0 - free) * per_token)
            else:
                wait = max(0.0, (self.rate_reserve + 1.0 - tokens) * per_token)
            st.tokens = tokens - 1.0  # this request's token, taken now or when it wakes
            if wait > 0:
                wait = min(wait, self.retry.max_rate_limit_wait)
                log.info("rate budget low (%.1f left), waiting %.1fs", tokens, wait)
                queued = 0 if priority else 1  # a priority call is not in the queue
                st.waiting += queued
                try:
                    await self.sleep(wait)
                finally:
                    st.waiting -= queued
        if second_layer and st.remaining_1s is not None:
            if st.remaining_1s <= 0:
                wait = 1.0 - (time.monotonic() - st.at_1s)
                st.remaining_1s = None
                if wait > 0:
                    await self.sleep(wait)
            else:
                st.remaining_1s -= 1  # concurrent order writes share the last figure

    def _note_rate(self, headers: Mapping[str, str]) -> None:
        st = self.rate
        try:
            if "x-ratelimit-limit" in headers:
                st.limit = int(headers["x-ratelimit-limit"])
            if "x-ratelimit-remaining" in headers:
                st.remaining = int(headers["x-ratelimit-remaining"])
                # The exchange's count is the truth; requests still in flight or asleep
                # were already taken from the mirror and stay taken.
                st.tokens = float(st.remaining) - st.waiting
                st.at = time.monotonic()
            if "x-ratelimit-reset" in headers:
                st.reset = float(headers["x-ratelimit-reset"])
            if "x-ratelimit-remaining-1s" in headers:
                st.remaining_1s = int(headers["x-ratelimit-remaining-1s"])
                st.at_1s = time.monotonic()
        except ValueError:
            log.debug("unparseable rate-limit headers ignored")

    def _build(
        self,
        verb: str,
        endpoint: str,
        query: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
        expires: int | None = None,
    ) -> auth.SignedRequest:
        req = auth.build_request(
            verb, endpoint, query=query, body=body, key=self.key, secret=self._secret,
            expires=expires if expires is not None
            else auth.expires_at(self.exchange_time(), expires_in=self.expires_in),
        )
        if self.after_sign is not None:
            req = self.after_sign(req)
        return req

    async def _send_once(self, verb: str, endpoint: str, **kw: Any) -> Any:
        """One attempt (`_attempt`), its failure reported to `on_error` first."""
        try:
            return await self._attempt(verb, endpoint, **kw)
        except ExchangeError as e:
            if self.on_error is not None:
                self.on_error(e)
            raise

    async def _attempt(
        self,
        verb: str,
        endpoint: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        expires_in: int | None = None,
        send_by: float | None = None,
        signed: list[int] | None = None,
        priority: bool = False,
    ) -> Any:
        """One attempt; returns the decoded JSON or raises a bot.errors type.

        `expires_in` overrides the request's lifetime, capped at `send_by` (UNIX s); the
        api-expires used is appended to `signed`. It is computed after any rate-limit
        wait, so a request is never sent already (nearly) expired. All of it is exchange
        time; a request BitMEX calls expired did nothing and proves our idea of its clock
        wrong: the clock is learned again and the request signed afresh, once."""
        for resign in (True, False):
            try:
                return await self._attempt_signed(
                    verb, endpoint, query=query, body=body, expires_in=expires_in,
                    send_by=send_by, signed=signed, priority=priority)
            except AuthError as e:
                if not resign or not _expired(e):
                    raise
                log.info("%s %s: BitMEX called it expired; re-learning its clock", verb,
                         endpoint)
        raise AssertionError("unreachable")

    async def _attempt_signed(
        self,
        verb: str,
        endpoint: str,
        *,
        query: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
        expires_in: int | None,
        send_by: float | None,
        signed: list[int] | None,
        priority: bool,
    ) -> Any:
        await self._respect_rate_limit((verb, endpoint) in SECOND_LAYER, priority=priority)
        expires = None
        if expires_in is not None:
            now = self.exchange_time()
            expires = auth.expires_at(now, expires_in=expires_in)
            if send_by is not None:
                expires = min(expires, int(send_by))
                if expires <= now + 1:
                    raise NotPlaced(f"{verb} {endpoint}: not sent, its time to be sent "
                                    "had run out", looked_up=False)
            if signed is not None:
                signed.append(expires)
        req = self._build(verb, endpoint, query, body, expires)
        url = URL(self.origin + req.path, encoded=True)
        what = f"{verb} {endpoint}"
        sent = False
        sent_at = self.clock()
        try:
            async with self._session.request(
                verb, url, data=req.body.encode() if req.body else None,
                headers=req.headers, timeout=self.timeout,
            ) as resp:
                sent = True
                text = await resp.text()
                status = resp.status
                headers = resp.headers
        except aiohttp.ClientConnectorError as e:
            raise NetworkError(f"{what}: cannot connect to the exchange") from e
        except TimeoutError as e:
            raise _MaybeSent(f"{what}: no answer from the exchange (timeout)") from e
        except (aiohttp.ClientError, OSError) as e:
            if not sent:
                raise _MaybeSent(f"{what}: connection lost ({type(e).__name__})") from e
            raise _MaybeSent(f"{what}: answer cut off ({type(e).__name__})") from e
        self._note_rate(headers)
        if status == 401 and "has expired" in text:
            self.exchange_clock.forget()
        self.exchange_clock.note(headers.get("Date"), sent_at, self.clock())
        log.debug("%s -> %s", what, status)
        try:
            payload = json.loads(text, parse_float=Decimal) if text else None
        except ValueError:
            payload = None
        if 200 <= status < 300:
            if payload is None and text:
                raise Temporary(f"{what}: unreadable answer", status=status)
            return payload
        raise map_http_error(what, status, payload, text, headers)

    async def _call(
        self,
        verb: str,
        endpoint: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        idempotent: bool = True,
        expires_in: int | None = None,
        priority: bool = False,
    ) -> Any:
        """Send with retries by error type. Idempotent calls retry any Temporary;
        the others only what certainly never reached the engine (503, 429, no connect)."""
        last: ExchangeError | None = None
        for attempt in range(self.retry.max_attempts):
            try:
                return await self._send_once(verb, endpoint, query=query, body=body,
                                             expires_in=expires_in, priority=priority)
            except RateLimited as e:
                if e.retry_after > self.retry.max_rate_limit_wait:
                    raise
                last = e
                await self.sleep(e.retry_after)
                continue
            except _MaybeSent as e:
                if not idempotent:
                    raise OutcomeUnknown(e.message) from e
                last = e
            except Temporary as e:
                if not idempotent and not isinstance(e, Overloaded | NetworkError):
                    raise OutcomeUnknown(e.message, status=e.status) from e
                last = e
            if attempt + 1 < self.retry.max_attempts:
                await self.sleep(self.retry.delay(attempt, overloaded=isinstance(last, Overloaded)))
        assert last is not None
        raise last

    # --- instruments -----------------------------------------------------------------

    async def instruments(self, *, refresh: bool = False) -> list[Instrument]:
        """Active instruments, cached for `instrument_ttl` seconds."""
        async with self._instruments_lock:
            fresh = time.monotonic() - self._instruments_at < self.instrument_ttl
            if refresh or not fresh or not self._instruments:
                rows = await self._call("GET", "/instrument/active")
                self._instruments = {r["symbol"]: Instrument.from_row(r) for r in rows or []}
                self._instruments_at = time.monotonic()
            return list(self._instruments.values())

    async def instrument(self, symbol: str) -> Instrument:
        await self.instruments()
        inst = self._instruments.get(symbol)
        if inst is None:
            # A symbol listed since the last refresh, or a typo: ask once more.
            await self.instruments(refresh=True)
            inst = self._instruments.get(symbol)
        if inst is None:
            raise NotFound(f"Unknown instrument {symbol}", status=404)
        return inst

    async def round_price(self, symbol: str, price: Decimal) -> Decimal:
        return contracts.round_price(await self.instrument(symbol), price).value

    async def round_qty(self, symbol: str, qty: Decimal) -> Decimal:
        return contracts.round_qty(await self.instrument(symbol), qty).value

    async def ticker(self, symbol: str) -> Ticker:
        rows = await self._call("GET", "/instrument", query={"symbol": symbol, "count": 1})
        if not rows:
            raise NotFound(f"Unknown instrument {symbol}", status=404)
        return Ticker.from_instrument(Instrument.from_row(rows[0]))

    # --- orders ----------------------------------------------------------------------

    async def place_order(
        self,
        symbol: str,
        side: str,
        qty: Decimal | int | None,
        ord_type: str = "Limit",
        price: Decimal | None = None,
        *,
        stop_px: Decimal | None = None,
        time_in_force: str | None = None,
        exec_inst: Sequence[str] = (),
        cl_ord_id: str | None = None,
        text: str | None = None,
        send_by: float | None = None,
    ) -> Order:
        """Place one order, exactly once.

        BitMEX keeps a clOrdID unique only among OPEN orders, so re-sending a market
        order that already filled fills it again. Hence: only an attempt that certainly
        never reached the engine (503, 429, no connection) is sent again. After one that
        may have (timeout, connection cut, other 5xx) nothing more is sent: the order is
        looked up by clOrdID until it is found, or until its api-expires (short for
        orders) plus a margin has passed - after that BitMEX can no longer take it, and
        `NotPlaced` says so. A lookup that keeps failing ends in `OutcomeUnknown`.

        `send_by` (UNIX s, exchange time - see `exchange_time`): no attempt is signed to
        be valid later than this, so whoever stored it knows when the order can no longer
        arrive (the crash-settlement path).
        """
        cl = cl_ord_id or new_cl_ord_id(self.cl_ord_prefix)
        body: dict[str, Any] = {
            "symbol": symbol,
            "side": side,
            "orderQty": _num(qty),
            "ordType": ord_type,
            "price": price,
            "stopPx": stop_px,
            "timeInForce": time_in_force,
            "execInst": ",".join(exec_inst) if exec_inst else None,
            "clOrdID": cl,
            "text": text,
        }
        last: ExchangeError | None = None
        for attempt in range(self.retry.max_attempts):
            overloaded = False
            signed: list[int] = []
            try:
                row = await self._send_once("POST", "/order", body=body,
                                            expires_in=self.order_expires_in,
                                            send_by=send_by, signed=signed)
                return Order.from_row(row)
            except DuplicateClOrdID:
                # An OPEN order holds this clOrdID: ours, if an earlier run sent it.
                found = await self._settle(cl) if attempt else None
                if found is not None:
                    return found
                raise
            except RateLimited as e:
                if e.retry_after > self.retry.max_rate_limit_wait:
                    raise
                last = e
                await self.sleep(e.retry_after)
                continue
            except Overloaded as e:
                last, overloaded = e, True
            except _MaybeSent as e:
                return await self.await_order(cl, signed[-1], cause=e)
            except NetworkError as e:  # could not connect: nothing went out
                last = e
            except Temporary as e:
                # A 500/502 may come after the engine took the order.
                return await self.await_order(cl, signed[-1], cause=e)
            if attempt + 1 < self.retry.max_attempts:
                await self.sleep(self.retry.delay(attempt, overloaded=overloaded))
        assert last is not None
        raise last

    async def await_order(self, cl_ord_id: str, expires: float,
                          cause: ExchangeError | None = None) -> Order:
        """The fate of an order sent with `api-expires` = `expires` whose answer was lost:
        look it up until found (the order), or until a lookup made after expires +
        margin finds nothing (`NotPlaced`); lookups failing to the end: `OutcomeUnknown`.
        "After" by BitMEX's clock, at its earliest (`exchange_time_at_least`): a host
        clock running ahead must not end the wait while the order can still arrive."""
        deadline = expires + self.settle_margin
        delay = self.retry.lookup_delay
        why = f" ({cause.message})" if cause is not None else ""
        while True:
            asked_at = self.clock()
            try:
                found = await self.order_by_cl_ord_id(cl_ord_id)
            except ExchangeError as e:
                # Judged after the answer: it may have taught us BitMEX's clock.
                if self.exchange_time_at_least(asked_at) > deadline:
                    raise OutcomeUnknown(
                        f"order {cl_ord_id}: outcome unknown and lookup failed{why} "
                        f"({e.message})") from e
            else:
                if found is not None:
                    return found
                if self.exchange_time_at_least(asked_at) > deadline:
                    raise NotPlaced(f"order {cl_ord_id}: not on the exchange after its "
                                    f"api-expires passed{why}")
            await self.sleep(delay)
            delay = min(delay * 2, self.retry.max_lookup_delay)

    async def _settle(self, cl_ord_id: str) -> Order | None:
        """Look an order up after an unknown outcome; failure to look is itself unknown."""
        try:
            return await self.order_by_cl_ord_id(cl_ord_id)
        except ExchangeError as e:
            raise OutcomeUnknown(
                f"order {cl_ord_id}: outcome unknown and lookup failed ({e.message})"
            ) from e

    async def amend_order(
        self,
        order_id: str | None = None,
        *,
        orig_cl_ord_id: str | None = None,
        qty: Decimal | int | None = None,
        price: Decimal | None = None,
        stop_px: Decimal | None = None,
    ) -> Order:
        """Amend by orderID or origClOrdID; retried only when it never reached the engine."""
        if not order_id and not orig_cl_ord_id:
            raise ValueError("amend needs order_id or orig_cl_ord_id")
        body = {
            "orderID": order_id,
            "origClOrdID": orig_cl_ord_id if not order_id else None,
            "orderQty": _num(qty),
            "price": price,
            "stopPx": stop_px,
        }
        row = await self._call("PUT", "/order", body=body, idempotent=False,
                               expires_in=self.order_expires_in)
        return Order.from_row(row)

    async def cancel_orders(
        self, order_ids: Sequence[str] = (), *, cl_ord_ids: Sequence[str] = ()
    ) -> list[CancelResult]:
        """Cancel several orders; a row that could not be cancelled carries its error."""
        if not order_ids and not cl_ord_ids:
            return []
        body: dict[str, Any] = {}
        if order_ids:
            body["orderID"] = list(order_ids)
        if cl_ord_ids:
            body["clOrdID"] = list(cl_ord_ids)
        rows = await self._call("DELETE", "/order", body=body)
        out: list[CancelResult] = []
        for r in rows or []:
            err = r.get("error")
            out.append(
                CancelResult(
                    order_id=str(r.get("orderID") or ""),
                    cl_ord_id=str(r.get("clOrdID") or ""),
                    error=str(err) if err else None,
                    order=Order.from_row(r) if r.get("ordStatus") else None,
                )
            )
        return out

    async def cancel_all(self, symbol: str | None = None) -> list[Order]:
        body = {"symbol": symbol} if symbol else None
        rows = await self._call("DELETE", "/order/all", body=body)
        return [Order.from_row(r) for r in rows or []]

    async def cancel_all_after(self, timeout_ms: int) -> None:
        """Dead-man's switch: cancel everything unless refreshed within timeout_ms (0 = off)."""
        # Re-arming with the same timeout is idempotent, so it may be retried freely.
        # Priority: a refresh stuck behind a burst of reads would let the switch fire.
        await self._call("POST", "/order/cancelAllAfter", body={"timeout": int(timeout_ms)},
                         priority=True)

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        query: dict[str, Any] = {"filter": {"open": True}, "count": 500}
        if symbol:
            query["symbol"] = symbol
        rows = await self._call("GET", "/order", query=query)
        return [Order.from_row(r) for r in rows or []]

    async def order_by_cl_ord_id(self, cl_ord_id: str) -> Order | None:
        rows = await self._call(
            "GET", "/order", query={"filter": {"clOrdID": cl_ord_id}, "count": 1, "reverse": True}
        )
        for r in rows or []:
            if r.get("clOrdID") == cl_ord_id:
                return Order.from_row(r)
        return None

    # --- account ---------------------------------------------------------------------

    async def positions(self) -> list[Position]:
        rows = await self._call("GET", "/position")
        return [Position.from_row(r) for r in rows or []]

    async def set_leverage(self, symbol: str, leverage: Decimal | int) -> Position:
        """Isolated leverage 0.01–100, or 0 for cross. Absolute, so safe to retry."""
        row = await self._call(
            "POST", "/position/leverage", body={"symbol": symbol, "leverage": _num(leverage)}
        )
        return Position.from_row(row)

    async def margins(self) -> list[Margin]:
        rows = await self._call("GET", "/user/margin", query={"currency": "all"})
        if isinstance(rows, dict):
            rows = [rows]
        margins = [Margin.from_row(r) for r in rows or []]
        if any(not known_currency(m.currency) for m in margins):
            await self.load_assets()
        return margins

    # Per origin: the asset list is public and the same for every key.
    _assets_loaded: dict[str, float] = {}  # noqa: RUF012

    async def load_assets(self) -> None:
        """Currency scales from GET /wallet/assets, at most once every 10 minutes.

        A failure is not the balance's failure: the unknown currency is shown in raw
        units, labelled, instead of a guessed scale.
        """
        now = time.monotonic()
        if now - self._assets_loaded.get(self.origin, float("-inf")) < 600:
            return
        self._assets_loaded[self.origin] = now
        try:
            rows = await self._call("GET", "/wallet/assets")
        except ExchangeError as e:
            log.warning("currency scales unavailable: %s", e.message)
            return
        register_assets([r for r in rows or [] if isinstance(r, dict)])

    async def executions(
        self,
        symbol: str | None = None,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        count: int = 100,
    ) -> list[Execution]:
        """Fills from /execution/tradeHistory, oldest first."""
        query: dict[str, Any] = {
            "symbol": symbol,
            "startTime": format_time(start_time) if start_time else None,
            "endTime": format_time(end_time) if end_time else None,
            "count": min(count, 1000),
            "reverse": False if start_time else True,
        }
        rows = await self._call("GET", "/execution/tradeHistory", query=query)
        out = [Execution.from_row(r) for r in rows or []]
        if query["reverse"]:
            out.reverse()
        return out

    trade_history = executions

    async def bucketed(
        self,
        symbol: str,
        bin_size: str = "1h",
        *,
        count: int = 100,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        partial: bool = False,
    ) -> list[Candle]:
        """OHLCV buckets, oldest first; a bucket's timestamp is its END."""
        reverse = start_time is None
        query: dict[str, Any] = {
            "binSize": bin_size,
            "symbol": symbol,
            "partial": partial,
            "count": min(count, 1000),
            "reverse": reverse,
            "startTime": format_time(start_time) if start_time else None,
            "endTime": format_time(end_time) if end_time else None,
        }
        rows = await self._call("GET", "/trade/bucketed", query=query)
        out = [Candle.from_row(r) for r in rows or []]
        if reverse:
            out.reverse()
        return out

    async def api_key_permissions(self) -> ApiKeyInfo:
        """This key's own row of GET /apiKey, which lists every key of the account.

        Another key's row says nothing about this one (an older key may be the one with
        withdraw), so no own row is an error, never a fallback to the first row.
        """
        rows = await self._call("GET", "/apiKey")
        if isinstance(rows, dict):
            rows = [rows]
        rows = [r for r in rows or [] if isinstance(r, dict)]
        for r in rows:
            if r.get("id") == self.key:
                return ApiKeyInfo.from_row(r)
        if not rows:
            raise NotFound("BitMEX listed no API keys for this account", status=404)
        raise NotFound("this key is missing from the account's key list", status=404)


def _num(value: Decimal | int | None) -> Decimal | int | None:
    """Whole Decimals go out as JSON integers (orderQty must be an int on BitMEX)."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


_INSUFFICIENT = (
    "Not enough available balance for this order. Lower the size or leverage, "
    "or add funds. (Exchange: {msg})"
)


def _expired(e: ExchangeError) -> bool:
    """BitMEX's 401 for an api-expires behind its clock: the request did nothing."""
    return e.status == 401 and "has expired" in e.message


def map_http_error(
    what: str, status: int, payload: Any, text: str, headers: Mapping[str, str]
) -> ExchangeError:
    """HTTP status + BitMEX error body -> the project's error type, keeping the message."""
    msg = ""
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict):
            msg = str(err.get("message") or err.get("name") or "")
        elif err:
            msg = str(err)
    if not msg:
        msg = text.strip()[:200] or f"HTTP {status}"
    lowered = msg.lower()
    if status == 400:
        if "duplicate clordid" in lowered:
            return DuplicateClOrdID(msg, status=status)
        if "insufficient" in lowered and "balance" in lowered:
            return InsufficientBalance(_INSUFFICIENT.format(msg=msg), status=status)
        return Rejected(msg, status=status)
    if status == 401:
        return AuthError(msg, status=status)
    if status == 403:
        return PermissionDenied(msg, status=status)
    if status == 404:
        return NotFound(msg, status=status)
    if status == 429:
        retry_after = _retry_after(headers)
        return RateLimited(msg, retry_after=retry_after, status=status)
    if status == 503:
        return Overloaded(msg, status=status)
    if status >= 500:
        return Temporary(f"{what}: {msg}", status=status)
    return Rejected(msg, status=status)


def _retry_after(headers: Mapping[str, str]) -> float:
    raw = headers.get("Retry-After") or headers.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    return 1.0


__all__ = ["MAINNET", "TESTNET", "BitmexClient", "RetryPolicy", "new_cl_ord_id"]
