"""/pnl, /chart, /summary and /price."""

from __future__ import annotations

from telegram import Update
from telegram.constants import ParseMode

from bot import parse as P
from bot.reports import CAPTION_LIMIT, Report, Reports
from bot.scheduler import Schedules
from handlers import jobs
from handlers.common import Context, reply, services, topic
from handlers.router import route


def _ids(update: Update) -> tuple[int, int]:
    assert update.effective_user is not None and update.effective_chat is not None
    return update.effective_user.id, update.effective_chat.id


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
    user = await services(context).get_user(uid)
    return user.default_symbol if user else "XBTUSD"


@route(P.Pnl)
async def pnl(update: Update, context: Context, intent: P.Pnl) -> None:
    """/pnl [1d|7d|30d|all]: realised figures and an equity chart."""
    uid, _ = _ids(update)
    await _photo(update, await Reports(services(context)).pnl(uid, intent.period))


@route(P.Chart)
async def chart(update: Update, context: Context, intent: P.Chart) -> None:
    """/chart SYM [tf] [N]: candlesticks as a photo."""
    uid, _ = _ids(update)
    symbol = intent.symbol or await _default_symbol(context, uid)
    await _photo(update, await Reports(services(context)).chart(uid, intent, symbol))


@route(P.Price)
async def price(update: Update, context: Context, intent: P.Price) -> None:
    """/price [SYM ...]: last, mark, bid/ask, 24 h change, funding."""
    uid, _ = _ids(update)
    symbols = list(intent.symbols) or [await _default_symbol(context, uid)]
    await reply(update, await Reports(services(context)).price(uid, symbols))


@route(P.Summary)
async def summary(update: Update, context: Context, intent: P.Summary) -> None:
    """/summary daily HH:MM | weekly DAY HH:MM | off."""
    uid, cid = _ids(update)
    sched = Schedules(services(context))
    text, due = await sched.set_summary(uid, cid, intent)
    jq = context.application.job_queue
    if jq is not None:
        if due is not None:
            jobs.schedule(jq, due)
        else:
            for s in await sched.of_user(uid):
                jobs.unschedule(jq, s)
    await reply(update, text)
