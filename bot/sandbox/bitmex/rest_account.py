"""Private REST, the account: positions and leverage, margin, wallet, user, executions, keys."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from bot.matching import iso
from bot.sandbox.bitmex.gateway import Gateway
from bot.sandbox.bitmex.queries import list_query
from bot.sandbox.bitmex.wire import ApiError


class AccountRoutes(Gateway):
    """GET /position, POST /position/leverage, /user/*, /execution*, /apiKey."""

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
