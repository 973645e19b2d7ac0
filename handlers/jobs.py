"""Recurring jobs on PTB's JobQueue; what they do and when lives in bot/scheduler.py.

`install` (sync, from attach) adds the card-expiry sweep and the daily card purge;
`start` (async, from post_init and the test harness) registers every stored summary
schedule, since JobQueue jobs live only in memory.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram.ext import JobQueue

from bot.notify import Notifier
from bot.scheduler import (
    EXPIRE_EVERY,
    PURGE_EVERY,
    PURGE_FIRST,
    Due,
    Schedules,
    expire_cards,
    purge_cards,
    purge_preset_menus,
)
from bot.trading import Trading, repair_cards, settle_cards
from handlers.context import App, BotContext

log = logging.getLogger(__name__)



async def expire_job(context: BotContext) -> None:
    """Edit order cards whose confirmation window has passed, and settle those BitMEX
    never answered (looked up by clOrdID)."""
    svc = context.services
    count = await expire_cards(svc.trading, svc.notifier)
    if count:
        log.info("expired %d order card(s)", count)
    settled = await settle_cards(svc.trading, svc.notifier)
    if settled:
        log.info("settled %d order card(s) left in flight", settled)
    repaired = await repair_cards(svc.trading, svc.notifier)
    if repaired:
        log.info("repaired %d order card(s) whose outcome edit had failed", repaired)


async def purge_job(context: BotContext) -> None:
    """Delete final order cards older than 30 days and expired size menus: the tables
    must not grow forever."""
    count = await purge_cards(context.services.db)
    if count:
        log.info("purged %d old order card(s)", count)
    menus = await purge_preset_menus(context.services.db)
    if menus:
        log.info("purged %d expired size menu(s)", menus)


PAPER_SAVE_EVERY = 30.0  # seconds: what a crash can lose of paper trading


async def save_paper_job(context: BotContext) -> None:
    """Keep paper accounts on disk so a crash or redeploy does not reset them."""
    await context.services.paper.save()


async def summary_job(context: BotContext) -> None:
    """Send one scheduled summary and register the next run."""
    assert context.job is not None
    schedule_id = context.job.data
    assert isinstance(schedule_id, int)
    nxt = await context.services.schedules.run(schedule_id)
    if nxt is not None and context.job_queue is not None:
        schedule(context.job_queue, nxt)


def _name(schedule_id: int) -> str:
    return f"summary:{schedule_id}"


def unschedule(jq: JobQueue[Any], schedule_id: int) -> None:
    for job in jq.get_jobs_by_name(_name(schedule_id)):
        job.schedule_removal()


def schedule(jq: JobQueue[Any], due: Due) -> None:
    """(Re)register one summary at its next run; an earlier registration is replaced."""
    unschedule(jq, due.schedule_id)
    jq.run_once(summary_job, when=due.at, data=due.schedule_id, name=_name(due.schedule_id))


def install(app: App) -> None:
    if app.job_queue is None:
        log.warning("no JobQueue (python-telegram-bot[job-queue] missing): no recurring jobs")
        return
    for job in app.job_queue.get_jobs_by_name("expire-cards"):
        job.schedule_removal()
    app.job_queue.run_repeating(expire_job, interval=EXPIRE_EVERY, first=EXPIRE_EVERY,
                                name="expire-cards")
    for job in app.job_queue.get_jobs_by_name("purge-cards"):
        job.schedule_removal()
    app.job_queue.run_repeating(purge_job, interval=PURGE_EVERY, first=PURGE_FIRST,
                                name="purge-cards")
    for job in app.job_queue.get_jobs_by_name("save-paper"):
        job.schedule_removal()
    app.job_queue.run_repeating(save_paper_job, interval=PAPER_SAVE_EVERY,
                                first=PAPER_SAVE_EVERY, name="save-paper")


async def start(app: App, trading: Trading, notifier: Notifier, schedules: Schedules) -> int:
    """Settle the order cards a crash left in flight (before any press is handled), then
    register every enabled summary schedule; how many schedules."""
    settled = await settle_cards(trading, notifier, older_than=None)
    if settled:
        log.info("settled %d order card(s) left in flight by the last run", settled)
    if app.job_queue is None:
        return 0
    dues = await schedules.all_due()
    for due in dues:
        schedule(app.job_queue, due)
    return len(dues)
