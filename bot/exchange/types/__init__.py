"""Typed results of the exchange boundary and the `Exchange` protocol.

Rows from BitMEX are parsed with `parse_float=Decimal`, so prices arrive here as
Decimal and money as int (XBt / USDt); nothing in this package uses float.

Along its seams: `values` (currency units and money, row fields, timestamps), `market`
(instruments, tickers, buckets, liquidations), `account` (orders, fills, positions,
margin, key permissions), `protocol` (`Exchange`). Import from here: the names stay
where they always were.
"""

from bot.exchange.types.account import (
    ApiKeyInfo,
    CancelResult,
    Execution,
    Margin,
    Order,
    OrderRequest,
    Position,
)
from bot.exchange.types.market import TRADEABLE_TYPES, Candle, Instrument, Kind, Liquidation, Ticker
from bot.exchange.types.protocol import Exchange
from bot.exchange.types.values import (
    CURRENCY_SCALE,
    display_currency,
    format_money,
    format_price,
    format_time,
    from_unit,
    known_currency,
    parse_time,
    register_assets,
    to_unit,
)
from bot.side import Side

__all__ = [
    "CURRENCY_SCALE",
    "TRADEABLE_TYPES",
    "ApiKeyInfo",
    "CancelResult",
    "Candle",
    "Exchange",
    "Execution",
    "Instrument",
    "Kind",
    "Liquidation",
    "Margin",
    "Order",
    "OrderRequest",
    "Position",
    "Side",
    "Ticker",
    "display_currency",
    "format_money",
    "format_price",
    "format_time",
    "from_unit",
    "known_currency",
    "parse_time",
    "register_assets",
    "to_unit",
]
