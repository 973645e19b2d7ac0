"""Updates about chats themselves: a group upgraded to a supergroup, the bot's own
membership (kicked, added back, promoted, blocked, unblocked) and other members' admin
status. They run before the access gate: whoever caused them, the bot must follow."""

from __future__ import annotations

import logging

from telegram import ChatMemberAdministrator, Update
from telegram.error import TelegramError

from bot import parse as P
from bot.buttons import ButtonData
from bot.chats import GONE, REACHABLE, rights_advice
from handlers.common import Context, reply
from handlers.presses import PressHandler
from handlers.router import IntentHandler

log = logging.getLogger(__name__)

_ADMIN = ("administrator", "creator")


async def on_migrate(update: Update, context: Context) -> None:
    """The old group's `migrate_to_chat_id`: move alerts, liquidation feed and signal feed."""
    msg = update.effective_message
    if msg is None or msg.migrate_to_chat_id is None:
        return
    await context.services.chats.move(msg.chat_id, msg.migrate_to_chat_id)


async def on_my_member(update: Update, context: Context) -> None:
    """The bot's own status changed: kicked/blocked stops writing there at once; added back
    or unblocked writes again; added to a group (or promoted without every right needed)
    tells the admins what it cannot do there yet."""
    change = update.my_chat_member
    if change is None:
        return
    old, new = change.old_chat_member.status, change.new_chat_member.status
    chat_id = change.chat.id
    if new in GONE:
        await context.services.chats.set_reachable(chat_id, False)
        return
    if new in REACHABLE and old in GONE:
        await context.services.chats.set_reachable(chat_id, True)
    if change.chat.type in ("group", "supergroup") and (old in GONE or new in _ADMIN):
        await advise_rights(update, context)


async def advise_rights(update: Update, context: Context) -> bool:
    """Check what the bot can do in this group (privacy mode via getMe, its own member
    status via getChatMember) and tell the admins in one message what it still needs.
    True when something is missing."""
    chat = update.effective_chat
    if chat is None or chat.type not in ("group", "supergroup"):
        return False
    bot = context.bot
    try:
        me = await bot.get_chat_member(chat.id, bot.id)
    except TelegramError as e:
        log.info("could not read my own rights in %s: %s", chat.id, e)
        return False
    can_delete = isinstance(me, ChatMemberAdministrator) and me.can_delete_messages
    if chat.type == "group" and me.status == "administrator":
        can_delete = True  # basic groups: any admin may delete messages
    advice = rights_advice(bot.username, reads_all=bool(bot.can_read_all_group_messages),
                           status=me.status, can_delete=bool(can_delete) or me.status == "creator")
    if advice is None:
        return False
    await reply(update, advice)
    return True


# No commands: this area answers Telegram's service updates only (see register).
ROUTES: dict[type[P.Intent], IntentHandler] = {}


BUTTONS: dict[type[ButtonData], PressHandler] = {}  # no buttons of its own
