"""/start and /help."""

from __future__ import annotations

import html

from telegram import Update

from bot.parsing.usage import help_text
from handlers.common import Context, is_private, reply, services


async def start(update: Update, context: Context) -> None:
    """Greet, show the active account, point to the first steps."""
    svc = services(context)
    user = update.effective_user
    assert user is not None
    name = html.escape(user.first_name or "trader")
    if not is_private(update):
        await reply(update, f"Hi {name}! In groups I run signal feeds and shared alerts. "
                            "Talk to me in private to connect your account. /help")
        return
    summary = await svc.account_summary(user.id) if hasattr(svc, "account_summary") else None
    lines = [f"Hi {name}! I run your BitMEX account from this chat: every order is shown "
             "to you first and placed only when you press <b>Confirm</b>."]
    if summary:
        lines.append(summary)
    else:
        lines.append("No account connected yet. /connect testnet adds a BitMEX key "
                     "(read-only and trade keys; never withdraw), or /connect paper "
                     "to try with a simulated account.")
    lines.append("Try /price btc, or /help for every command.")
    await reply(update, "\n\n".join(lines))


async def help_command(update: Update, context: Context) -> None:
    """The command list, or the full grammar of one command."""
    topic = context.args[0] if context.args else None
    await reply(update, f"<pre>{html.escape(help_text(topic))}</pre>")
