"""Live-update settings: /liqalert and /deadman (bot/live.py does the work)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from bot.errors import UserError
from bot.parse.table import Command, Intent
from bot.parse.values import SymbolBook, parse_percent, parse_seconds
from bot.parse.words import Args

# What `bot.parse` exports from this area (its intents and their value types).
__all__ = ["Deadman", "LiqAlert"]


@dataclass(frozen=True, slots=True)
class LiqAlert(Intent):
    command: ClassVar[str] = "liqalert"
    percent: Decimal | None = None  # None: off


@dataclass(frozen=True, slots=True)
class Deadman(Intent):
    command: ClassVar[str] = "deadman"
    seconds: int | None = None  # None: off


def _liqalert(name: str, args: Args, book: SymbolBook) -> LiqAlert:
    if len(args.toks) != 1:
        raise UserError("Give a distance like 10%, or 'off'.")
    t = args.toks[0]
    if t.low == "off":
        return LiqAlert(percent=None)
    percent = parse_percent(t.raw, "distance")
    if percent >= 100:
        raise UserError("The distance must be below 100%.")
    return LiqAlert(percent=percent)


def _deadman(name: str, args: Args, book: SymbolBook) -> Deadman:
    if len(args.toks) != 1:
        raise UserError("Give the timeout in seconds, or 'off'.")
    t = args.toks[0]
    if t.low == "off":
        return Deadman(seconds=None)
    return Deadman(seconds=parse_seconds(t.raw, "timeout", low=15, high=86400))


COMMANDS = (
    Command(
        "liqalert", (LiqAlert,), _liqalert, "/liqalert N% | off", "/liqalert 10%",
        ("Warns when mark price comes within N% of your liquidation price.",),
        where="private",
    ),
    Command(
        "deadman", (Deadman,), _deadman, "/deadman SECONDS | off", "/deadman 60",
        ("Keeps BitMEX's cancelAllAfter alive; if the bot goes silent your open orders are "
         "cancelled after SECONDS (15 to 86400, or 5m, 1h).",),
        where="private",
    ),
)
