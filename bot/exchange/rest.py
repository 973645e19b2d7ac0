"""BitMEX REST transport: signing, pacing by the key's rate limit, retries by error type.

One `aiohttp.ClientSession` per process is passed in (house rule 6). Every
request is built and signed once per attempt by `auth.build_request`, and the
exact signed path and body bytes are what go on the wire (`yarl.URL(...,
encoded=True)`, body as bytes), so aiohttp never re-encodes what was signed.
HTTP failures become the project's errors here (`map_http_error`, house rule 5);
the endpoint methods are `bot.exchange.client.BitmexClient`'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
from yarl import URL

from bot.errors import (
    AuthError,
    DuplicateClOrdID,
    ExchangeError,
    ExchangeUnreachable,
    InsufficientBalance,
    NotFound,
    NotPlaced,
    OutcomeUnknown,
    Overloaded,
    PermissionDenied,
    RateLimited,
    Rejected,
    Temporary,
)
from bot.exchange import auth
from bot.exchange.timesync import ExchangeClock

log = logging.getLogger(__name__)

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


class MaybeSent(ExchangeUnreachable):
    """The connection failed after the request went out: it may have been executed."""


class RestTransport:
    """Signed requests on one BitMEX key (or the public API when key is None): the key's
    rate budget, the exchange's clock, one attempt and the retries by error type."""

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
        expires_in: int = auth.DEFAULT_EXPIRES_IN,
        rate_reserve: int = 2,
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
        self.expires_in = expires_in
        self.rate_reserve = rate_reserve
        self.on_error = on_error  # every failed attempt, for the metrics (bot/metrics.py)
        # Test-only: lets a test alter a request after it was signed (tampering).
        self.after_sign: Callable[[auth.SignedRequest], auth.SignedRequest] | None = None
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        # This host's UNIX seconds; tests drive it. api-expires and every "can it still
        # arrive" deadline are in exchange time (`exchange_time`), learned from answers.
        self.clock: Callable[[], float] = time.time
        self.exchange_clock = ExchangeClock()

    def __repr__(self) -> str:  # never show the secret
        return f"{type(self).__name__}({self.origin!r}, key={'set' if self.key else None})"

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
            raise ExchangeUnreachable(f"{what}: cannot connect to the exchange") from e
        except TimeoutError as e:
            raise MaybeSent(f"{what}: no answer from the exchange (timeout)") from e
        except (aiohttp.ClientError, OSError) as e:
            if not sent:
                raise MaybeSent(f"{what}: connection lost ({type(e).__name__})") from e
            raise MaybeSent(f"{what}: answer cut off ({type(e).__name__})") from e
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
            except MaybeSent as e:
                if not idempotent:
                    raise OutcomeUnknown(e.message) from e
                last = e
            except Temporary as e:
                if not idempotent and not isinstance(e, Overloaded | ExchangeUnreachable):
                    raise OutcomeUnknown(e.message, status=e.status) from e
                last = e
            if attempt + 1 < self.retry.max_attempts:
                await self.sleep(self.retry.delay(attempt, overloaded=isinstance(last, Overloaded)))
        assert last is not None
        raise last


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
