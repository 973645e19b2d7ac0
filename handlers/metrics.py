"""The Telegram side of the metrics: the 429 counter on PTB's rate limiter, and wiring
the update processor to the bot's `Metrics` (bot/metrics.py keeps the definitions)."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import Application

from bot.metrics import Metrics
from handlers.processor import PerChatUpdateProcessor
from handlers.ratelimit import ChatRateLimiter


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
    if isinstance(limiter, ChatRateLimiter):
        limiter.metrics = metrics
