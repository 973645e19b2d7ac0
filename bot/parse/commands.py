"""The command table and the entry: chat text -> typed intent. Pure: no I/O besides
reading the zoneinfo index once.

Decisions (the handlers rely on them):
- `parse` returns None when the message is not for this bot: `/cmd@OtherBot`, plain text
  in a group, small talk in a private chat (first word not a command word), and, in
  groups, an unknown `/command` not addressed to us (it may belong to another bot).
- An unknown `/command` in a private chat, or addressed to us, is a UserError with a
  pointer to /help. A private message whose first word IS a command word (`buy what?`)
  is parsed strictly, so the user learns the grammar.
- `bot_username=None` means "unknown": `/cmd@Anything` is accepted.
- Private-only commands parse in groups too; refusing them is access control's job, and
  `command_of` tells it which command a message is, read exactly as `parse` reads it.
- Every error is a UserError whose message ends with the command's usage and an example;
  a /connect error never echoes what was typed (it may be a secret).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from bot.errors import UserError
from bot.parse import account, admin, alerts, feeds, live, market, positions, stops, trading
from bot.parse.table import Command, Intent, Menu
from bot.parse.values import SymbolBook, shown
from bot.parse.words import NETWORKS, Args, tokenize, unexpected


@dataclass(frozen=True, slots=True)
class Start(Intent):
    command: ClassVar[str] = "start"
    payload: str | None = None  # deep-link argument (t.me/bot?start=PAYLOAD)


@dataclass(frozen=True, slots=True)
class Help(Intent):
    command: ClassVar[str] = "help"
    topic: str | None = None  # canonical command name, or None for the overview


def _help(name: str, args: Args, book: SymbolBook) -> Help:
    if not args.toks:
        return Help()
    if len(args.toks) > 1:
        raise unexpected(args.toks[1])
    topic = canonical(args.toks[0].low)
    if topic is None:
        raise UserError(f"No command /{shown(args.toks[0].raw.lstrip('/'))}.")
    return Help(topic=topic)


def _start(name: str, args: Args, book: SymbolBook) -> Start:
    # Deep-link payloads use this alphabet; anything else is chatter, not an argument.
    if args.toks and re.match(r"^[A-Za-z0-9_\-]{1,64}$", args.toks[0].raw):
        return Start(payload=args.toks[0].raw)
    return Start()




_GENERAL = (
    Command(
        "start", (Start,), _start, "/start", "/start",
        ("Greets you and shows the active account.",),
        group_read=True, menu=Menu(1, "account and menu"),
    ),
    Command(
        "help", (Help,), _help, "/help [command]", "/help buy",
        ("Short help, or the full grammar of one command.",),
        where="group", group_read=True, menu=Menu(13, "all commands"),
        group_menu=Menu(2, "what I do here"), admin_menu=Menu(6, "what I do here"),
    ),
)

# Every command, in the order /help lists them.
COMMANDS: tuple[Command, ...] = (
    *_GENERAL,
    *account.COMMANDS,
    *market.COMMANDS,
    *trading.COMMANDS,
    *positions.COMMANDS,
    *stops.COMMANDS,
    *alerts.COMMANDS,
    *live.COMMANDS,
    *feeds.COMMANDS,
    *admin.COMMANDS,
)
BY_NAME: Mapping[str, Command] = {c.name: c for c in COMMANDS}
ALIASES: Mapping[str, str] = {a: c.name for c in COMMANDS for a in c.aliases}
COMMAND_NAMES: frozenset[str] = frozenset(BY_NAME) | frozenset(ALIASES)


def canonical(name: str) -> str | None:
    """`/Long` -> buy, `pos` -> positions; None for an unknown command name."""
    n = name.strip().lstrip("/").lower()
    n = ALIASES.get(n, n)
    return n if n in BY_NAME else None


def usage(name: str) -> str:
    """The usage line and one example, for error replies."""
    n = canonical(name)
    return _usage(BY_NAME[n]) if n else ""


def _usage(c: Command) -> str:
    return f"Usage: {c.usage}\nExample: {c.example}"


USAGE: Mapping[str, str] = {c.name: _usage(c) for c in COMMANDS}

# ------------------------------------------------------------------------------ the entry

_HEAD_RE = re.compile(r"^\s*(/?)([A-Za-z][A-Za-z0-9_]{0,31})(?:@([A-Za-z0-9_]{1,64}))?(?=\s|$)")


@dataclass(frozen=True, slots=True)
class _Head:
    """The command word of a message addressed to us, as typed and where its args start."""

    slash: bool
    word: str
    addressed: bool  # `/cmd@ThisBot`
    end: int


def _head(text: str, private: bool, bot_username: str | None) -> _Head | None:
    """The command word, or None when the message is not a command for this bot."""
    m = _HEAD_RE.match(text)
    if m is None:
        return None
    slash, word, addressee = m.group(1), m.group(2), m.group(3)
    if addressee is not None:
        if not slash:
            return None
        if bot_username is not None and addressee.lower() != bot_username.lstrip("@").lower():
            return None
    if not slash and not private:
        return None
    return _Head(bool(slash), word, addressee is not None, m.end())


def command_of(text: str, *, private: bool, bot_username: str | None = None) -> str | None:
    """The command `parse` will see ("buy" for "/long@MyBot 100"), canonical, lower-case;
    an unknown `/word` as typed (lower-case); None for no command (small talk, another
    bot's command, a group's plain text)."""
    head = _head(text, private, bot_username)
    if head is None:
        return None
    name = canonical(head.word)
    if name is None and not head.slash:
        return None  # small talk in a private chat
    return name or head.word.lower()


def parse(
    text: str,
    *,
    bot_username: str | None = None,
    private: bool = True,
    symbols: SymbolBook,
) -> Intent | None:
    """Parse one chat message into an intent, or None when it is not a command for us.

    Raises only UserError; its message is ready to send (problem, usage, example).
    """
    head = _head(text, private, bot_username)
    if head is None:
        if _HEAD_RE.match(text) is None and private and text.lstrip().startswith("/") \
                and text.strip() != "/":
            word = text.strip().split()[0]
            raise UserError(f"Unknown command {shown(word)} — see /help.")
        return None
    name = head.word.lower()
    canon = canonical(name)
    if canon is None:
        if not head.slash or (not private and not head.addressed):
            return None
        raise UserError(f"Unknown command /{shown(head.word)} — see /help.")
    command = BY_NAME[canon]
    args = tokenize(text[head.end :])
    try:
        return command.parse(name, args, symbols)
    except UserError as e:
        raise UserError(f"{e}\n{_usage(command)}") from None


def holds_secret(text: str) -> bool:
    """True when the message is a connect command carrying more than a network word.

    Such a message must be deleted even when it does not parse (or arrives in a group).
    """
    m = _HEAD_RE.match(text)
    if m is None or m.group(2).lower() != "connect":
        return False
    words = text[m.end() :].split()
    return any(w.lower() not in NETWORKS for w in words)
