"""An aiohttp server that speaks BitMEX's REST API v1 and realtime WebSocket.

The client in bot/exchange must work unchanged against this server and the real
exchange, so routes, field names, error bodies, status codes and headers follow
BitMEX (see shared BITMEX.md). Everything runs in the caller's event loop;
state lives in the `Engine`, which tests drive directly (`simulator.engine`).

`BitmexSimulator` is assembled from one class per area, all on the `Gateway`
(`gateway.py`: state, middleware, authentication): `rest_market.py` (public REST),
`rest_orders.py` and `rest_account.py` (private REST), `realtime.py` (the WebSocket).
Beside them: `wire.py` (JSON, error bodies, signing), `queries.py` (list-call
semantics), `limits.py` (rate limits) and `faults.py` (failure injection).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterable
from decimal import Decimal

from aiohttp import web

from bot.matching import Account, Engine
from bot.sandbox.bitmex.faults import Faults
from bot.sandbox.bitmex.limits import RateLimitConfig
from bot.sandbox.bitmex.realtime import Realtime
from bot.sandbox.bitmex.rest_account import AccountRoutes
from bot.sandbox.bitmex.rest_market import MarketRoutes
from bot.sandbox.bitmex.rest_orders import OrderRoutes
from bot.sandbox.bitmex.wire import OBSERVERS, dumps, sign

# What tests and the bench import from here (the simulator's public face).
__all__ = ["OBSERVERS", "BitmexSimulator", "Faults", "RateLimitConfig", "dumps", "sign"]


class BitmexSimulator(MarketRoutes, OrderRoutes, AccountRoutes, Realtime):
    """The simulated exchange on 127.0.0.1: REST under /api/v1 and WS at /realtime."""

    def __init__(
        self, engine: Engine | None = None, rate_limit: RateLimitConfig | None = None
    ) -> None:
        super().__init__(engine, rate_limit)
        self.faults._closer = self._close_sockets
        self.app = self._make_app()

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
