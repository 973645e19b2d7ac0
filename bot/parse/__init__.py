"""The chat language: chat text -> typed intents (pure, fuzzed). What handlers and
services import (`from bot import parse as P`).

    book = SymbolBook(active_symbols, default_btc="XBTUSD")
    intent = P.parse(text, bot_username="MyBot", private=True, symbols=book)

`parse` returns an intent, None (not a command for us: small talk, another bot's
command), or raises UserError with a ready-to-send message. Inside: `commands` (the
command table and the entry), one module per area declaring its intents, argument
parsers and table entries (`account`, `market`, `trading`, `alerts`, `live`, `feeds`,
`admin`), `words` (tokens and shared argument checks), `values` (numbers, sizes,
symbols, zones), `usage` (/help), `signals` (free-text signals in feed groups).
"""

from __future__ import annotations

from bot.parse import account, admin, alerts, feeds, live, market, positions, stops, trading
from bot.parse.account import *  # noqa: F403  (each area's __all__: its intents)
from bot.parse.admin import *  # noqa: F403  (each area's __all__: its intents)
from bot.parse.alerts import *  # noqa: F403  (each area's __all__: its intents)
from bot.parse.commands import (
    ALIASES,
    BY_NAME,
    COMMAND_NAMES,
    COMMANDS,
    USAGE,
    Help,
    Start,
    canonical,
    command_of,
    holds_secret,
    parse,
    usage,
)
from bot.parse.feeds import *  # noqa: F403  (each area's __all__: its intents)
from bot.parse.live import *  # noqa: F403  (each area's __all__: its intents)
from bot.parse.market import *  # noqa: F403  (each area's __all__: its intents)
from bot.parse.positions import *  # noqa: F403  (each area's __all__: its intents)
from bot.parse.signals import looks_like_signal, recognise, risk_reward
from bot.parse.stops import *  # noqa: F403  (each area's __all__: its intents)
from bot.parse.table import Command, Intent, Menu, Where
from bot.parse.trading import *  # noqa: F403  (each area's __all__: its intents)
from bot.parse.usage import GROUP_COMMANDS, OPERATOR_COMMANDS, MenuScope, help_text, menu
from bot.parse.values import (
    MAX_NUMBER,
    SizeSpec,
    SymbolBook,
    parse_number,
    parse_price,
    parse_size,
    parse_zone,
    zone_info,
)
from bot.parse.words import check_exits, tokenize

__all__ = [
    "ALIASES",
    "BY_NAME",
    "COMMANDS",
    "COMMAND_NAMES",
    "GROUP_COMMANDS",
    "MAX_NUMBER",
    "OPERATOR_COMMANDS",
    "USAGE",
    "Command",
    "Help",
    "Intent",
    "Menu",
    "MenuScope",
    "SizeSpec",
    "Start",
    "SymbolBook",
    "Where",
    "canonical",
    "check_exits",
    "command_of",
    "help_text",
    "holds_secret",
    "looks_like_signal",
    "menu",
    "parse",
    "parse_number",
    "parse_price",
    "parse_size",
    "parse_zone",
    "recognise",
    "risk_reward",
    "tokenize",
    "usage",
    "zone_info",
    *account.__all__,
    *market.__all__,
    *trading.__all__,
    *positions.__all__,
    *stops.__all__,
    *alerts.__all__,
    *live.__all__,
    *feeds.__all__,
    *admin.__all__,
]
