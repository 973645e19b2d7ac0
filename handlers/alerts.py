"""/alert, /alerts, /unalert and /liqfeed; in groups only admins change them."""

from __future__ import annotations

import html

from telegram import Update

from bot import parse as P
from bot.buttons import ButtonData, DeleteAlert
from bot.errors import UserError
from bot.liqfeed import compact
from handlers.access import group_admin_now
from handlers.common import Context, edit_pressed, reply, topic
from handlers.presses import PressHandler
from handlers.render import markup
from handlers.router import IntentHandler


async def is_chat_admin(update: Update, context: Context) -> bool:
    """True in a private chat; in a group, whether the user is an admin now (uncached)."""
    return await group_admin_now(update, context)


async def _require_admin(update: Update, context: Context, what: str) -> None:
    if not await is_chat_admin(update, context):
        raise UserError(f"Only group admins can {what} here. "
                        "You can set your own in a private chat with me.")


async def alert(update: Update, context: Context,
                intent: P.PriceAlert | P.MoveAlert | P.FundingAlert) -> None:
    """/alert SYM above|below PRICE, move N% [in W], funding above|below X%."""
    await _require_admin(update, context, "set alerts")
    uid, cid = context.user_id, context.chat_id
    svc = context.services.alerts
    info = await svc.create(uid, cid, intent, topic(update))
    await reply(update, f"✅ Alert set: {svc.describe(info)}\nI'll post here when it fires. "
                        "/alerts lists them.")


async def alerts(update: Update, context: Context, intent: P.Alerts) -> None:
    """/alerts: this chat's active alerts, each with a Delete button."""
    cid = context.chat_id
    svc = context.services.alerts
    text, buttons = svc.listing(await svc.for_chat(cid))
    await reply(update, text, reply_markup=markup(buttons))


async def unalert(update: Update, context: Context, intent: P.Unalert) -> None:
    """/unalert ID | all."""
    await _require_admin(update, context, "delete alerts")
    cid = context.chat_id
    svc = context.services.alerts
    if intent.alert_id is None:
        n = await svc.delete_all(cid)
        await reply(update, f"Deleted {n} alert{'s' if n != 1 else ''}." if n else
                    "No active alerts here.")
        return
    info = await svc.delete(cid, intent.alert_id)
    await reply(update, f"Deleted {svc.describe(info)}.")


async def liqfeed(update: Update, context: Context, intent: P.LiqFeed) -> None:
    """/liqfeed [SYM] min SIZE | off: market liquidations posted to this chat."""
    await _require_admin(update, context, "change the liquidation feed")
    uid, cid = context.user_id, context.chat_id
    feed = context.services.liqfeed
    what = html.escape(intent.symbol) if intent.symbol else "all symbols"
    if intent.min_usd is None:
        n = await feed.unsubscribe(cid, intent.symbol)
        await reply(update, f"Liquidation feed off ({what})." if n else
                    "No liquidation feed was on here.")
        return
    await feed.subscribe(cid, intent.symbol, intent.min_usd, uid, topic(update))
    await reply(update, f"🔥 Liquidation feed on: {what}, orders of ${compact(intent.min_usd)} "
                        "or more. Bursts come as one message. /liqfeed off stops it.")


async def on_alert_press(update: Update, context: Context, press: DeleteAlert) -> None:
    """🗑 Delete under /alerts: deletes the alert and refreshes the list."""
    q = update.callback_query
    assert q is not None
    alert_id = press.alert_id
    if not await is_chat_admin(update, context):
        await q.answer("Only group admins can delete alerts here.", show_alert=True)
        return
    cid = context.chat_id
    svc = context.services.alerts
    try:
        await svc.delete(cid, alert_id)
    except UserError as e:
        await q.answer(str(e)[:190])
    else:
        await q.answer(f"Deleted alert #{alert_id}.")
    if q.message is not None:
        text, buttons = svc.listing(await svc.for_chat(cid))
        await edit_pressed(update, text, reply_markup=markup(buttons))


# What each intent of this area runs (handlers/__init__.py register).
ROUTES: dict[type[P.Intent], IntentHandler] = {
    P.PriceAlert: alert,
    P.MoveAlert: alert,
    P.FundingAlert: alert,
    P.Alerts: alerts,
    P.Unalert: unalert,
    P.LiqFeed: liqfeed,
}


BUTTONS: dict[type[ButtonData], PressHandler] = {DeleteAlert: on_alert_press}
