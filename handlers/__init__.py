"""The Telegram side: every handler is listed in `register`, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import parse as P
from handlers import (
    access,
    admin,
    alerts,
    chats,
    errors,
    feeds,
    keys,
    live,
    positions,
    presses,
    repeats,
    reports,
    router,
    settings,
    start,
    stops,
    trade,
)
from handlers.router import IntentHandler

# Every handlers area, literally, in one place; each exports ROUTES (its command handlers
# by intent) and BUTTONS (its press handlers by button kind).
AREAS = (start, trade, stops, keys, alerts, feeds, reports, settings, live, admin, chats,
         positions)


def routes_of(areas: Sequence[ModuleType]) -> dict[type[P.Intent], IntentHandler]:
    """Every area's ROUTES in one dict; an intent claimed by two areas is a mistake."""
    routes: dict[type[P.Intent], IntentHandler] = {}
    for area in areas:
        for kind, handler in area.ROUTES.items():
            if kind in routes:
                raise ValueError(f"{kind.__name__} is routed twice ({area.__name__})")
            routes[kind] = handler
    return routes


def register(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Attach the access gate, the command handlers and the error handler."""
    text = router.Router(routes_of(AREAS), first=keys.in_connect_flow,
                         fallbacks=(stops.on_edit_reply, feeds.on_group_text))

    # First of all: an update delivered again (a leader killed before confirming it, a
    # webhook retry) is skipped, so it is handled once (bot/leader.py UpdateLog).
    app.add_handler(TypeHandler(Update, repeats.skip_repeats), group=-3)
    # Before the gate: a group's move to a new id, the bot kicked or added back, an admin
    # promoted: followed whoever caused them (the gate does not pass these updates on).
    app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, chats.on_migrate), group=-2)
    app.add_handler(ChatMemberHandler(chats.on_my_member, ChatMemberHandler.MY_CHAT_MEMBER),
                    group=-2)
    # Someone else joined or left: a leaver's follow of the group's feed ends. No admin
    # list is cached (admin powers are asked of Telegram per command), so that is all.
    app.add_handler(ChatMemberHandler(feeds.on_member_change, ChatMemberHandler.CHAT_MEMBER),
                    group=-2)
    app.add_handler(TypeHandler(Update, access.gate), group=-1)
    app.add_handler(CommandHandler("start", start.start))
    app.add_handler(CommandHandler("help", start.help_command))
    # Everything else is text: one parser, with or without the slash (see router).
    app.add_handler(MessageHandler(filters.TEXT & ~filters.UpdateType.EDITED, text.on_text))
    app.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE & filters.TEXT
                                   & filters.ChatType.GROUPS, feeds.on_edited))
    # Every press: decoded once (bot/buttons.py), handed to its kind's handler; what does
    # not decode gets the stale-button answer.
    app.add_handler(CallbackQueryHandler(
        presses.dispatcher(presses.press_table(AREAS), stale=start.on_stale_press)))
    app.add_error_handler(errors.on_error)
