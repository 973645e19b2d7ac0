"""Every text message goes through one parser; the intent picks the handler.

Commands work with or without the slash in private chats (`buy 100 btc`), so a
single text handler is simpler and stricter than a CommandHandler per word: the
same grammar, the same errors, in one place. Secret hygiene runs first, before
parsing can fail, so a malformed /connect still gets its message deleted.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update

from bot import parse as P
from bot.accounts import looks_like_key_id, looks_like_secret
from bot.errors import UserError
from handlers.common import Context, is_private, reply, services

log = logging.getLogger(__name__)

IntentHandler = Callable[[Update, Context, Any], Awaitable[None]]
ROUTES: dict[type[P.Intent], IntentHandler] = {}


def route(*kinds: type[P.Intent]) -> Callable[[IntentHandler], IntentHandler]:
    def deco(fn: IntentHandler) -> IntentHandler:
        for k in kinds:
            ROUTES[k] = fn
        return fn

    return deco


def _looks_secret(text: str) -> bool:
    words = text.split()
    return any(looks_like_secret(w) or looks_like_key_id(w) for w in words) and len(words) <= 4


async def delete_quietly(update: Update) -> bool:
    msg = update.effective_message
    if msg is None:
        return False
    try:
        return bool(await msg.delete())
    except Exception:  # already gone, or no rights in a group: nothing more we can do
        log.info("could not delete a message holding a secret in chat %s", msg.chat_id)
        return False


async def on_text(update: Update, context: Context) -> None:
    """Parse the message and hand the intent to its handler; explain any mistake."""
    msg = update.effective_message
    if msg is None or not msg.text:
        return
    text = msg.text
    private = is_private(update)
    from handlers import keys  # the connect conversation intercepts its own replies

    if private and await keys.in_connect_flow(update, context):
        return
    if P.holds_secret(text) or (not private and _looks_secret(text)):
        await delete_quietly(update)
        if not private:
            await reply(update, "I deleted that message: never post API keys in a group. "
                                "Send /connect to me in a private chat instead.")
            return
    svc = services(context)
    user = update.effective_user
    try:
        book = await svc.symbol_book(user.id if user else None)
        intent = P.parse(text, bot_username=context.bot.username, private=private, symbols=book)
        if intent is None:
            return
        handler = ROUTES.get(type(intent))
        if handler is None:
            await reply(update, f"/{html.escape(intent.command)} is coming soon.")
            return
        await handler(update, context, intent)
    except UserError as e:
        await reply(update, _html_safe(str(e)))


def _html_safe(text: str) -> str:
    """UserErrors may carry a little HTML (<b>); anything else is escaped."""
    escaped = html.escape(text, quote=False)
    for tag in ("b", "i", "code"):
        escaped = escaped.replace(f"&lt;{tag}&gt;", f"<{tag}>").replace(
            f"&lt;/{tag}&gt;", f"</{tag}>")
    return escaped
