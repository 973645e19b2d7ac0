"""The wire's values: currency units and money, prices, row fields, timestamps.

Rows from BitMEX are parsed with `parse_float=Decimal`, so prices arrive here as
Decimal and money as int (XBt / USDt); nothing here uses float.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# Smallest unit per currency as BitMEX names them, and the display name. XBt and USDt
# are known up front (every contract settles in one); the rest (BMEx, USDc, ...) come
# from GET /wallet/assets through `register_assets`.
CURRENCY_SCALE: dict[str, tuple[int, str]] = {
    "XBt": (100_000_000, "XBT"),
    "USDt": (1_000_000, "USDT"),
}


def register_assets(rows: Sequence[Mapping[str, Any]]) -> None:
    """Learn each currency's scale from /wallet/assets rows (`scale` = decimals)."""
    for row in rows:
        currency, scale = row.get("currency"), row.get("scale")
        if not isinstance(currency, str) or not currency or scale is None:
            continue
        try:
            decimals = int(Decimal(str(scale)))
        except ArithmeticError:
            continue
        if not 0 <= decimals <= 18:
            continue
        name = str(row.get("majorCurrency") or row.get("asset") or currency).upper()
        CURRENCY_SCALE[currency] = (10**decimals, name)


def known_currency(currency: str) -> bool:
    return currency in CURRENCY_SCALE


def to_unit(amount: int | Decimal, currency: str) -> Decimal:
    """Exchange units (XBt, USDt) -> coin amount (XBT, USDT) as an exact Decimal."""
    scale, _ = CURRENCY_SCALE.get(currency, (1, currency))
    return Decimal(amount) / Decimal(scale)


def from_unit(amount: Decimal, currency: str) -> int:
    """Coin amount -> integer exchange units, truncated toward zero (never over-spend)."""
    scale, _ = CURRENCY_SCALE.get(currency, (1, currency))
    return int(amount * scale)


def display_currency(currency: str) -> str:
    return CURRENCY_SCALE.get(currency, (1, currency))[1]


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def format_money(amount: int | Decimal, currency: str) -> str:
    """102000 XBt -> "0.00102 XBT"; 12340000 USDt -> "12.34 USDT"."""
    return f"{_plain(to_unit(amount, currency))} {display_currency(currency)}"


def format_price(price: Decimal | None) -> str:
    return "-" if price is None else _plain(price)


# --- row fields -----------------------------------------------------------------


def dec(row: Mapping[str, Any], key: str) -> Decimal | None:
    """The field as a Decimal; None when absent or empty."""
    value = row.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        # Only reached when a caller parsed JSON without parse_float=Decimal:
        # repr() round-trips the shortest decimal, which is what was on the wire.
        return Decimal(repr(value))
    return Decimal(str(value))


def dec0(row: Mapping[str, Any], key: str) -> Decimal:
    """The field as a Decimal; 0 when absent or empty."""
    value = dec(row, key)
    return Decimal(0) if value is None else value


def int0(row: Mapping[str, Any], key: str) -> int:
    """The field as an int; 0 when absent or empty."""
    value = row.get(key)
    if value is None or value == "":
        return 0
    return int(value)


def str0(row: Mapping[str, Any], key: str) -> str:
    """The field as a str; "" when absent."""
    value = row.get(key)
    return "" if value is None else str(value)


def parse_time(value: Any) -> datetime | None:
    """BitMEX timestamps ("2020-08-03T12:01:01.246Z") -> aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    """Aware datetime -> BitMEX wire format (ms precision, Z)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
