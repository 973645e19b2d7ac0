"""Who may do what, checked once before any handler runs (design rule 3).

Runs as a TypeHandler in group -1: refuses users outside ALLOWED_USER_IDS, keeps
per-user command rates sane, records the user on first contact, and stops private
commands typed in groups before they reach a handler.
"""

from __future__ import annotations

import logging
import time

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop

from bot import parse as P
from bot.accounts import looks_like_key_id, looks_like_secret
from handlers.common import Context, reply, services

# Commands that touch a personal account: never served in a group.
PRIVATE_ONLY = frozenset({
    "connect", "accounts", "use", "disconnect", "buy", "sell", "long", "short", "close",
    "cancel", "orders", "positions", "pos", "balance", "leverage", "pnl", "liqalert",
    "summary", "tz", "deadman", "settings", "follow", "unfollow", "feeds",
})
OPERATOR_ONLY = frozenset({"stats", "broadcast"})

log = logging.getLogger(__name__)

_TOUCH_EVERY = 300.0  # seconds between user-row refreshes, to keep writes off the hot path


def command_of(update: Update) -> str | None:
    """The command word of a message ("buy" for "/buy@MyBot 100"), lower-case."""
    msg = update.effective_message
    if msg is None or not msg.text or not msg.text.startswith("/"):
        return None
    word = msg.text.split(maxsplit=1)[0][1:]
    return word.split("@", 1)[0].lower() or None


async def _guard_secrets(update: Update, private: bool) -> None:
    """Delete any message that carries an API secret before anything else can echo it."""
    msg = update.effective_message
    text = msg.text if msg is not None else None
    if not text:
        return
    if not (P.holds_secret(text) or (not private and looks_secret(text))):
        return
    deleted = await delete_quietly(update)
    if private:
        return  # the /connect handler goes on with the (already deleted) message
    if deleted:
        await reply(update, "I deleted that message: never post API keys in a group. "
                            "Send /connect to me in a private chat instead.")
    else:
        await reply(update, "⚠️ That message holds an API key and I can't delete it here "
                            "(I'm not an admin). Delete it now and revoke the key on BitMEX.")
    raise ApplicationHandlerStop


def looks_secret(text: str) -> bool:
    """A short message with a word shaped like a BitMEX key id or secret."""
    words = text.split()
    return len(words) <= 4 and any(looks_like_secret(w) or looks_like_key_id(w) for w in words)


async def delete_quietly(update: Update) -> bool:
    msg = update.effective_message
    if msg is None:
        return False
    try:
        return bool(await msg.delete())
    except TelegramError:  # already gone, or no rights in a group
        log.info("could not delete a message holding a secret in chat %s", msg.chat_id)
        return False


async def gate(update: Update, context: Context) -> None:
    """Refuse or let through; a refusal ends the update here."""
    svc = services(context)
    user = update.effective_user
    if user is None or user.is_bot:
        raise ApplicationHandlerStop
    private = update.effective_chat is not None and update.effective_chat.type == "private"
    await _guard_secrets(update, private)

    if not svc.is_allowed(user.id):
        if update.callback_query is not None:
            await update.callback_query.answer("This bot is private.", show_alert=True)
        elif private:
            await reply(update, "Sorry, this bot is private. Ask its operator for access.")
        raise ApplicationHandlerStop

    command = command_of(update)
    counted = command is not None or update.callback_query is not None
    if counted:
        allowed, tell = svc.ratelimit.check(user.id)
        if not allowed:
            wait = max(1, round(svc.ratelimit.retry_in(user.id)))
            if update.callback_query is not None:
                await update.callback_query.answer(f"Slow down — try again in {wait} s.")
            elif tell:
                await reply(update, f"Easy there — too many commands. Try again in {wait} s.")
            raise ApplicationHandlerStop

    seen: dict[int, float] = context.application.bot_data.setdefault("seen_users", {})
    now = time.monotonic()
    if private and now - seen.get(user.id, -_TOUCH_EVERY) >= _TOUCH_EVERY:
        seen[user.id] = now
        await svc.touch_user(user.id, user.username, user.first_name)

    if command in OPERATOR_ONLY and not svc.is_admin(user.id):
        raise ApplicationHandlerStop  # silently: operators' tools are not advertised
    if command in PRIVATE_ONLY and not private:
        me = context.bot.username
        await reply(
            update,
            f"/{command} works in a private chat with me, so your account stays private: "
            f'<a href="https://t.me/{me}">open the chat</a>.',
        )
        raise ApplicationHandlerStop
