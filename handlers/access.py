"""Who may do what, checked once before any handler runs (design rule 3).

Runs as a TypeHandler in group -1: refuses users outside ALLOWED_USER_IDS, keeps
per-user command rates sane, records the user on first contact, and stops private
commands typed in groups before they reach a handler.
"""

from __future__ import annotations

import html
import logging
import time

from telegram import Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import ApplicationHandlerStop

from bot import parse as P
from bot.keyshape import looks_secret
from bot.ratelimit import UserRateLimiter
from handlers.common import Context, anonymous_admin, reply

# Read from the command table (bot/parse/): commands that touch a personal account are
# never served in a group; operators' tools only to ADMIN_IDS.
PRIVATE_ONLY = frozenset(c.name for c in P.COMMANDS if c.where == "private")
OPERATOR_ONLY = frozenset(c.name for c in P.COMMANDS if c.where == "operators")
# What members ask in groups; each answer there costs one of the group's 20 messages a
# minute, shared by everyone in it, so a member's budget there is much smaller.
GROUP_READS = frozenset(c.name for c in P.COMMANDS if c.group_read)
GROUP_READS_PER_MIN, GROUP_READS_BURST = 4.0, 3

log = logging.getLogger(__name__)

_TOUCH_EVERY = 300.0  # seconds between user-row refreshes, to keep writes off the hot path


def command_of(update: Update, bot_username: str | None = None) -> str | None:
    """The command the parser will see ("buy" for "/long@MyBot 100"), canonical, lower-case:
    the parser's own reading, so no spelling reaches a handler around the checks below."""
    msg = update.effective_message
    # A press's message is the bot's own, with the button on it: its text is no command
    # (a press on "/follow works in a private chat" is not /follow, and must be answered).
    if msg is None or not msg.text or update.callback_query is not None:
        return None
    private = update.effective_chat is not None and update.effective_chat.type == "private"
    return P.command_of(msg.text, private=private, bot_username=bot_username)


async def _guard_secrets(update: Update, context: Context, private: bool) -> None:
    """Delete any message that carries an API secret before anything else can echo it."""
    if update.callback_query is not None:
        return  # a press's message is the bot's own (its "/connect works in …" pointer too)
    msg = update.effective_message
    # A photo's or a file's words are its caption: a key pasted there is as exposed.
    text = (msg.text or msg.caption) if msg is not None else None
    if not text:
        return
    assert msg is not None
    in_flow = private and bool((context.user_data or {}).get("connect"))
    step = update.message is not None and msg.text is not None
    if in_flow and step and not text.lstrip().startswith("/"):
        return  # a step of /connect (new text, no command): that flow deletes it
    command = msg.text is not None and P.holds_secret(text)
    named = command_of(update, context.bot.username) not in (None, "connect")
    if not (command or looks_secret(text, command=named)):
        return
    deleted = await delete_quietly(update)
    if private:
        if (command and step) or in_flow:
            return  # /connect goes on with the (already deleted) message
        await reply(update, "I deleted that message: it looks like an API key, and keys "
                            "should not stay in a chat. To connect one, send /connect testnet "
                            "(or mainnet).")
    elif deleted:
        await reply(update, "I deleted that message: never post API keys in a group. "
                            "Send /connect to me in a private chat instead.", urgent=True)
    else:
        await reply(update, "⚠️ That message holds an API key and I can't delete it here "
                            "(I'm not an admin). Delete it now and revoke the key on BitMEX.",
                    urgent=True)
    raise ApplicationHandlerStop


# Statuses that make someone an admin of a group, as getChatMember reports them.
ADMIN_STATUSES = frozenset({"creator", "administrator"})


async def group_admin_now(update: Update, context: Context) -> bool:
    """Whether the sender is an admin of this group right now, asked of Telegram on every
    call: a demotion must take effect at once for commands that change the group's state,
    even when the bot hears no chat_member updates (it is not an admin, or missed one)."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None:
        return False
    if chat.type == "private" or anonymous_admin(update):
        return True
    try:
        member = await context.bot.get_chat_member(chat.id, user.id)
    except BadRequest:  # "user not found", "member list is inaccessible": not an admin
        return False
    return member.status in ADMIN_STATUSES


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
    svc = context.services
    if update.my_chat_member is not None or update.chat_member is not None:
        raise ApplicationHandlerStop  # handled before the gate (handlers/chats.py)
    msg = update.effective_message
    if msg is not None and msg.is_automatic_forward:
        # A post of the group's linked channel copied in by Telegram (from 777000): the
        # channel is not a member, so its posts are neither commands nor signals here.
        raise ApplicationHandlerStop
    user = update.effective_user
    anonymous = anonymous_admin(update)
    if user is None or (user.is_bot and not anonymous):
        raise ApplicationHandlerStop
    private = update.effective_chat is not None and update.effective_chat.type == "private"
    await _guard_secrets(update, context, private)

    # An anonymous admin cannot be matched against an allow-list of people.
    if (anonymous and svc.settings.ALLOWED_USER_IDS) or not svc.is_allowed(user.id):
        # Once an hour: a stranger who keeps typing must not make the bot type back each time.
        if update.callback_query is not None:
            if svc.refusals.due(user.id):
                await update.callback_query.answer("This bot is private.", show_alert=True)
            else:
                await update.callback_query.answer()  # stops the spinner, says nothing
        elif private and svc.refusals.due(user.id):
            await reply(update, "Sorry, this bot is private. Ask its operator for access.")
        raise ApplicationHandlerStop

    command = command_of(update, context.bot.username)
    # Every message and press counts, plain text too: each one costs the bot work (secret
    # checks, parsing, the /connect flow). Service messages and membership updates do not:
    # they are Telegram's, not the user's, and dropping one would lose a kick, a demotion or
    # a group's move to a supergroup.
    msg = update.message or update.edited_message
    counted = update.callback_query is not None or (msg is not None and (
        msg.text is not None or msg.caption is not None
        or msg.effective_attachment is not None))
    if counted:
        # Every anonymous admin everywhere shares one user id: count them per group.
        who = update.effective_chat.id if anonymous and update.effective_chat else user.id
        # Group chatter is refused silently (no reply in the group), so it must not use up
        # the one "slow down" the user gets for the streak.
        quiet = not private and command is None and update.callback_query is None
        allowed, tell = svc.ratelimit.check(who, quiet=quiet)
        if not allowed:
            wait = max(1, round(svc.ratelimit.retry_in(who)))
            if update.callback_query is not None:
                await update.callback_query.answer(f"Slow down — try again in {wait} s.")
            elif tell:
                await reply(update, f"Easy there — too many commands. Try again in {wait} s.")
            raise ApplicationHandlerStop

    if command in GROUP_READS and not private and not anonymous:
        reads = context.bot_data.group_read_limit
        if reads is None:
            reads = context.bot_data.group_read_limit = UserRateLimiter(
                GROUP_READS_PER_MIN, GROUP_READS_BURST)
        allowed, tell = reads.check(user.id)
        if not allowed:
            if tell:
                wait = max(1, round(reads.retry_in(user.id)))
                await reply(update, f"{html.escape(user.first_name)}, you asked that here a "
                                    f"lot: try again in {wait} s, or ask me in private.")
            raise ApplicationHandlerStop

    # Button data (forged, stale, private-only kinds pressed in a group) is checked where
    # it is decoded, once: handlers/presses.py.

    seen = context.bot_data.seen_users
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
