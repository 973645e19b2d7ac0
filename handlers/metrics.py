"""The Telegram side of the metrics: the 429 counter on PTB's rate limiter, and wiring
the update processor to the bot's `Metrics` (bot/metrics.py keeps the definitions)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.error import RetryAfter
from telegram.ext import AIORateLimiter, Application

from bot.metrics import Metrics
from handlers.processor import PerChatUpdateProcessor


class CountingRateLimiter(AIORateLimiter):
    """PTB's limiter, counting every 429 Telegram answers (retried or not)."""

    metrics: Metrics | None = None

    async def _run_request(self, chat: bool, group: str | int | bool,
                           allow_paid_broadcast: bool,
                           callback: Callable[..., Coroutine[Any, Any, Any]],
                           args: Any, kwargs: dict[str, Any]) -> Any:
        try:
            return await super()._run_request(chat, group, allow_paid_broadcast, callback,
                                              args, kwargs)
        except RetryAfter:
            if self.metrics is not None:
                self.metrics.telegram_rate_limited()
            raise


def update_kind(update: object) -> str:
    """A low-cardinality label: what sort of update it was."""
    if not isinstance(update, Update):
        return "other"
    if update.callback_query is not None:
        return "callback_query"
    if update.message is not None or update.edited_message is not None:
        return "message"
    if update.my_chat_member is not None or update.chat_member is not None:
        return "membership"
    return "other"


def wire(app: Application[Any, Any, Any, Any, Any, Any], metrics: Metrics) -> None:
    """Point the update processor and the rate limiter at this bot's metrics."""
    proc = app.update_processor
    if isinstance(proc, PerChatUpdateProcessor):
        proc.observer = lambda update, seconds: metrics.update_handled(
            update_kind(update), seconds)
    limiter = app.bot.rate_limiter
    if isinstance(limiter, CountingRateLimiter):
        limiter.metrics = metrics
