"""The Telegram side: every handler is listed in `register`, in one place."""

from __future__ import annotations

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


def register(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Attach the access gate, the command handlers and the error handler."""
    # feeds: its @route decorators and free-text hook register on import.
    from handlers import access, chats, errors, feeds, keys, reports, router, settings, start, trade
    from handlers import admin as _admin  # noqa: F401  (its @route decorators register it)
    from handlers import alerts as alert_handlers
    from handlers import live as _live  # noqa: F401  (its @route decorators register it)
    from handlers import repeats as repeat_filter

    _ = (reports, settings)  # imported for their @route decorators

    # First of all: an update delivered again (a leader killed before confirming it, a
    # webhook retry) is skipped, so it is handled once (bot/leader.py UpdateLog).
    app.add_handler(TypeHandler(Update, repeat_filter.skip_repeats), group=-3)
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
    app.add_handler(MessageHandler(filters.TEXT & ~filters.UpdateType.EDITED, router.on_text))
    app.add_handler(CallbackQueryHandler(trade.on_card_press, pattern=r"^t:"))
    app.add_handler(CallbackQueryHandler(trade.on_row_press, pattern=r"^(oc|pc):"))
    app.add_handler(CallbackQueryHandler(keys.on_disconnect_press, pattern=r"^k:"))
    app.add_handler(CallbackQueryHandler(start.on_menu_press, pattern=r"^m:"))
    app.add_handler(CallbackQueryHandler(alert_handlers.on_alert_press, pattern=r"^al:"))
    app.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE & filters.TEXT
                                   & filters.ChatType.GROUPS, feeds.on_edited))
    app.add_handler(CallbackQueryHandler(feeds.on_press, pattern=r"^fd:"))
    app.add_handler(CallbackQueryHandler(start.on_stale_press))
    app.add_error_handler(errors.on_error)
