"""Telegram's flood limits, paced per chat, so one throttled chat slows only itself.

PTB's AIORateLimiter halts every request of the bot for `retry_after` after any 429, counts
every request with a negative chat id (getChatMember, deleteMessage, edits, chat actions)
against the group's 20 a minute, has no per-private-chat pace and caps every reply at 30/s
overall (see TELEGRAM.md). Here:

- sends (sendMessage, sendPhoto, ...) are paced per chat at about 1/s with a short burst,
  and in groups also at 20 a minute; edits have their own, looser per-chat pace (one
  chat's buckets are bot.notify's `ChatBuckets`, as in the delivery queue). A request
  is counted when it goes on the wire (after its connection slot and ON_WIRE), not when its
  turn came, so one held up there cannot have the chat's next ones follow it in a bunch;
- everything else (answerCallbackQuery, getChatMember, deleteMessage, chat actions, polling)
  goes out at once: a button press is never answered behind a queue of messages;
- a 429 pauses only the chat it was about, for the `retry_after` the server chose, and the
  request is tried again (up to `max_retries`); other chats carry on;
- no overall cap: replies to people who just wrote are not held to the bulk 30/s (bulk
  notifications are paced by bot.notify.DeliveryQueue, which has one: its `WireGate` waits
  in the caller's ON_WIRE, which this limiter awaits right before each paced request,
  sends and edits alike);
- within a chat, waiting sends go out by priority (`Pace.priority`, lower first), then in
  the order they were asked for, so an admin's signal card overtakes members' reads;
- at most `max_in_flight` paced requests are on the wire at once, fewer than the HTTP
  pool's connections: with a hundred chats each allowed a message, the paced sends would
  otherwise take every connection, and a press's answer (and everything else sent at once)
  would queue behind them for seconds, past the pool timeout, and be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from bot.metrics import Metrics
from bot.notify import ChatBuckets, on_wire

log = logging.getLogger(__name__)

SEND_METHODS = frozenset(m.lower() for m in (
    "sendMessage", "sendPhoto", "sendDocument", "sendAudio", "sendVideo", "sendAnimation",
    "sendVoice", "sendVideoNote", "sendMediaGroup", "sendLocation", "sendVenue", "sendContact",
    "sendPoll", "sendDice", "sendSticker", "sendInvoice", "sendPaidMedia", "copyMessage",
    "copyMessages", "forwardMessage", "forwardMessages"))
EDIT_METHODS = frozenset(m.lower() for m in (
    "editMessageText", "editMessageCaption", "editMessageMedia", "editMessageReplyMarkup"))


@dataclass(frozen=True)
class Pace:
    """What a caller may tell the limiter about one request (PTB's `rate_limit_args`)."""

    priority: int = 0  # lower goes first within its chat
    retries: int | None = None  # 429s to wait out before giving up; None: the default


@dataclass(frozen=True)
class ChatLimits:
    """A little under Telegram's: requests reach the server with jitter. The burst is one
    under the server's 3: a burst that arrives late finds the server's bucket refilled
    less than ours (it cannot hold more than 3), and the spare token absorbs that."""

    per_chat_per_sec: float = 0.95
    chat_burst: float = 2.0
    group_per_min: float = 19.0
    edit_per_chat_per_sec: float = 1.9
    edit_burst: float = 5.0

    def scaled(self, factor: float) -> ChatLimits:
        """Every rate `factor` times faster (the emulator's clock can run faster)."""
        return ChatLimits(self.per_chat_per_sec * factor, self.chat_burst,
                          self.group_per_min * factor, self.edit_per_chat_per_sec * factor,
                          self.edit_burst)


class _Chat(ChatBuckets):
    """A chat's buckets (counted as each request goes on the wire, see `process_request`)
    and its line of requests waiting for their turn."""

    __slots__ = ("passed", "waiting", "wake")

    def __init__(self, chat_id: int, limits: ChatLimits, now: float) -> None:
        super().__init__(chat_id < 0, limits, now)
        self.waiting: list[tuple[int, int, bool]] = []  # (priority, seq, edit) in line
        # edit? -> the request that had its turn and is not on the wire yet: until it is
        # (and has taken its tokens), no other of that kind may have one.
        self.passed: dict[bool, tuple[int, int, bool]] = {}
        self.wake = asyncio.Event()

    def idle(self, now: float) -> bool:
        return not self.waiting and super().idle(now)


def _retry_seconds(e: RetryAfter) -> float:
    raw: Any = getattr(e, "_retry_after", None)  # not the deprecated int/timedelta property
    if isinstance(raw, timedelta):
        return raw.total_seconds()
    return float(raw or 1)


class ChatRateLimiter(BaseRateLimiter[Pace]):
    """Paces sends per chat; a 429 pauses only its chat (see the module docstring)."""

    def __init__(self, limits: ChatLimits | None = None, *, max_retries: int = 3,
                 clock: Callable[[], float] = time.monotonic,
                 max_in_flight: int = 48) -> None:
        self.limits = limits or ChatLimits()
        self.max_retries = max_retries
        # Waiting here holds no connection, so no pool timeout strikes a paced send.
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self.clock = clock
        self._chats: dict[int | str, _Chat] = {}
        self._seq = itertools.count()
        self.stats: dict[str, int] = {"throttled": 0, "gave_up": 0}
        # Every 429 Telegram answers is counted here (retried or not), for /metrics.
        self.metrics: Metrics | None = None

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Pace | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        method = endpoint.lower()
        chat_id = data.get("chat_id")
        edit = method in EDIT_METHODS
        if chat_id is None or not (edit or method in SEND_METHODS):
            try:
                return await callback(*args, **kwargs)
            except RetryAfter:
                self._count_429()
                raise
        with contextlib.suppress(TypeError, ValueError):
            chat_id = int(chat_id)
        key: int | str = chat_id if isinstance(chat_id, int | str) else str(chat_id)
        pace = rate_limit_args or Pace()
        retries = self.max_retries if pace.retries is None else pace.retries
        attempt = 0
        while True:
            chat, me = await self._turn(key, pace.priority, edit)
            try:
                async with self._in_flight:
                    # Every wait is behind it: from here the request may reach the chat.
                    # Edits too: the delivery queue's wire gate waits here, since
                    # Telegram's 30 a second counts every request that sends or edits.
                    await on_wire()
                    # Counted here, after the wait for a connection slot and the caller's
                    # ON_WIRE, not when its turn came: a send held up there would leave
                    # its chat's next one free to follow it onto the wire at once. Until
                    # then it holds its chat's line, so that next one waits.
                    chat.count(edit, self.clock())
                    self._leave(chat, me)
                    return await callback(*args, **kwargs)
            except RetryAfter as e:
                self._count_429()
                seconds = _retry_seconds(e)
                now = self.clock()
                chat.not_before = max(chat.not_before, now + seconds)
                chat.refused(edit, now)
                self.stats["throttled"] += 1
                if attempt >= retries:
                    self.stats["gave_up"] += 1
                    log.warning("Telegram still throttles chat %s after %d retries (%s s)",
                                key, retries, seconds)
                    raise
                attempt += 1
                log.info("chat %s throttled by Telegram for %.2f s; only it waits", key, seconds)
            finally:
                self._leave(chat, me)
                self._gc()

    def _count_429(self) -> None:
        if self.metrics is not None:
            self.metrics.telegram_rate_limited()

    async def _turn(self, key: int | str, priority: int, edit: bool
                    ) -> tuple[_Chat, tuple[int, int, bool]]:
        """Wait until this request is the chat's most urgent one and its buckets allow it.
        It stays at the head of the chat's line until the caller takes the tokens and
        `_leave`s, right before the request goes out."""
        chat = self._chats.get(key)
        if chat is None:
            now = self.clock()
            chat = self._chats[key] = _Chat(key if isinstance(key, int) else -1, self.limits,
                                            now)
        me = (priority, next(self._seq), edit)
        chat.waiting.append(me)
        try:
            while True:
                # Edits have their own budget: they need not wait behind sends that do.
                if edit not in chat.passed and min(
                        w for w in chat.waiting if w[2] == edit) == me:
                    now = self.clock()
                    wait = chat.wait(now, edit)
                    if wait <= 0:
                        chat.passed[edit] = me
                        return chat, me
                else:
                    wait = float("inf")
                chat.wake.clear()
                if wait == float("inf"):
                    await chat.wake.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(chat.wake.wait(), wait)
        except BaseException:
            self._leave(chat, me)
            raise

    @staticmethod
    def _leave(chat: _Chat, me: tuple[int, int, bool]) -> None:
        if chat.passed.get(me[2]) == me:
            del chat.passed[me[2]]
        if me in chat.waiting:
            chat.waiting.remove(me)
            chat.wake.set()

    def _gc(self) -> None:
        if len(self._chats) > 2048:
            now = self.clock()
            for key in [k for k, c in self._chats.items() if c.idle(now)]:
                del self._chats[key]
