"""Every button press, through one door: decoded once, refused in one place, then handed on.

Each handlers area exports `BUTTONS: dict[type[ButtonData], PressHandler]`; `register()`
joins them with `press_table` and attaches `dispatcher(...)` as the one
CallbackQueryHandler. A handler receives the parsed button (`press: CardPress`), never the
raw callback data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from types import ModuleType
from typing import Any

from telegram import Update

from bot.buttons import KINDS, ButtonData, decode
from handlers.common import Context, is_private

# Any: each handler takes its own kind (CardPress, DeleteAlert …); the table's key says
# which, and tests/unit/test_presses.py checks that every handler's annotation matches it.
PressHandler = Callable[[Update, Context, Any], Awaitable[None]]
PlainHandler = Callable[[Update, Context], Coroutine[Any, Any, None]]

PRIVATE_ONLY_ANSWER = "That works in a private chat with me."


def press_table(areas: Iterable[ModuleType]) -> dict[type[ButtonData], PressHandler]:
    """Every area's BUTTONS in one table; a kind with two handlers or none fails start-up."""
    table: dict[type[ButtonData], PressHandler] = {}
    for area in areas:
        buttons: Mapping[type[ButtonData], PressHandler] = area.BUTTONS
        for kind, handler in buttons.items():
            if kind in table:
                raise ValueError(f"{kind.__name__} is handled twice ({area.__name__})")
            table[kind] = handler
    missing = sorted(k.__name__ for k in KINDS.values() if k not in table)
    if missing:
        raise ValueError(f"buttons without a handler: {', '.join(missing)}")
    return table


def dispatcher(table: Mapping[type[ButtonData], PressHandler],
               stale: PlainHandler) -> PlainHandler:
    """The one press handler: forged or stale data goes to `stale`, the rest to its kind's."""
    async def on_press(update: Update, context: Context) -> None:
        q = update.callback_query
        if q is None:
            return
        press = decode(q.data)
        handler = table.get(type(press)) if press is not None else None
        if press is None or handler is None:
            await stale(update, context)
            return
        if press.private and not is_private(update):
            # Shown only in private chats; a modified client can still send the data on a
            # group message, and the answer would post the presser's account there.
            await q.answer(PRIVATE_ONLY_ANSWER, show_alert=True)
            return
        await handler(update, context, press)

    return on_press
