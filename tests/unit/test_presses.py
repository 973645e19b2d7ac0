"""handlers/presses.py: every button kind has exactly one handler, typed for its kind, and
the one press handler refuses what does not decode and private kinds pressed in a group."""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import pytest

import handlers
from bot.buttons import KINDS, ButtonData, CardPress, DeleteAlert, MenuPress
from handlers.presses import PRIVATE_ONLY_ANSWER, dispatcher, press_table


def test_every_kind_has_one_handler_that_takes_that_kind() -> None:
    table = press_table(handlers.AREAS)
    assert set(table) == set(KINDS.values())
    for kind, handler in table.items():
        params = list(inspect.signature(handler).parameters)
        assert len(params) == 3, handler.__qualname__
        hint = typing.get_type_hints(handler)[params[2]]
        taken = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        assert kind in taken, (kind.__name__, handler.__qualname__, hint)


def test_every_area_exports_its_buttons() -> None:
    for area in handlers.AREAS:
        assert isinstance(area.BUTTONS, dict), area.__name__


def _area(name: str, buttons: dict[type[ButtonData], Any]) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.BUTTONS = buttons  # type: ignore[attr-defined]
    return mod


async def _noop(update: Any, context: Any, press: Any) -> None:
    return None


def test_a_kind_handled_twice_or_never_fails_start_up() -> None:
    everything = {k: _noop for k in KINDS.values()}
    press_table([_area("all", everything)])
    with pytest.raises(ValueError, match="CardPress is handled twice"):
        press_table([_area("all", everything), _area("again", {CardPress: _noop})])
    without = {k: v for k, v in everything.items() if k is not DeleteAlert}
    with pytest.raises(ValueError, match="without a handler: DeleteAlert"):
        press_table([_area("most", without)])


@dataclass
class Query:
    data: str | None
    answers: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)

    async def answer(self, text: str | None = None, **kwargs: Any) -> bool:
        self.answers.append((text, kwargs))
        return True


@dataclass
class Chat:
    type: str


@dataclass
class FakeUpdate:
    callback_query: Query
    effective_chat: Chat


class Calls:
    def __init__(self) -> None:
        self.presses: list[ButtonData] = []
        self.stale = 0

    async def handler(self, update: Any, context: Any, press: ButtonData) -> None:
        self.presses.append(press)

    async def on_stale(self, update: Any, context: Any) -> None:
        self.stale += 1


async def _press(data: str | None, chat: str = "private",
                 kinds: tuple[type[ButtonData], ...] | None = None) -> tuple[Calls, Query]:
    """Press a button with `data` in a chat of type `chat`; what reached whom."""
    calls = Calls()
    table = {k: calls.handler for k in (kinds if kinds is not None else KINDS.values())}
    on_press = dispatcher(table, stale=calls.on_stale)
    query = Query(data)
    await on_press(FakeUpdate(query, Chat(chat)), None)  # type: ignore[arg-type]
    return calls, query


async def test_the_handler_gets_the_parsed_button() -> None:
    calls, _ = await _press("t:c:42")
    assert calls.presses == [CardPress("c", 42)] and calls.stale == 0


@pytest.mark.parametrize("data", [None, "", "t:c:\u00b2", "t:c:99999999999999999999999",
                                  "m:", "k:d:nowhere", "zz:1"])
async def test_what_does_not_decode_gets_the_stale_answer(data: str | None) -> None:
    calls, _ = await _press(data)
    assert calls.stale == 1 and calls.presses == []


async def test_a_kind_without_a_handler_gets_the_stale_answer() -> None:
    calls, _ = await _press("al:d:5", chat="group", kinds=(CardPress,))
    assert calls.stale == 1 and calls.presses == []


@pytest.mark.parametrize("chat", ["group", "supergroup", "channel"])
async def test_private_kinds_are_refused_outside_a_private_chat(chat: str) -> None:
    for data in ("t:c:1", "oc:abc", "pc:XBTUSD", "k:d:testnet", "k:x", "m:balance"):
        calls, query = await _press(data, chat)
        assert calls.presses == [] and calls.stale == 0, data
        assert query.answers == [(PRIVATE_ONLY_ANSWER, {"show_alert": True})]
    calls, query = await _press("al:d:5", chat)  # a group's own buttons work there
    assert calls.presses == [DeleteAlert(5)] and not query.answers


async def test_private_kinds_work_in_private() -> None:
    calls, query = await _press("m:balance")
    assert calls.presses == [MenuPress("balance")] and not query.answers
