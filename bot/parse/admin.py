"""Operators' tools: /stats and /broadcast (ADMIN_IDS only; never listed for others)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bot.errors import UserError
from bot.parse.table import Command, Intent, plain
from bot.parse.values import SymbolBook
from bot.parse.words import Args

# What `bot.parse` exports from this area (its intents and their value types).
__all__ = ["Broadcast", "Stats"]


@dataclass(frozen=True, slots=True)
class Stats(Intent):
    command: ClassVar[str] = "stats"


@dataclass(frozen=True, slots=True)
class Broadcast(Intent):
    command: ClassVar[str] = "broadcast"
    text: str


def _broadcast(name: str, args: Args, book: SymbolBook) -> Broadcast:
    text = args.text.strip()
    if not text:
        raise UserError("Broadcast what?")
    if len(text) > 4000:
        raise UserError("Too long for one message (4000 characters at most).")
    return Broadcast(text=text)


COMMANDS = (
    Command(
        "stats", (Stats,), plain(Stats), "/stats", "/stats",
        ("Operators only: users, alerts, orders, error rates.",), where="operators",
    ),
    Command(
        "broadcast", (Broadcast,), _broadcast, "/broadcast TEXT",
        "/broadcast Maintenance at 12:00 UTC", ("Operators only: sends TEXT to every user.",),
        where="operators",
    ),
)
