"""The command table's vocabulary: what one command declares, once.

Each area module (`account`, `market`, `trading`, `alerts`, `live`, `feeds`, `admin`)
declares its intents, their argument parsers and one `Command` per command word; the
parser's dispatch (`bot/parse/commands.py`), the usage lines and /help
(`bot/parse/usage.py`), the access gate's lists and the BotFather menus
(`handlers/access.py`, `handlers/app.py`) are all read from these entries, and every
intent named here must have a handler (`handlers/__init__.py` refuses to start otherwise).

Intents are frozen dataclasses, one per command form. `symbol=None` always means "the
user's default symbol" (a setting the parser does not know). Percentages are kept as the
number the user typed (`10%` -> Decimal("10")), never as a fraction, except where a
property says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, NamedTuple

from bot.parse.values import SymbolBook
from bot.parse.words import Args, no_args


@dataclass(frozen=True, slots=True)
class Intent:
    """Base of every parsed command; `command` is the canonical command word."""

    command: ClassVar[str] = ""


Parser = Callable[[str, Args, SymbolBook], Intent]

# Where a command may run:
# - private: touches a personal account, refused in groups (the gate points to the chat);
# - anywhere: private chats and groups, but not listed in a group's /help;
# - group: private chats and groups, listed in a group's /help (admins' checks, if any, are
#   the handler's: they ask Telegram per command);
# - operators: ADMIN_IDS only, anywhere, never listed for anyone else.
Where = Literal["private", "anywhere", "group", "operators"]


class Menu(NamedTuple):
    """A BotFather menu line: its place in that menu (lower first) and its description."""

    rank: int
    text: str


@dataclass(frozen=True, slots=True)
class Command:
    """One command word, declared once."""

    name: str
    intents: tuple[type[Intent], ...]  # what `parse` returns for it; each needs a handler
    parse: Parser
    usage: str  # the usage line every error reply for this command ends with
    example: str  # one example that parses (tests/unit/test_parse.py checks)
    details: tuple[str, ...]  # /help <command>: the lines between usage and example
    where: Where = "anywhere"
    aliases: tuple[str, ...] = ()
    # In groups an answer costs one of the group's 20 messages a minute, shared by all, so
    # a member's budget for these there is much smaller (handlers/access.py).
    group_read: bool = False
    menu: Menu | None = None  # BotFather menu of private chats
    group_menu: Menu | None = None  # BotFather menu of every group member
    admin_menu: Menu | None = None  # BotFather menu of group administrators


# Shared /help lines.
SIZES = (
    "SIZE: 100 = contracts · $500 or 500usd = USD notional · 0.01btc = coin notional · "
    "10% = that share of available margin (times the leverage when isolated; on cross the "
    "share itself is the notional)"
)
NUMBERS = "Numbers: 60000, 60,000, 60k, 1.5m, 0.5"
SYMBOLS = "SYM: any BitMEX symbol (xbtusd, XBTUSDT), btc/xbt = your BTC contract, eth = ETHUSD"


def plain(cls: type[Intent]) -> Parser:
    """The parser of a command that takes no arguments."""

    def parse_plain(name: str, args: Args, book: SymbolBook) -> Intent:
        no_args(args, name)
        return cls()

    return parse_plain
