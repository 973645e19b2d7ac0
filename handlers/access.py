"""Who may do what, checked once before any handler runs (design rule 3).

Runs as a TypeHandler in group -1: refuses users outside ALLOWED_USER_IDS, keeps
per-user command rates sane, records the user on first contact, and stops private
commands typed in groups before they reach a handler.
"""

from __future__ import annotations

import time

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from handlers.common import Context, reply, services

# Commands that touch a personal account: never served in a group.
PRIVATE_ONLY = frozenset({
    "connect", "accounts", "use", "disconnect", "buy", "sell", "long", "short", "close",
    "cancel", "orders", "positions", "pos", "balance", "leverage", "pnl", "liqalert",
    "summary", "tz", "deadman", "settings", "follow", "unfollow", "feeds",
})
OPERATOR_ONLY = frozenset({"stats", "broadcast"})

_TOUCH_EVERY = 300.0  # seconds between user-row refreshes, to keep writes off the hot path


def command_of(update: Update) -> str | None:
    """The command word of a message ("buy" for "/buy@MyBot 100"), lower-case."""
    msg = update.effective_message
    if msg is None or not msg.text or not msg.text.startswith("/"):
        return None
    word = msg.text.split(maxsplit=1)[0][1:]
    return word.split("@", 1)[0].lower() or None


async def gate(update: Update, context: Context) -> None:
    """Refuse or let through; a refusal ends the update here."""
    svc = services(context)
    user = update.effective_user
    if user is None or user.is_bot:
        raise ApplicationHandlerStop
    private = update.effective_chat is not None and update.effective_chat.type == "private"

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
