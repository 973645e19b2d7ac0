"""Paper trading: an in-process account on the matching engine (`bot.matching`).

Prices come from the real public market (feed a `MarketStream` in with
`follow(market)`, or call `set_price`), orders are matched by the same engine
the BitMEX simulator uses, and fills/orders/positions reach the same kind of
callbacks as `PrivateStream`. It implements the `Exchange` protocol, so the
rest of the bot cannot tell it from a `BitmexClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.errors import NotFound
from bot.exchange import contracts
from bot.exchange.client import map_http_error, new_cl_ord_id
from bot.exchange.stream import MarketStream, Table
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
    parse_time,
    register_assets,
)
from bot.matching import ASSETS, Clock, Engine, EngineError, Event

log = logging.getLogger(__name__)

Row = dict[str, Any]


class PaperExchange:
    """One paper account (1 XBT and 10,000 USDT by default) on an engine."""

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        xbt: Decimal | int = 1,
        usdt: Decimal | int = 10000,
        name: str | None = None,
    ) -> None:
        # Wall-clock time: paper orders live in the same time as the real market.
        self.engine = engine or Engine(Clock(follow_wall=True))
        key = name or f"paper-{uuid.uuid4().hex[:16]}"
        # A restored engine already holds this user's account: carry on with it.
        existing = self.engine.account_by_key(key)
        self.account = existing or self.engine.add_account(
            key, uuid.uuid4().hex, ("order", "orderCancel"), xbt=xbt, usdt=usdt
        )
        self.account_id = self.account.id
        self._tables: dict[str, Table] = {
            name: Table(name) for name in ("order", "execution", "position", "margin")
        }
        self._tables["order"].apply("partial", self.engine.order_rows(self.account_id))
        self._tables["position"].apply("partial", self.engine.position_rows(self.account_id))
        self._tables["margin"].apply("partial", self.engine.margins(self.account_id))
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._unlisten = self.engine.listen(self._on_event)
        self._on_fill: list[Callable[[Execution], Awaitable[None]]] = []
        self._on_order: list[Callable[[Order], Awaitable[None]]] = []
        self._on_position: list[Callable[[Position], Awaitable[None]]] = []
        self._on_margin: list[Callable[[Margin], Awaitable[None]]] = []

    # --- price feed ------------------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal) -> None:
        if symbol in self.engine.instruments:
            self.engine.set_mark(symbol, price)

    def follow(self, market: MarketStream) -> None:
        """Price the engine from the shared public stream's ticks."""

        async def tick(inst: Instrument) -> None:
            price = inst.mark_price or inst.last_price
            if price is not None:
                self.set_price(inst.symbol, price)

        market.on_tick(tick)

    # --- callbacks (same shape as PrivateStream) -------------------------------------

    def on_fill(self, cb: Callable[[Execution], Awaitable[None]]) -> None:
        self._on_fill.append(cb)

    def on_order(self, cb: Callable[[Order], Awaitable[None]]) -> None:
        self._on_order.append(cb)

    def on_position(self, cb: Callable[[Position], Awaitable[None]]) -> None:
        self._on_position.append(cb)

    def on_margin(self, cb: Callable[[Margin], Awaitable[None]]) -> None:
        self._on_margin.append(cb)

    def _on_event(self, event: Event) -> None:
        # The engine calls back synchronously; consumers are async, so queue it.
        if event.account != self.account_id or event.table not in self._tables:
            return
        self._queue.put_nowait(event)
        if self._pump is None or self._pump.done():
            with contextlib.suppress(RuntimeError):  # no running loop: drained later
                self._pump = asyncio.get_running_loop().create_task(self._run_pump())

    async def _run_pump(self) -> None:
        while not self._queue.empty():
            event = self._queue.get_nowait()
            try:
                await self._deliver(event)
            finally:
                self._queue.task_done()

    async def _deliver(self, event: Event) -> None:
        rows = self._tables[event.table].apply(event.action, event.data)
        for row in rows:
            try:
                if event.table == "execution":
                    ex = Execution.from_row(row)
                    if ex.is_fill:
                        for fill_cb in self._on_fill:
                            await fill_cb(ex)
                elif event.table == "order":
                    order = Order.from_row(row)
                    for order_cb in self._on_order:
                        await order_cb(order)
                elif event.table == "position":
                    pos = Position.from_row(row)
                    for pos_cb in self._on_position:
                        await pos_cb(pos)
                elif event.table == "margin":
                    margin = Margin.from_row(row)
                    for margin_cb in self._on_margin:
                        await margin_cb(margin)
            except Exception:
                log.exception("paper callback failed")

    async def drain(self) -> None:
        """Wait until every queued event has reached the callbacks."""
        if self._pump is None or self._pump.done():
            if not self._queue.empty():
                self._pump = asyncio.create_task(self._run_pump())
        await self._queue.join()

    async def close(self) -> None:
        self._unlisten()
        if self._pump is not None and not self._pump.done():
            await self.drain()

    # --- engine calls ------------------------------------------------------------------

    def _do(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except EngineError as e:
            raise map_http_error(
                what, e.status, {"error": {"message": e.message, "name": e.name}}, "", {}
            ) from e

    # --- Exchange protocol -------------------------------------------------------------

    async def instruments(self, *, refresh: bool = False) -> list[Instrument]:
        return [
            Instrument.from_row(self.engine.instrument_row(i))
            for i in self.engine.instruments.values()
        ]

    async def instrument(self, symbol: str) -> Instrument:
        inst = self.engine.instruments.get(symbol)
        if inst is None:
            raise NotFound(f"Unknown instrument {symbol}", status=404)
        return Instrument.from_row(self.engine.instrument_row(inst))

    async def round_price(self, symbol: str, price: Decimal) -> Decimal:
        return contracts.round_price(await self.instrument(symbol), price).value

    async def round_qty(self, symbol: str, qty: Decimal) -> Decimal:
        return contracts.round_qty(await self.instrument(symbol), qty).value

    async def ticker(self, symbol: str) -> Ticker:
        return Ticker.from_instrument(await self.instrument(symbol))

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
        params: Row = {
            "symbol": symbol,
            "side": side,
            "orderQty": int(qty) if qty is not None else None,
            "ordType": ord_type,
            "price": price,
            "stopPx": stop_px,
            # BitMEX's trailing stop: the signed offset, negative for a sell stop.
            "pegOffsetValue": peg_offset,
            "pegPriceType": "TrailingStopPeg" if peg_offset is not None else None,
            "timeInForce": time_in_force,
            "execInst": ",".join(exec_inst) if exec_inst else None,
            "clOrdID": cl_ord_id or new_cl_ord_id("paper"),
            "text": text,
        }
        params = {k: v for k, v in params.items() if v is not None}
        row = self._do("POST /order", lambda: self.engine.place_order(self.account_id, params))
        return Order.from_row(row)

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
        params: Row = {
            "orderID": order_id,
            "origClOrdID": orig_cl_ord_id if not order_id else None,
            "orderQty": int(qty) if qty is not None else None,
            "price": price,
            "stopPx": stop_px,
            "pegOffsetValue": peg_offset,
        }
        params = {k: v for k, v in params.items() if v is not None}
        row = self._do("PUT /order", lambda: self.engine.amend_order(self.account_id, params))
        return Order.from_row(row)

    async def cancel_orders(
        self, order_ids: Sequence[str] = (), *, cl_ord_ids: Sequence[str] = ()
    ) -> list[CancelResult]:
        rows = self._do(
            "DELETE /order",
            lambda: self.engine.cancel_orders(self.account_id, order_ids, cl_ord_ids),
        )
        return [
            CancelResult(
                order_id=str(r.get("orderID") or ""),
                cl_ord_id=str(r.get("clOrdID") or ""),
                error=str(r["error"]) if r.get("error") else None,
                order=Order.from_row(r) if r.get("ordStatus") else None,
            )
            for r in rows
        ]

    async def cancel_all(self, symbol: str | None = None) -> list[Order]:
        rows = self._do(
            "DELETE /order/all", lambda: self.engine.cancel_all(self.account_id, symbol)
        )
        return [Order.from_row(r) for r in rows]

    async def cancel_all_after(self, timeout_ms: int) -> None:
        self._do(
            "POST /order/cancelAllAfter",
            lambda: self.engine.cancel_all_after(self.account_id, int(timeout_ms)),
        )

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [
            Order.from_row(r)
            for r in self.engine.open_order_rows(self.account_id)
            if not symbol or r.get("symbol") == symbol
        ]

    async def order_by_cl_ord_id(self, cl_ord_id: str) -> Order | None:
        for r in self.engine.order_rows(self.account_id):
            if r.get("clOrdID") == cl_ord_id:
                return Order.from_row(r)
        return None

    async def positions(self) -> list[Position]:
        return [Position.from_row(r) for r in self.engine.position_rows(self.account_id)]

    async def set_leverage(self, symbol: str, leverage: Decimal | int) -> Position:
        row = self._do(
            "POST /position/leverage",
            lambda: self.engine.set_leverage(self.account_id, symbol, leverage),
        )
        return Position.from_row(row)

    async def margins(self) -> list[Margin]:
        register_assets(ASSETS)  # the simulated exchange's /wallet/assets
        return [Margin.from_row(r) for r in self.engine.margins(self.account_id)]

    async def executions(
        self,
        symbol: str | None = None,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        count: int = 100,
    ) -> list[Execution]:
        out: list[Execution] = []
        for r in self.engine.trade_history(self.account_id):
            if symbol and r.get("symbol") != symbol:
                continue
            ts = parse_time(r.get("timestamp"))
            if start_time and ts and ts < start_time:
                continue
            if end_time and ts and ts > end_time:
                continue
            out.append(Execution.from_row(r))
        return out[:count] if start_time else out[-count:]

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
        rows = self._do(
            "GET /trade/bucketed", lambda: self.engine.bucketed(symbol, bin_size, partial)
        )
        candles = [Candle.from_row(r) for r in rows]
        if start_time:
            candles = [c for c in candles if c.timestamp >= start_time]
        if end_time:
            candles = [c for c in candles if c.timestamp <= end_time]
        return candles[:count] if start_time else candles[-count:]

    async def api_key_permissions(self) -> ApiKeyInfo:
        return ApiKeyInfo(
            key_id=self.account.key_id,
            permissions=tuple(self.account.permissions),
            enabled=self.account.enabled,
            name="paper",
        )
