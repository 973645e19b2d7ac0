"""Public REST: instruments, assets, trades and candles (signed or not, as on BitMEX)."""

from __future__ import annotations

from aiohttp import web

from bot.matching import ASSETS
from bot.sandbox.bitmex.gateway import Gateway
from bot.sandbox.bitmex.queries import as_bool, list_query
from bot.sandbox.bitmex.wire import ApiError


class MarketRoutes(Gateway):
    """GET /instrument, /instrument/active, /wallet/assets, /trade, /trade/bucketed."""

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
        rows = self.engine.bucketed(str(symbol), str(bin_size), as_bool(params.get("partial")))
        return self._json(list_query(rows, params, keep=("symbol",)))
