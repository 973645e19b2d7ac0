"""A BitMEX simulator: the matching/margin engine and an aiohttp server speaking BitMEX's API."""

from bot.sandbox.bitmex.engine import (
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
