"""BitMEX's vocabulary as the engine speaks it: fees, order types, currencies and units.

Money follows the exchange: integers in the settlement currency's smallest unit
(XBt = 1e-8 XBT, USDt = 1e-6 USDT); `to_int` rounds an exact Decimal to one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

Row = dict[str, Any]
FUNDING_INTERVAL = timedelta(hours=8)
TAKER_FEE = Decimal("0.00075")
MAKER_FEE = Decimal("-0.0001")
PRICE_CAP = Decimal(100000000)
OPEN_STATUSES = ("New", "PartiallyFilled")
STOP_TYPES = ("Stop", "StopLimit", "MarketIfTouched", "LimitIfTouched")
ORD_TYPES = ("Market", "Limit", *STOP_TYPES)
TIME_IN_FORCE = ("GoodTillCancel", "ImmediateOrCancel", "FillOrKill", "Day")
EXEC_INSTS = (
    "ParticipateDoNotInitiate",
    "ReduceOnly",
    "Close",
    "MarkPrice",
    "LastPrice",
    "IndexPrice",
    "AllOrNone",
)
CURRENCY_UNITS = {"XBt": (Decimal(100000000), "XBT"), "USDt": (Decimal(1000000), "USDT")}
# GET /wallet/assets as the live API answers it (abridged to the fields the spec lists).
ASSETS: list[Row] = [
    {"asset": "XBT", "currency": "XBt", "majorCurrency": "XBT", "name": "Bitcoin",
     "currencyType": "Crypto", "scale": 8, "enabled": True, "isMarginCurrency": True,
     "memoRequired": False},
    {"asset": "USDT", "currency": "USDt", "majorCurrency": "USDT", "name": "Tether",
     "currencyType": "Crypto", "scale": 6, "enabled": True, "isMarginCurrency": True,
     "memoRequired": False},
    {"asset": "BMEX", "currency": "BMEx", "majorCurrency": "BMEX", "name": "BMEX Token",
     "currencyType": "Crypto", "scale": 6, "enabled": True, "isMarginCurrency": False,
     "memoRequired": False},
    {"asset": "USDC", "currency": "USDc", "majorCurrency": "USDC", "name": "USD Coin",
     "currencyType": "Crypto", "scale": 6, "enabled": True, "isMarginCurrency": False,
     "memoRequired": False},
    {"asset": "ETH", "currency": "Gwei", "majorCurrency": "ETH", "name": "Ethereum",
     "currencyType": "Crypto", "scale": 9, "enabled": True, "isMarginCurrency": False,
     "memoRequired": False},
]
Q_AVG = Decimal("0.0001")


class EngineError(Exception):
    """A request the exchange refuses; the server maps it to an HTTP error body."""

    def __init__(self, message: str, status: int = 400, name: str = "HTTPError") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.name = name


def iso(ts: datetime) -> str:
    """BitMEX timestamps: UTC, millisecond precision, `Z` suffix."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def to_int(value: Decimal) -> int:
    return int(value.to_integral_value(ROUND_HALF_EVEN))


def parse_decimal(value: Any, what: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError) as e:
        raise EngineError(f"Invalid {what}", name="ValidationError") from e
    if not result.is_finite():
        raise EngineError(f"Invalid {what}", name="ValidationError")
    return result
