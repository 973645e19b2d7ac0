"""The bot's only way to the market: BitMEX REST + WebSocket, or the paper engine.

Import the pieces from their modules (`bot.exchange.client`, `.stream`,
`.paper`, `.contracts`, `.types`); `paper` pulls in the simulator engine, so it
is not imported here. `client` is the endpoint calls over `rest` (the transport:
signing, pacing, retries); `stream` and `types` are packages cut along their seams,
re-exporting every name from the top.
"""

from bot.exchange.client import MAINNET, TESTNET, BitmexClient, RetryPolicy, new_cl_ord_id
from bot.exchange.stream import MarketStream, PrivateStream, ws_url_for
from bot.exchange.types import (
    ApiKeyInfo,
    CancelResult,
    Candle,
    Exchange,
    Execution,
    Instrument,
    Margin,
    Order,
    Position,
    Ticker,
    format_money,
)

__all__ = [
    "MAINNET",
    "TESTNET",
    "ApiKeyInfo",
    "BitmexClient",
    "CancelResult",
    "Candle",
    "Exchange",
    "Execution",
    "Instrument",
    "Margin",
    "MarketStream",
    "Order",
    "Position",
    "PrivateStream",
    "RetryPolicy",
    "Ticker",
    "format_money",
    "new_cl_ord_id",
    "ws_url_for",
]
