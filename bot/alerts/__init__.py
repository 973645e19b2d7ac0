"""Alerts: the in-memory index evaluated on every tick (see index.py for semantics)."""

from bot.alerts.index import (
    WINDOWS,
    AlertIndex,
    AlertKind,
    AlertSpec,
    Direction,
    Fired,
    FundingAlert,
    MoveAlert,
    PriceAlert,
)

__all__ = [
    "WINDOWS",
    "AlertIndex",
    "AlertKind",
    "AlertSpec",
    "Direction",
    "Fired",
    "FundingAlert",
    "MoveAlert",
    "PriceAlert",
]
