"""The single error handler (design rule 4): log with a reference, apologise briefly."""

from __future__ import annotations

import logging
import re
import secrets

from telegram import Update
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.errors import (
    AuthError,
    ExchangeError,
    InsufficientBalance,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    Rejected,
    Temporary,
    UserError,
)
from handlers.common import Context, topic
from handlers.request import InboxDown

log = logging.getLogger("bot.errors")


def exchange_words(err: ExchangeError) -> str | None:
    """Expected exchange trouble in plain words; None for anything that is our bug."""
    if isinstance(err, RateLimited):
        return (f"BitMEX asks us to slow down for your key. Try again in "
                f"{max(1, round(err.retry_after))} s.")
    if isinstance(err, Temporary):
        return ("BitMEX is not answering right now (overloaded or unreachable). "
                "Please try again in a moment.")
    if isinstance(err, OutcomeUnknown):
        return ("BitMEX did not confirm the request in time. Check /orders before "
                "trying again, so nothing is doubled.")
    if isinstance(err, AuthError):
        return (f"BitMEX refused your API key ({err.message.rstrip('.')}). It may have been "
                "deleted, disabled or expired: /connect a new one.")
    if isinstance(err, PermissionDenied):
        return "Your API key lacks the permission for this on BitMEX."
    if isinstance(err, InsufficientBalance):
        return err.message  # already in plain words, with the exchange's own
    if isinstance(err, Rejected | NotFound):
        return f"BitMEX refused this: {err.message}"
    return None


def failure_cause(err: object) -> str:
    """The error handler's branch, as the metrics label it."""
    if isinstance(err, Forbidden):
        return "blocked"
    if isinstance(err, BadRequest):  # a subclass of NetworkError: a refusal, not transport
        return "refused"
    if isinstance(err, RetryAfter | TimedOut | NetworkError):
        return "telegram"
    if isinstance(err, UserError):
        return "user"
    if isinstance(err, ExchangeError) and exchange_words(err) is not None:
        return "exchange"
    return "bug"
def benign_refusal(err: BadRequest) -> bool:
    """Refusals that change nothing for the user: an edit to what the card already shows,
    or a press answered too late (its outcome is on the card)."""
    text = err.message.lower()
    return "message is not modified" in text or "query is too old" in text


def new_ref() -> str:
    return secrets.token_hex(3).upper()


async def on_error(update: object, context: Context) -> None:
    """Log the failure (redacted by the log filter) and tell the user with a reference id."""
    err = context.error
    services = context.bot_data.services
    if services is not None:
        services.metrics.update_failed(failure_cause(err))
    if isinstance(err, Forbidden):
        log.info("chat unreachable: %s", err)  # the user blocked us; nothing to say to them
        return
    if isinstance(err, BadRequest) and benign_refusal(err):
        log.info("Telegram: %s", err.message)  # the chat already shows the right thing
        return
    if isinstance(err, InboxDown):
        # Polling only (the update inbox could not keep a batch): nobody to tell, and
        # Telegram sends the batch again.
        log.warning("polling: %s", err.message)
        return
    # PTB's BadRequest subclasses NetworkError: a refusal is our bug, not the network's.
    if isinstance(err, RetryAfter | TimedOut | NetworkError) and not isinstance(err, BadRequest):
        # Telegram itself is refusing or unreachable: an apology would go the same way.
        # Cards stay correct regardless (a later press shows their stored state).
        log.warning("Telegram transport problem: %s", err)
        return
    if isinstance(err, UserError) and isinstance(update, Update):
        # Normally answered by the handler; one that slipped through is still the
        # user's to fix, not a bug to apologise for (plain text: no HTML here).
        await _tell(update, re.sub(r"</?(b|i|code)>", "", str(err)))
        return
    if isinstance(err, ExchangeError) and isinstance(update, Update):
        words = exchange_words(err)
        if words is not None:
            log.warning("exchange trouble for an update: %s", err)
            await _tell(update, words)
            return
    ref = new_ref()
    log.error("update failed ref=%s: %r", ref, err, exc_info=err)
    if not isinstance(update, Update):
        return
    text = (
        f"Sorry, something went wrong on our side (ref {ref}). "
        "Please try again; if it keeps happening, quote the ref to the operator."
    )
    await _tell(update, text, short=f"Something went wrong (ref {ref}).")


async def _tell(update: Update, text: str, short: str | None = None) -> None:
    if update.callback_query is not None:
        try:
            await update.callback_query.answer((short or text)[:190])
        except Exception:  # answered already (presses are answered first): the chat tells
            log.debug("the press was answered already")
    try:
        if update.effective_chat is not None:
            # In a forum, the apology goes to the topic of the command that failed.
            await update.effective_chat.send_message(text, message_thread_id=topic(update))
    except Exception:  # the notice itself failing must not loop back here
        log.warning("could not deliver an error notice")
