"""/start and /help."""

from __future__ import annotations

import html

from telegram import Update

from bot import parse as P
from bot.buttons import ButtonData, MenuPress, button
from handlers import trade
from handlers.chats import advise_rights
from handlers.common import Context, answer_press, is_private, read_reply, reply
from handlers.feeds import start_follow
from handlers.presses import PressHandler
from handlers.render import account_line, markup
from handlers.router import IntentHandler

MENU = [
    [button("📊 Positions", MenuPress("positions")), button("📋 Orders", MenuPress("orders"))],
    [button("💰 Balance", MenuPress("balance")), button("❓ Help", MenuPress("help"))],
]


async def start(update: Update, context: Context) -> None:
    """Greet, show the active account, point to the first steps."""
    svc = context.services
    user = update.effective_user
    assert user is not None
    name = html.escape(user.first_name or "trader")
    if not is_private(update):
        await reply(update, f"Hi {name}! In groups I run signal feeds and shared alerts. "
                            "Talk to me in private to connect your account. /help")
        await advise_rights(update, context)
        return
    acc = await svc.accounts.active(user.id)
    if context.args and context.args[0].startswith("f"):
        await svc.touch_user(user.id, user.username, user.first_name)  # reachable now
        if await start_follow(update, context, context.args[0]):
            return
    lines = [f"Hi {name}! I run your BitMEX account from this chat: every order is shown "
             "to you first and placed only when you press <b>Confirm</b>."]
    if acc is not None:
        lines.append(f"Active account: {account_line(acc)}")
        await reply(update, "\n\n".join(lines), reply_markup=markup(MENU))
        return
    lines.append("No account connected yet. /connect testnet adds a BitMEX key "
                 "(read-only and trade keys; never withdraw), or /connect paper "
                 "to try with a simulated account.")
    lines.append("Try /price btc, or /help for every command.")
    await reply(update, "\n\n".join(lines))


def _help(update: Update, context: Context, topic: str | None) -> str:
    user = update.effective_user
    operator = user is not None and context.services.is_admin(user.id)
    return P.help_text(topic, group=not is_private(update), operator=operator)


async def help_command(update: Update, context: Context) -> None:
    """The command list, or the full grammar of one command."""
    topic = context.args[0] if context.args else None
    await read_reply(update, context, "help",
                     f"<pre>{html.escape(_help(update, context, topic))}</pre>")


async def start_word(update: Update, context: Context, intent: P.Start) -> None:
    """`start` typed without the slash."""
    await start(update, context)


async def help_word(update: Update, context: Context, intent: P.Help) -> None:
    """`help buy` typed without the slash."""
    await reply(update, f"<pre>{html.escape(_help(update, context, intent.topic))}</pre>")


async def on_menu_press(update: Update, context: Context, press: MenuPress) -> None:
    """The /start menu buttons run the same handlers as the typed commands."""
    await answer_press(update)
    what = press.item
    if what == "positions":
        await trade.positions(update, context, P.Positions())
    elif what == "orders":
        await trade.orders(update, context, P.Orders())
    elif what == "balance":
        await trade.balance(update, context, P.Balance())
    else:
        await reply(update, f"<pre>{html.escape(_help(update, context, None))}</pre>")


async def on_stale_press(update: Update, context: Context) -> None:
    """Buttons that do not decode (forged, or lost callback data): always answer the query."""
    if update.callback_query is not None:
        await update.callback_query.answer("This button is no longer valid.")


# What each intent of this area runs (handlers/__init__.py register).
ROUTES: dict[type[P.Intent], IntentHandler] = {
    P.Start: start_word,
    P.Help: help_word,
}


BUTTONS: dict[type[ButtonData], PressHandler] = {MenuPress: on_menu_press}
