"""Signal feeds: /feed, /signal (and free-text signals), /follow, /feeds, /feedstats."""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable

from telegram import Bot, ChatMember, ChatMemberRestricted, Update
from telegram.error import BadRequest, ChatMigrated, Forbidden

from bot import parse as P
from bot.buttons import AutoMode, ButtonData, FollowSignal, parse_id
from bot.errors import UserError
from bot.feeds import Feeds, MemberLookup
from bot.parse.signals import looks_like_signal, recognise
from handlers.access import group_admin_now
from handlers.chats import advise_rights
from handlers.common import (
    Context,
    answer_press,
    edit_pressed,
    is_private,
    read_reply,
    reply,
    topic,
)
from handlers.presses import PressHandler
from handlers.render import markup
from handlers.router import IntentHandler


def _feeds(context: Context) -> Feeds:
    return context.services.feeds


async def _is_admin(update: Update, context: Context) -> bool:
    """Asked of Telegram on every call (a demoted admin loses powers at once)."""
    return await group_admin_now(update, context)


async def _group_admin(update: Update, context: Context, what: str) -> bool:
    if is_private(update):
        await reply(update, f"{what} works in a group: add me there and use it as an admin.")
        return False
    if not await _is_admin(update, context):
        await reply(update, f"Only the group's admins can use {what}.")
        return False
    return True


async def feed(update: Update, context: Context, intent: P.Feed) -> None:
    """/feed on [NAME] | off: make this group a signal feed (group admins)."""
    if not await _group_admin(update, context, "/feed"):
        return
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    await reply(update, await _feeds(context).set_feed(chat.id, chat.title, user.id, intent.on,
                                                       intent.name), urgent=True)
    if intent.on:
        await advise_rights(update, context)  # privacy mode: say what the feed needs


async def _post(update: Update, context: Context, sig: P.Signal, source: str) -> None:
    msg, user = update.effective_message, update.effective_user
    assert msg is not None and user is not None
    feeds = _feeds(context)
    posted = await feeds.post_signal(msg.chat_id, msg.message_id, user.id, sig, source=source,
                                     text=msg.text or "", thread_id=topic(update))
    card = await reply(update, posted.text, reply_markup=markup(posted.buttons), urgent=True)
    if card is not None:
        await feeds.attach_card(posted.signal_id, card.message_id)
    feeds.start_fanout(posted.signal_id)


async def signal(update: Update, context: Context,
                 intent: P.Signal | P.SignalClose | P.SignalMoveSl) -> None:
    """/signal: post a signal, or close / move the stop of one (feed admins)."""
    if not await _group_admin(update, context, "/signal"):
        return
    if isinstance(intent, P.Signal):
        await _post(update, context, intent, "command")
        return
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    feeds = _feeds(context)
    await reply(update, html.escape(await feeds.update_signal(chat.id, user.id, intent)),
                urgent=True)
    if isinstance(intent, P.SignalClose):
        feeds.start_update(intent.signal_id, "close", None)
    else:
        feeds.start_update(intent.signal_id, "move_sl", intent.sl)


async def on_group_text(update: Update, context: Context) -> bool:
    """Free text in a feed group: an admin's message in the signal shape is a signal."""
    msg = update.effective_message
    if is_private(update) or msg is None or not msg.text or not looks_like_signal(msg.text):
        return False
    feed_row = await _feeds(context).feed_of_chat(msg.chat_id)
    if feed_row is None or not feed_row.active or not await _is_admin(update, context):
        return False  # members' messages are never signals, whatever their shape
    user = update.effective_user
    book = await context.services.symbol_book(user.id if user else None)
    sig = recognise(msg.text, book)  # UserError (a refusal with its reason) is replied
    if sig is None:
        return False
    await _post(update, context, sig, "text")
    return True



async def feedstats(update: Update, context: Context, intent: P.FeedStats) -> None:
    """/feedstats: the record from followers' real fills (aggregates only in groups)."""
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    private = is_private(update)
    text = await _feeds(context).stats_text(None if private else chat.id,
                                            user.id if private else None, intent.feed)
    await read_reply(update, context, "feedstats", text)


async def follow(update: Update, context: Context, intent: P.Follow) -> None:
    """/follow FEED risk N% [max $N] | size $N | size N: how big each signal is for you."""
    text, buttons = await _feeds(context).follow(context.user_id, intent)
    await reply(update, text, reply_markup=markup(buttons))


async def unfollow(update: Update, context: Context, intent: P.Unfollow) -> None:
    """/unfollow FEED."""
    await reply(update, await _feeds(context).unfollow(context.user_id, intent.feed))


async def feeds_list(update: Update, context: Context, intent: P.Feeds) -> None:
    """/feeds: the feeds you follow and how big."""
    await reply(update, await _feeds(context).list_follows(context.user_id))


MEMBER_STATUSES = frozenset({"creator", "administrator", "member"})
_TAG_RE = re.compile(r"</?[a-z]+>")


async def _refuse(update: Update, e: UserError) -> None:
    """A press's refusal as an alert: plain text (answers show no HTML), Telegram's 200."""
    q = update.callback_query
    assert q is not None
    await q.answer(html.unescape(_TAG_RE.sub("", str(e)))[:190], show_alert=True)


async def on_follow_press(update: Update, context: Context, press: FollowSignal) -> None:
    """📥 Follow under a signal card: a private preview for the presser."""
    try:
        # An outsider's press is refused on the press itself, before anything is sized
        # (a cached getChatMember: the answer still comes at once).
        await _feeds(context).require_member_of_signal(context.user_id, press.signal_id)
        await _follow_press(update, context, press.signal_id)
    except UserError as e:
        await _refuse(update, e)


async def on_auto_press(update: Update, context: Context, press: AutoMode) -> None:
    """Auto mode on/off under /follow and /feeds."""
    try:
        text, buttons = await _feeds(context).set_auto(context.user_id, press.feed_id, press.on)
    except UserError as e:
        await _refuse(update, e)
        return
    await answer_press(update)
    await edit_pressed(update, text, reply_markup=markup(buttons))


async def _follow_press(update: Update, context: Context, signal_id: int) -> None:
    """Follow under a signal card: answered at once (sizing asks BitMEX, which may take
    longer than Telegram waits for an answer), then the preview goes to the private chat.
    Someone the bot may not write to yet is taken there by the answer's link instead."""
    q = update.callback_query
    assert q is not None
    uid = context.user_id
    user = await context.services.get_user(uid)
    if user is None or user.blocked:
        # Telegram opens this link for the presser: /start f<id> there sends the preview.
        await q.answer(url=f"https://t.me/{context.bot.username}?start=f{signal_id}")
        return
    await answer_press(update, "Your preview is on its way to our private chat.")
    try:
        await _feeds(context).deliver_preview(uid, signal_id)
    except UserError:
        return  # deliver_preview told them privately, with the reason


async def start_follow(update: Update, context: Context, arg: str) -> bool:
    """`/start f<signal id>` (the Follow link for people new to the bot): the preview."""
    user = update.effective_user
    signal_id = parse_id(arg[1:]) if arg.startswith("f") else None
    if user is None or signal_id is None:
        return False
    try:
        await _feeds(context).deliver_preview(user.id, signal_id)
    except UserError:
        pass  # told in the chat, with the reason
    return True


async def on_edited(update: Update, context: Context) -> None:
    """An edited group message: recorded when it was a signal (the signal stays as posted)."""
    msg = update.edited_message
    if msg is not None and msg.text:
        await _feeds(context).record_edit(msg.chat_id, msg.message_id, msg.text)


def member_lookup(bot: Bot,
                  on_migrated: Callable[[int, int], Awaitable[object]] | None = None
                  ) -> MemberLookup:
    """getChatMember for the feeds' membership checks (see bot.feeds.Membership)."""
    async def ask(chat_id: int, user_id: int) -> bool:
        try:
            return in_group(await bot.get_chat_member(chat_id, user_id))
        except BadRequest:  # "user not found" and the like: not a member we can see
            return False
        except Forbidden:  # the bot was removed from the group: nobody can be checked
            return False

    async def lookup(chat_id: int, user_id: int) -> bool:
        try:
            return await ask(chat_id, user_id)
        except ChatMigrated as e:
            # The group became a supergroup while the bot was away: follow it (the feed
            # moves with it) and ask the new chat, instead of failing every /follow.
            if on_migrated is not None:
                await on_migrated(chat_id, e.new_chat_id)
            return await ask(e.new_chat_id, user_id)

    return lookup


def in_group(member: ChatMember) -> bool:
    """Creator, administrator, member, or a restricted member who is still in the group."""
    if isinstance(member, ChatMemberRestricted):
        return member.is_member
    return member.status in MEMBER_STATUSES


async def on_member_change(update: Update, context: Context) -> None:
    """Someone joined, left or was removed: a leaver's follow of this group's feed ends."""
    change = update.chat_member
    if change is None:
        return
    feeds, who = _feeds(context), change.new_chat_member.user
    if in_group(change.new_chat_member):
        feeds.membership.note(change.chat.id, who.id, True)
    else:
        await feeds.member_left(change.chat.id, who.id)


# What each intent of this area runs (handlers/__init__.py register).
ROUTES: dict[type[P.Intent], IntentHandler] = {
    P.Feed: feed,
    P.Signal: signal,
    P.SignalClose: signal,
    P.SignalMoveSl: signal,
    P.FeedStats: feedstats,
    P.Follow: follow,
    P.Unfollow: unfollow,
    P.Feeds: feeds_list,
}

BUTTONS: dict[type[ButtonData], PressHandler] = {
    FollowSignal: on_follow_press,
    AutoMode: on_auto_press,
}
