"""/tz and /settings."""

from __future__ import annotations

import html

from telegram import Update

from bot import parse as P
from bot.prefs import Preferences
from bot.scheduler import Schedules
from handlers import jobs
from handlers.common import Context, reply, services
from handlers.router import route


def _uid(update: Update) -> int:
    assert update.effective_user is not None
    return update.effective_user.id


@route(P.Tz)
async def tz(update: Update, context: Context, intent: P.Tz) -> None:
    """/tz ZONE: the zone summaries and quiet hours follow."""
    svc = services(context)
    text = await Preferences(svc.db).set_tz(_uid(update), intent)
    jq = context.application.job_queue
    if jq is not None:
        # A registered summary holds a UTC instant: move it to the new zone's wall time.
        for due in await Schedules(svc).due_of_user(_uid(update)):
            jobs.schedule(jq, due)
    await reply(update, text)


@route(P.Settings)
async def settings(update: Update, context: Context, intent: P.Settings) -> None:
    """/settings [key value]: show the settings, or change one and show them."""
    prefs = Preferences(services(context).db)
    if intent.key is not None and intent.value is not None:
        await prefs.apply(_uid(update), intent.key, intent.value)
        head = f"✅ {html.escape(intent.key)} → <b>{html.escape(intent.value)}</b>\n\n"
    else:
        head = ""
    await reply(update, head + await prefs.show(_uid(update)))
