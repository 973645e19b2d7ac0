"""Who may do what, checked once before any handler runs (design rule 3).

Runs as a TypeHandler in group -1: refuses users outside ALLOWED_USER_IDS, keeps
per-user command rates sane, records the user on first contact, and stops private
commands typed in groups before they reach a handler.
"""

from __future__ import annotations

import html
import logging
import re
import time

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop

from bot import parse as P
from bot.accounts import looks_like_key_id, looks_like_secret
from bot.parsing.grammar import _HEAD_RE as HEAD_RE
from bot.parsing.usage import canonical
from bot.ratelimit import UserRateLimiter
from handlers.common import Context, anonymous_admin, reply, services

# Commands that touch a personal account: never served in a group.
PRIVATE_ONLY = frozenset({
    "connect", "accounts", "use", "disconnect", "buy", "sell", "long", "short", "close",
    "cancel", "orders", "positions", "pos", "balance", "leverage", "pnl", "liqalert",
    "summary", "tz", "deadman", "settings", "follow", "unfollow", "feeds",
})
OPERATOR_ONLY = frozenset({"stats", "broadcast"})
# What members ask in groups; each answer there costs one of the group's 20 messages a
# minute, shared by everyone in it, so a member's budget there is much smaller.
GROUP_READS = frozenset({"help", "feedstats", "start"})
GROUP_READS_PER_MIN, GROUP_READS_BURST = 4.0, 3
# Buttons that act on the presser's own account (cards, rows, keys, the /start menu). The
# bot shows them only in private chats, but a modified client can send any callback data on
# any message it sees, so a press in a group would post the presser's account there.
PRIVATE_BUTTONS = ("t:", "oc:", "pc:", "k:", "m:")
# Every button the bot makes is ASCII with short ids; anything else is forged.
_FORGED_RE = re.compile(r"[^\x20-\x7e]|[0-9]{16}")

log = logging.getLogger(__name__)

_TOUCH_EVERY = 300.0  # seconds between user-row refreshes, to keep writes off the hot path


def command_of(update: Update, bot_username: str | None = None) -> str | None:
    """The command the parser will see ("buy" for "/long@MyBot 100"), canonical, lower-case.

    Read exactly as bot/parsing/grammar.py reads it (leading blanks, no slash in a private
    chat, aliases), so no spelling reaches a handler around the checks below.
    """
    msg = update.effective_message
    if msg is None or not msg.text:
        return None
    m = HEAD_RE.match(msg.text)
    if m is None:
        return None
    slash, word, addressee = m.group(1), m.group(2), m.group(3)
    if addressee is not None and (not slash or (
            bot_username is not None
            and addressee.lower() != bot_username.lstrip("@").lower())):
        return None  # another bot's command
    private = update.effective_chat is not None and update.effective_chat.type == "private"
    if not slash and not private:
        return None
    name = canonical(word)
    if name is None and not slash:
        return None  # small talk in a private chat
    return name or word.lower()


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
                            "Send /connect to me in a private chat instead.", urgent=True)
    else:
        await reply(update, "⚠️ That message holds an API key and I can't delete it here "
                            "(I'm not an admin). Delete it now and revoke the key on BitMEX.",
                    urgent=True)
    raise ApplicationHandlerStop


def looks_secret(text: str) -> bool:
    """A short message with a word shaped like a BitMEX key id or secret, or a message of any
    length with a word only a secret looks like (48 characters mixing cases and digits: a
    transaction hash is lower-case hex, a link has slashes)."""
    words = text.split()
    if len(words) <= 4 and any(looks_like_secret(w) or looks_like_key_id(w) for w in words):
        return True
    return any(_SECRET_WORD_RE.fullmatch(w.strip(".,;:'\"()[]")) for w in words)


_SECRET_WORD_RE = re.compile(r"(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])[A-Za-z0-9_-]{40,64}")


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
    anonymous = anonymous_admin(update)
    if user is None or (user.is_bot and not anonymous):
        raise ApplicationHandlerStop
    private = update.effective_chat is not None and update.effective_chat.type == "private"
    await _guard_secrets(update, private)

    # An anonymous admin cannot be matched against an allow-list of people.
    if (anonymous and svc.settings.ALLOWED_USER_IDS) or not svc.is_allowed(user.id):
        if update.callback_query is not None:
            await update.callback_query.answer("This bot is private.", show_alert=True)
        elif private:
            await reply(update, "Sorry, this bot is private. Ask its operator for access.")
        raise ApplicationHandlerStop

    command = command_of(update, context.bot.username)
    counted = command is not None or update.callback_query is not None
    if counted:
        # Every anonymous admin everywhere shares one user id: count them per group.
        who = update.effective_chat.id if anonymous and update.effective_chat else user.id
        allowed, tell = svc.ratelimit.check(who)
        if not allowed:
            wait = max(1, round(svc.ratelimit.retry_in(who)))
            if update.callback_query is not None:
                await update.callback_query.answer(f"Slow down — try again in {wait} s.")
            elif tell:
                await reply(update, f"Easy there — too many commands. Try again in {wait} s.")
            raise ApplicationHandlerStop

    if command in GROUP_READS and not private and not anonymous:
        reads = context.application.bot_data.get("group_read_limit")
        if reads is None:
            reads = context.application.bot_data["group_read_limit"] = UserRateLimiter(
                GROUP_READS_PER_MIN, GROUP_READS_BURST)
        allowed, tell = reads.check(user.id)
        if not allowed:
            if tell:
                wait = max(1, round(reads.retry_in(user.id)))
                await reply(update, f"{html.escape(user.first_name)}, you asked that here a "
                                    f"lot: try again in {wait} s, or ask me in private.")
            raise ApplicationHandlerStop

    q = update.callback_query
    if q is not None:
        data = q.data or ""
        if _FORGED_RE.search(data):
            await q.answer("This button is no longer valid.")
            raise ApplicationHandlerStop
        if not private and data.startswith(PRIVATE_BUTTONS):
            await q.answer("That works in a private chat with me.", show_alert=True)
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
