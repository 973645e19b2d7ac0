"""Column types that behave the same on SQLite and PostgreSQL: aware UTC datetimes, exact
decimals and Telegram ids."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored naive in UTC, always returned timezone-aware (Rule aware-utc)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class DecimalText(TypeDecorator[Decimal]):
    """Decimals as text: SQLite's NUMERIC would round-trip them through float."""

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return format(Decimal(value), "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


# Telegram user and chat ids can exceed 32 bits (supergroups are -100xxxxxxxxxx, new users
# are past 2**32). SQLite's INTEGER is already 64-bit, and staying INTEGER there keeps the
# existing SQLite schema untouched; PostgreSQL's INTEGER is 32-bit, so BIGINT there.
TelegramId = BigInteger().with_variant(Integer(), "sqlite")
