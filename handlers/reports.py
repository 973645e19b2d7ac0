"""/pnl, /chart, /summary and /price."""

from __future__ import annotations

from telegram import Update
from telegram.constants import ParseMode

from bot import parse as P
from bot.buttons import ButtonData
from bot.reports import CAPTION_LIMIT, Report
from handlers import jobs
from handlers.common import Context, reply, topic
from handlers.presses import PressHandler
from handlers.router import IntentHandler


async def _photo(update: Update, report: Report) -> None:
    chat = update.effective_chat
    assert chat is not None
    thread = topic(update)  # in a forum, the chart goes to the command's topic too
    if len(report.text) > CAPTION_LIMIT:
        await reply(update, report.text)
        await chat.send_photo(report.png, message_thread_id=thread)
    else:
        await chat.send_photo(report.png, caption=report.text, parse_mode=ParseMode.HTML,
                              message_thread_id=thread)


async def _default_symbol(context: Context, uid: int) -> str:
    user = await context.services.users.view(uid)  # cached: /price is a hot path
    return user.default_symbol if user else "XBTUSD"


async def pnl(update: Update, context: Context, intent: P.Pnl) -> None:
    """/pnl [1d|7d|30d|all]: realised figures and an equity chart."""
    uid = context.user_id
    await _photo(update, await context.services.reports.pnl(uid, intent.period))


async def chart(update: Update, context: Context, intent: P.Chart) -> None:
    """/chart SYM [tf] [N]: candlesticks as a photo."""
    uid = context.user_id
    symbol = intent.symbol or await _default_symbol(context, uid)
    await _photo(update, await context.services.reports.chart(uid, intent, symbol))


async def price(update: Update, context: Context, intent: P.Price) -> None:
    """/price [SYM ...]: last, mark, bid/ask, 24 h change, funding."""
    uid = context.user_id
    symbols = list(intent.symbols) or [await _default_symbol(context, uid)]
    await reply(update, await context.services.reports.price(uid, symbols))


async def summary(update: Update, context: Context, intent: P.Summary) -> None:
    """/summary daily HH:MM | weekly DAY HH:MM | off."""
    uid, cid = context.user_id, context.chat_id
    sched = context.services.schedules
    text, due = await sched.set_summary(uid, cid, intent)
    jq = context.application.job_queue
    if jq is not None:
        if due is not None:
            jobs.schedule(jq, due)
        else:
            for s in await sched.of_user(uid):
                jobs.unschedule(jq, s)
    await reply(update, text)


# What each intent of this area runs (handlers/__init__.py register).
ROUTES: dict[type[P.Intent], IntentHandler] = {
    P.Pnl: pnl,
    P.Chart: chart,
    P.Price: price,
    P.Summary: summary,
}


BUTTONS: dict[type[ButtonData], PressHandler] = {}  # no buttons of its own
