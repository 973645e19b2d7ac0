"""The single error handler (design rule 4): log with a reference, apologise briefly."""

from __future__ import annotations

import logging
import secrets

from telegram import Update
from telegram.error import Forbidden, NetworkError, RetryAfter, TimedOut

from handlers.common import Context

log = logging.getLogger("bot.errors")


def new_ref() -> str:
    return secrets.token_hex(3).upper()


async def on_error(update: object, context: Context) -> None:
    """Log the failure (redacted by the log filter) and tell the user with a reference id."""
    err = context.error
    if isinstance(err, Forbidden):
        log.info("chat unreachable: %s", err)  # the user blocked us; nothing to say to them
        return
    if isinstance(err, RetryAfter | TimedOut | NetworkError) and not isinstance(update, Update):
        log.warning("Telegram transport problem: %s", err)
        return
    ref = new_ref()
    log.error("update failed ref=%s: %r", ref, err, exc_info=err)
    if not isinstance(update, Update):
        return
    text = (
        f"Sorry, something went wrong on our side (ref {ref}). "
        "Please try again; if it keeps happening, quote the ref to the operator."
    )
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(f"Something went wrong (ref {ref}).")
        if update.effective_chat is not None:
            await update.effective_chat.send_message(text)
    except Exception:  # the apology itself failing must not loop back here
        log.warning("could not deliver the error notice ref=%s", ref)
