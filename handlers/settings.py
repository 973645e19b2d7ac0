"""/tz and /settings."""

from __future__ import annotations

import html

from telegram import Update

from bot import parse as P
from bot.buttons import ButtonData
from handlers import jobs
from handlers.common import Context, reply
from handlers.presses import PressHandler
from handlers.router import IntentHandler


async def tz(update: Update, context: Context, intent: P.Tz) -> None:
    """/tz ZONE: the zone summaries and quiet hours follow."""
    svc = context.services
    text = await svc.prefs.set_tz(context.user_id, intent)
    jq = context.application.job_queue
    if jq is not None:
        # A registered summary holds a UTC instant: move it to the new zone's wall time.
        for due in await svc.schedules.due_of_user(context.user_id):
            jobs.schedule(jq, due)
    await reply(update, text)


async def settings(update: Update, context: Context, intent: P.Settings) -> None:
    """/settings [key value]: show the settings, or change one and show them."""
    prefs = context.services.prefs
    if intent.key is not None and intent.value is not None:
        await prefs.apply(context.user_id, intent.key, intent.value)
        head = f"✅ {html.escape(intent.key)} → <b>{html.escape(intent.value)}</b>\n\n"
    else:
        head = ""
    await reply(update, head + await prefs.show(context.user_id))


# What each intent of this area runs (handlers/__init__.py register).
ROUTES: dict[type[P.Intent], IntentHandler] = {
    P.Tz: tz,
    P.Settings: settings,
}


BUTTONS: dict[type[ButtonData], PressHandler] = {}  # no buttons of its own
