"""Position safety commands (issue #14): /panic and /monitor (the services live in
bot/trading/panic.py and bot/live/monitor.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from bot.errors import UserError
from bot.parse.table import Command, Intent
from bot.parse.values import SymbolBook
from bot.parse.words import Args

# What `bot.parse` exports from this area (its intents and their value types).
__all__ = ["Monitor", "MonitorAction", "Panic"]

MonitorAction = Literal["on", "off", "pin"]


@dataclass(frozen=True, slots=True)
class Panic(Intent):
    command: ClassVar[str] = "panic"
    # The dead-man's switch stays armed unless asked: after a panic it still protects
    # whatever the user places next if the bot goes silent.
    deadman_off: bool = False


@dataclass(frozen=True, slots=True)
class Monitor(Intent):
    command: ClassVar[str] = "monitor"
    action: MonitorAction = "on"


PANIC_ARGS = "Only '/panic' or '/panic deadman off'."


def _panic(name: str, args: Args, book: SymbolBook) -> Panic:
    words = [t.low for t in args.toks]
    if not words:
        return Panic()
    if words in (["deadman", "off"], ["dms", "off"]):
        return Panic(deadman_off=True)
    raise UserError(PANIC_ARGS)


def _monitor(name: str, args: Args, book: SymbolBook) -> Monitor:
    words = [t.low for t in args.toks]
    if not words or words == ["on"]:
        return Monitor()
    if words in (["off"], ["stop"]):
        return Monitor(action="off")
    if words == ["pin"]:
        return Monitor(action="pin")
    raise UserError("Only '/monitor', '/monitor off' or '/monitor pin'.")


COMMANDS = (
    Command(
        "panic", (Panic,), _panic, "/panic [deadman off]", "/panic",
        ("After one Confirm: cancels every open order and closes every position of the "
         "active account at market. Closes are BitMEX 'Close' orders without a size, which "
         "BitMEX still executes while it sheds load. The card then says what happened per "
         "symbol.",
         "The dead-man's switch stays as it is; '/panic deadman off' also turns it off.",
         "The same card opens from the 🚨 Panic button under /positions; with nothing open "
         "it says so and changes nothing.",
         "More: /panic deadman off"),
        where="private",
    ),
    Command(
        "monitor", (Monitor,), _monitor, "/monitor [off | pin]", "/monitor",
        ("One message per open position that I keep up to date in place: mark, uPnL in coin "
         "and USD, ROE, distance to liquidation, next funding and its rate, the exits in "
         "force. Edited only when something shown changed, at most every few seconds.",
         "Its buttons are the position card's (close by share, stops, Refresh).",
         "'/monitor off' stops it (and unpins what '/monitor pin' pinned; in a group I need "
         "the 'Pin messages' admin right). It survives restarts.",
         "More: /monitor pin · /monitor off"),
        where="private",
    ),
)
