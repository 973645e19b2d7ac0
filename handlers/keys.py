"""/connect (one message or two steps), /accounts, /use, /disconnect."""

from __future__ import annotations

import html
import logging
import time
from typing import Any

from telegram import Update
from telegram.ext import JobQueue

from bot import parse as P
from bot.accounts import Connected
from bot.buttons import ButtonData, ForgetKey, KeepKey, button
from bot.errors import UserError
from bot.logs import expect_secret, stop_expecting
from handlers.access import delete_quietly
from handlers.common import Context, edit_pressed, reply
from handlers.presses import PressHandler
from handlers.render import UNBOUND_WARNING, account_line, balances, markup
from handlers.router import IntentHandler, html_safe

log = logging.getLogger(__name__)

FLOW_TIMEOUT = 300.0  # seconds a user has to paste the key id and the secret
KEY_PAGE = "BitMEX → Account → API Keys → Create Key (Order, and optionally Order Cancel)"


def _flow(context: Context) -> dict[str, Any] | None:
    ud = context.user_data
    return ud.get("connect") if ud is not None else None


def _set_flow(context: Context, flow: dict[str, Any] | None, user_id: int | None = None) -> None:
    """Start, advance or end the flow; a started one gets a job that ends it on time."""
    if context.user_data is None:
        return
    if flow is None:
        context.user_data.pop("connect", None)
        if user_id is not None:
            stop_expecting(user_id)
        return
    context.user_data["connect"] = flow
    # Any: PTB types the queue by the context's own type variable, which mypy cannot bind.
    jq: JobQueue[Any] | None = context.job_queue
    if user_id is not None:
        # Library debug logs print the next messages before any handler runs: mask them.
        expect_secret(user_id, FLOW_TIMEOUT + 5)
    if user_id is not None and jq is not None:
        for job in jq.get_jobs_by_name(f"connect:{user_id}"):
            job.schedule_removal()
        jq.run_once(_flow_timeout, FLOW_TIMEOUT + 1, chat_id=user_id, user_id=user_id,
                    name=f"connect:{user_id}")


async def _flow_timeout(context: Context) -> None:
    """Nobody answered: say the flow ended, so a later paste is not taken as a secret step."""
    flow = _flow(context)
    if flow is None or time.monotonic() <= flow["deadline"]:
        return
    assert context.job is not None and context.job.chat_id is not None
    _set_flow(context, None, context.job.user_id)
    # Through the delivery queue, not as a reply: five minutes after the person wrote it is
    # a bulk message to Telegram, counted against the bot's 30 a second with the queue's.
    await context.services.notifier.send(context.job.chat_id,
                                         "Connecting timed out; nothing was stored. Send "
                                         "/connect again when you have the key at hand.")


async def in_connect_flow(update: Update, context: Context) -> bool:
    """Consume the message if it is the next step of a /connect conversation."""
    flow = _flow(context)
    msg = update.effective_message
    if flow is None or msg is None or not msg.text:
        return False
    text = msg.text.strip()
    uid = context.user_id if update.effective_user is not None else None
    if text.startswith("/"):
        _set_flow(context, None, uid)
        if text.split()[0].lower() in ("/cancel", "/stop"):
            await reply(update, "Connecting cancelled. Nothing was stored.")
            return True
        return False  # another command: the flow ends, the command runs
    # Whatever it is, it may hold a secret: it goes before anything else happens.
    await delete_quietly(update)
    if time.monotonic() > flow["deadline"]:
        _set_flow(context, None, uid)
        await reply(update, "That took too long, so I deleted your message and stopped. "
                            "Send /connect again when you have the key at hand.")
        return True
    if flow["step"] == "key":
        flow.update(step="secret", key=text, deadline=time.monotonic() + FLOW_TIMEOUT)
        _set_flow(context, flow, context.user_id)  # the clock starts again
        await reply(update, "Got the key id (message deleted). Now send the <b>API secret</b>. "
                            "I'll delete it at once. /cancel to stop.")
        return True
    _set_flow(context, None, uid)
    await _finish_connect(update, context, flow["network"], flow["key"], text)
    return True


async def _finish_connect(update: Update, context: Context, network: str, key: str,
                          secret: str) -> None:
    await context.bot.send_chat_action(context.user_id, "typing")
    try:
        result = await context.services.accounts.connect(context.user_id, network,
                                                          key, secret)
    except UserError as e:
        await reply(update, html_safe(str(e)))
        return
    await reply(update, _connected_text(result))


def _connected_text(result: Connected) -> str:
    acc = result.account
    what = "a simulated account" if acc.network == "paper" else f"key {html.escape(acc.masked)}"
    lines = [f"✅ Connected <b>{acc.network}</b> ({what}) — now active."]
    if acc.read_only:
        lines.append("This key is read-only (no Order permission): I can show your account "
                     "but not trade.")
    if acc.unbound_mainnet:
        lines.append(UNBOUND_WARNING)
    lines.append(balances(result.margins))
    lines.append("Try /balance, /positions or /buy.")
    return "\n".join(lines)


async def connect(update: Update, context: Context, intent: P.Connect) -> None:
    """/connect [network] [KEY SECRET]: verify and store a key, or start the two-step flow."""
    svc = context.services
    if intent.network == "paper":
        result = await svc.accounts.connect_paper(context.user_id)
        await reply(update, _connected_text(result))
        return
    if intent.key_id and intent.secret:
        # The router already deleted the message that carried them.
        await _finish_connect(update, context, intent.network, intent.key_id, intent.secret)
        return
    _set_flow(context, {"network": intent.network, "step": "key",
                        "deadline": time.monotonic() + FLOW_TIMEOUT}, context.user_id)
    await reply(update, f"Connecting a <b>{intent.network}</b> key. Create one at {KEY_PAGE}; "
                        "never give it Withdraw permission.\nSend the <b>API key id</b> now "
                        "(I'll delete every message that holds a secret). /cancel to stop.")


async def accounts(update: Update, context: Context, intent: P.Accounts) -> None:
    """/accounts: every connected account, the active one marked."""
    rows = await context.services.accounts.list(context.user_id)
    if not rows:
        await reply(update, "No accounts yet. /connect testnet or /connect paper.")
        return
    await reply(update, "<b>Accounts</b>\n" + "\n".join(account_line(a) for a in rows)
                + "\n/use NETWORK switches.")


async def use(update: Update, context: Context, intent: P.Use) -> None:
    """/use NETWORK: switch the active account."""
    acc = await context.services.accounts.use(context.user_id, intent.network)
    await reply(update, f"Active account: {account_line(acc)}")


async def disconnect(update: Update, context: Context, intent: P.Disconnect) -> None:
    """/disconnect [network]: ask first, then forget the key."""
    svc = context.services
    network = intent.network or (await svc.accounts.require_active(
        context.user_id)).network
    known = {a.network for a in await svc.accounts.list(context.user_id)}
    if network not in known:
        raise UserError(f"No {network} account is connected.")
    buttons = [[button("🗑 Forget it", ForgetKey(network)), button("Keep", KeepKey())]]
    await reply(update, f"Forget your <b>{network}</b> key? The encrypted secret is deleted; "
                        "open orders on BitMEX stay as they are.", reply_markup=markup(buttons))


async def on_disconnect_press(update: Update, context: Context,
                              press: ForgetKey | KeepKey) -> None:
    """The Forget/Keep buttons: act only on the presser's own account."""
    q = update.callback_query
    assert q is not None
    if isinstance(press, ForgetKey):
        try:
            await context.services.accounts.disconnect(context.user_id, press.network)
        except UserError as e:
            await q.answer(str(e)[:190], show_alert=True)
            return
        await q.answer("Forgotten")
        await _say_on(update, f"🗑 Your {html.escape(press.network)} key was deleted.")
        return
    await q.answer("Kept")
    await _say_on(update, "Kept your key.")


async def _say_on(update: Update, text: str) -> None:
    """The outcome in place of the prompt, or as a new message when the pressed message
    cannot take it: the buttons' data is the same on any message, so a stale or forged
    press may come from a photo (a chart), which has no text to edit."""
    await edit_pressed(update, text, parse_mode=None)


# What each intent of this area runs (handlers/__init__.py register).
ROUTES: dict[type[P.Intent], IntentHandler] = {
    P.Connect: connect,
    P.Accounts: accounts,
    P.Use: use,
    P.Disconnect: disconnect,
}

BUTTONS: dict[type[ButtonData], PressHandler] = {
    ForgetKey: on_disconnect_press,
    KeepKey: on_disconnect_press,
}
