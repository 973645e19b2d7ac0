"""The `Exchange` protocol: every call the bot makes on an account."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from bot.exchange.types.account import ApiKeyInfo, CancelResult, Execution, Margin, Order, Position
from bot.exchange.types.market import Candle, Instrument, Ticker
from bot.side import Side


@runtime_checkable
class Exchange(Protocol):
    """Every call the bot makes on an account; BitmexClient and PaperExchange both fit."""

    async def instruments(self, *, refresh: bool = False) -> list[Instrument]: ...

    async def instrument(self, symbol: str) -> Instrument: ...

    async def round_price(self, symbol: str, price: Decimal) -> Decimal: ...

    async def round_qty(self, symbol: str, qty: Decimal) -> Decimal: ...

    async def ticker(self, symbol: str) -> Ticker: ...

    async def place_order(
        self,
        symbol: str,
        side: Side,
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
    ) -> Order: ...

    async def amend_order(
        self,
        order_id: str | None = None,
        *,
        orig_cl_ord_id: str | None = None,
        qty: Decimal | int | None = None,
        price: Decimal | None = None,
        stop_px: Decimal | None = None,
        peg_offset: Decimal | None = None,
    ) -> Order: ...

    async def cancel_orders(
        self,
        order_ids: Sequence[str] = (),
        *,
        cl_ord_ids: Sequence[str] = (),
    ) -> list[CancelResult]: ...

    async def cancel_all(self, symbol: str | None = None) -> list[Order]: ...

    async def cancel_all_after(self, timeout_ms: int) -> None: ...

    async def open_orders(self, symbol: str | None = None) -> list[Order]: ...

    async def order_by_cl_ord_id(self, cl_ord_id: str) -> Order | None: ...

    async def positions(self) -> list[Position]: ...

    async def set_leverage(self, symbol: str, leverage: Decimal | int) -> Position: ...

    async def margins(self) -> list[Margin]: ...

    async def executions(
        self,
        symbol: str | None = None,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        count: int = 100,
    ) -> list[Execution]: ...

    async def bucketed(
        self,
        symbol: str,
        bin_size: str = "1h",
        *,
        count: int = 100,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        partial: bool = False,
    ) -> list[Candle]: ...

    async def api_key_permissions(self) -> ApiKeyInfo: ...
