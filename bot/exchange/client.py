"""BitMEX REST client: the typed endpoint calls, and placing an order exactly once.

The transport under it (signing, rate limits, retries by error type, the exchange's
clock) is `bot.exchange.rest.RestTransport`; `RetryPolicy` and `map_http_error` are
re-exported here, where callers have always imported them from.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp

from bot.errors import (
    DuplicateClOrdID,
    ExchangeError,
    ExchangeUnreachable,
    NotFound,
    NotPlaced,
    OutcomeUnknown,
    Overloaded,
    RateLimited,
    Temporary,
)
from bot.exchange import auth, contracts
from bot.exchange.rest import MaybeSent, RestTransport, RetryPolicy, map_http_error
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


class InstrumentCatalog:
    """The active instruments of one BitMEX network, shared by every client on it.

    The list is public and the same for every account: kept per client, 1,000 connected
    accounts held 1,000 copies (BitMEX lists ~130 instruments) and each spent a request of
    its own rate limit a minute to refresh its copy. One catalog per network is loaded by
    whichever client asks first after it goes stale, and the others wait for that answer.
    """

    def __init__(self, ttl: float = 60.0, *, min_refresh: float = 5.0) -> None:
        self.ttl = ttl
        # An unknown symbol asks again, but a typo asked by many users in a burst is
        # answered from a list at most this old rather than a request each.
        self.min_refresh = min_refresh
        self.by_symbol: dict[str, Instrument] = {}
        self.loaded_at = float("-inf")
        self.loads = 0
        self._lock = asyncio.Lock()

    async def get(self, load: Callable[[], Awaitable[Any]], *, refresh: bool = False
                  ) -> dict[str, Instrument]:
        async with self._lock:
            age = time.monotonic() - self.loaded_at
            if age >= self.ttl or not self.by_symbol or (refresh and age >= self.min_refresh):
                rows = await load()
                self.by_symbol = {r["symbol"]: Instrument.from_row(r) for r in rows or []}
                self.loaded_at = time.monotonic()
                self.loads += 1
            return self.by_symbol


class BitmexClient(RestTransport):
    """Typed calls on one BitMEX account (or the public API when key is None)."""

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
        catalog: InstrumentCatalog | None = None,
    ) -> None:
        super().__init__(base_url, key, secret, session=session, timeout=timeout, retry=retry,
                         expires_in=expires_in, rate_reserve=rate_reserve, on_error=on_error)
        self.cl_ord_prefix = cl_ord_prefix
        self.order_expires_in = order_expires_in
        self.settle_margin = settle_margin
        # Shared with the network's other clients when given (bot/services.py does).
        self.catalog = catalog or InstrumentCatalog(instrument_ttl)

    # --- instruments -----------------------------------------------------------------

    async def instruments(self, *, refresh: bool = False) -> list[Instrument]:
        """Active instruments, cached for the catalog's ttl (60 s)."""
        return list((await self._catalog(refresh)).values())

    async def _catalog(self, refresh: bool = False) -> dict[str, Instrument]:
        return await self.catalog.get(lambda: self._call("GET", "/instrument/active"),
                                      refresh=refresh)

    async def instrument(self, symbol: str) -> Instrument:
        inst = (await self._catalog()).get(symbol)
        if inst is None:
            # A symbol listed since the last refresh, or a typo: ask once more.
            inst = (await self._catalog(refresh=True)).get(symbol)
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
        peg_offset: Decimal | None = None,
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
            # BitMEX's trailing stop: the signed offset, negative for a sell stop.
            "pegOffsetValue": peg_offset,
            "pegPriceType": "TrailingStopPeg" if peg_offset is not None else None,
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
            except MaybeSent as e:
                return await self.await_order(cl, signed[-1], cause=e)
            except ExchangeUnreachable as e:  # could not connect: nothing went out
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
        peg_offset: Decimal | None = None,
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
            "pegOffsetValue": peg_offset,
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


__all__ = ["MAINNET", "TESTNET", "BitmexClient", "RetryPolicy", "map_http_error", "new_cl_ord_id"]
