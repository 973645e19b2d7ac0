"""The command table is the one place a command is declared: everything read from it must
agree with it (every intent has a handler, every command its usage and help, every menu
entry a command that runs where the menu is shown, the gate's lists the table's scopes)."""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType

import pytest
from telegram import Update

from bot import parse as P
from bot.errors import UserError
from handlers import AREAS, access, app, routes_of
from handlers.context import BotContext
from handlers.router import Router, UnroutedIntent

BOOK = P.SymbolBook(["XBTUSD", "ETHUSD", "XBTUSDT"], default_btc="XBTUSD")


async def _nothing(update: Update, context: BotContext) -> bool:
    return False


def test_every_intent_of_the_table_has_a_handler() -> None:
    routes = routes_of(AREAS)
    intents = {t for c in P.COMMANDS for t in c.intents}
    unrouted = sorted(t.__name__ for t in intents - routes.keys())
    assert not unrouted, f"no handler for {unrouted}"
    stale = sorted(t.__name__ for t in routes.keys() - intents)
    assert not stale, f"routed but no command returns them: {stale}"
    Router(routes, first=_nothing, fallbacks=())  # the real areas start


def test_an_intent_without_a_handler_stops_the_bot_from_starting() -> None:
    routes = routes_of(AREAS)
    del routes[P.Deadman]
    with pytest.raises(UnroutedIntent, match="Deadman"):
        Router(routes, first=_nothing, fallbacks=())


def test_an_intent_routed_by_two_areas_is_refused() -> None:
    twin = ModuleType("twin")
    twin.ROUTES = {P.Deadman: AREAS[0]}  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="Deadman is routed twice"):
        routes_of([*AREAS, twin])


@pytest.mark.parametrize("command", P.COMMANDS, ids=lambda c: c.name)
def test_every_command_has_usage_help_and_an_example_of_its_own(command: P.Command) -> None:
    assert command.usage.startswith(f"/{command.name}"), command.usage
    assert command.details and all(line.strip() for line in command.details)
    assert P.help_text(command.name).startswith(command.usage)
    assert f"Example: {command.example}" in P.help_text(command.name)
    # The example parses, to one of the command's own intents.
    intent = P.parse(command.example, symbols=BOOK)
    assert type(intent) in command.intents, (command.example, intent)
    for alias in command.aliases:
        assert P.canonical(alias) == command.name


@pytest.mark.parametrize("command", P.COMMANDS, ids=lambda c: c.name)
def test_every_more_example_parses_to_its_command(command: P.Command) -> None:
    # The "More: a · b" line of /help is examples too: each must parse, to this command.
    for line in command.details:
        if not line.startswith("More: "):
            continue
        for example in line.removeprefix("More: ").split(" · "):
            intent = P.parse(example, symbols=BOOK)
            assert type(intent) in command.intents, (example, intent)


def test_a_command_without_help_fails_the_check_above() -> None:
    """The check is not vacuous: an entry with empty details or a foreign usage fails it."""
    deadman = P.BY_NAME["deadman"]
    for broken in (replace(deadman, details=()), replace(deadman, usage="/dm N")):
        with pytest.raises(AssertionError):
            test_every_command_has_usage_help_and_an_example_of_its_own(broken)


def test_names_and_aliases_are_unique() -> None:
    words = [w for c in P.COMMANDS for w in (c.name, *c.aliases)]
    assert len(words) == len(set(words))


_MENUS = {"private": app.PRIVATE_MENU, "group": app.GROUP_MENU, "admins": app.ADMIN_MENU}


@pytest.mark.parametrize("scope", sorted(_MENUS))
def test_every_menu_entry_names_a_command_that_runs_there(scope: P.MenuScope) -> None:
    menu = _MENUS[scope]
    assert menu == P.menu(scope) and menu
    names = [name for name, _ in menu]
    assert len(names) == len(set(names))
    for name, text in menu:
        assert name in P.BY_NAME, f"the {scope} menu names no command: /{name}"
        assert text
        where = P.BY_NAME[name].where
        assert where != "operators", f"/{name} is an operators' tool, not advertised"
        if scope != "private":
            assert where != "private", f"/{name} is refused in groups"


def test_a_menu_naming_no_command_fails_the_check_above(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_MENUS, "group", [*app.GROUP_MENU, ("frobnicate", "x")])
    monkeypatch.setattr(P, "menu", lambda scope: _MENUS[scope])
    with pytest.raises(AssertionError, match="names no command"):
        test_every_menu_entry_names_a_command_that_runs_there("group")


def test_the_gate_lists_are_the_tables_scopes() -> None:
    assert access.PRIVATE_ONLY == {
        "connect", "accounts", "use", "disconnect", "buy", "sell", "close", "cancel",
        "orders", "positions", "balance", "leverage", "pnl", "liqalert", "summary", "tz",
        "deadman", "settings", "follow", "unfollow", "feeds",
        "panic", "monitor", "sl", "tp"}  # issue #14
    assert access.OPERATOR_ONLY == {"stats", "broadcast"}
    assert access.GROUP_READS == {"help", "feedstats", "start"}
    assert "/broadcast" not in P.help_text() and "/stats" not in P.help_text(group=True)
    assert "/broadcast" in P.help_text(operator=True)


@pytest.mark.parametrize(("text", "private", "expected"), [
    ("/long@MyBot 100", False, "buy"),
    ("  pos", True, "positions"),
    ("pos", False, None),  # plain text in a group
    ("/buy@OtherBot 100", True, None),  # another bot's command
    ("buy@MyBot 100", True, None),  # an addressee needs the slash
    ("hello there", True, None),  # small talk
    ("/frobnicate", True, "frobnicate"),  # unknown, as typed: the parser refuses it
    ("/Connect testnet", False, "connect"),
])
def test_command_of_reads_the_head_as_parse_does(
        text: str, private: bool, expected: str | None) -> None:
    assert P.command_of(text, private=private, bot_username="MyBot") == expected
    try:
        intent = P.parse(text, bot_username="MyBot", private=private, symbols=BOOK)
    except UserError:
        assert expected is not None  # a strict parse only of what is addressed to us
        return
    if expected is None:
        assert intent is None
    else:
        assert intent is not None and type(intent) in P.BY_NAME[expected].intents
