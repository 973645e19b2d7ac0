"""Private REST, orders: place, amend, cancel, cancel all, the dead-man's switch."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from decimal import Decimal

from aiohttp import web

from bot.sandbox.bitmex.gateway import Gateway
from bot.sandbox.bitmex.queries import list_query
from bot.sandbox.bitmex.wire import OVERLOADED, ApiError


class OrderRoutes(Gateway):
    """GET/POST/PUT/DELETE /order, DELETE /order/all, POST /order/cancelAllAfter."""

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
