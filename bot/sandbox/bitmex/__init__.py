"""A BitMEX simulator: an aiohttp server speaking BitMEX's API around the matching engine.

The engine itself (`bot.matching`) is shared with paper trading; its main names are
re-exported here because a simulator is driven through them (`simulator.engine`).
"""

from bot.matching import (
    Clock,
    Engine,
    EngineError,
    Event,
    Instrument,
    PriceDriver,
    default_instruments,
)
from bot.sandbox.bitmex.server import BitmexSimulator, Faults, RateLimitConfig, sign

__all__ = [
    "BitmexSimulator",
    "Clock",
    "Engine",
    "EngineError",
    "Event",
    "Faults",
    "Instrument",
    "PriceDriver",
    "RateLimitConfig",
    "default_instruments",
    "sign",
]
