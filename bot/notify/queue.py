"""The delivery queue: any `Notifier`, paced within Telegram's limits, retried, and
sent as the person's settings say. It knows nothing about Telegram: the wrapped
notifier reports trouble by raising `bot.notify.notifier`'s `DeliveryError`s.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time as _time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.notify.audience import PRIORITY, AudienceLookup
from bot.notify.notifier import (
    ON_WIRE,
    DeliveryError,
    Edited,
    Keyboard,
    Notifier,
    RetryLater,
    Sent,
    Transient,
    Unreachable,
)
from bot.notify.pacing import ChatBuckets, DeliveryLimits, TokenBucket, WireGate

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


@dataclass
class _Job:
    seq: int
    chat_id: int
    kind: str
    priority: int
    edit: bool
    op: Callable[[bool], Awaitable[Any]]  # called with `silent`
    future: asyncio.Future[Any]
    fallback: Any  # what the caller gets when the message cannot go out
    on_wire: Callable[[], Awaitable[None]] | None = None  # the caller's ON_WIRE
    attempts: int = 0
    throttled: int = 0


# How often the queue forgets the chats that are idle again: a walk over all of them, so
# not on every message (a fan-out to 10,000 chats holds them all busy at once).
SWEEP_EVERY_S = 10.0


class _Chat(ChatBuckets):
    """A chat's buckets, and its line of messages: one in flight at a time. Its buckets
    count a message when its answer is back (`count` in `_attempt`): the next one, sent
    only after that answer, cannot reach the server closer to it than the buckets allow,
    however the network delays either of them."""

    __slots__ = ("jobs", "sending")

    def __init__(self, chat_id: int, limits: DeliveryLimits, now: float) -> None:
        super().__init__(chat_id < 0, limits, now)
        self.jobs: deque[_Job] = deque()
        self.sending = False

    def priority(self) -> int:
        # Priority inheritance: a reply queued behind an alert lifts the whole chat, since
        # the chat's messages must still leave in order.
        return min(j.priority for j in self.jobs)

    def ready_in(self, now: float) -> float:
        """Seconds until the message at the head of the line may go."""
        return self.wait(now, self.jobs[0].edit)


class DeliveryQueue:
    """A `Notifier` that paces messages within Telegram's limits.

    - one message in flight per chat and a FIFO per chat: each chat's messages keep
      their order (edits included, so a card is never edited before it is sent);
    - across chats, the chat holding the most urgent message goes first (PRIORITY);
    - token buckets per chat (1/s, burst 3; edits 2/s, burst 5) and per group (20/min),
      which count a message when its answer is back; overall a bucket that picks the next
      chat, and a `WireGate` that paces the requests, edits included, as they go on the
      wire (see `DeliveryLimits`);
    - a 429 pauses that chat for `retry_after` and retries the same message; a network
      error is retried with backoff; an unreachable chat is reported through
      `on_blocked` and its queued messages are counted and logged, never lost silently;
    - the person's settings decide per `kind`: sound, silent (also in quiet hours), or off.

    `send` waits until the message has been delivered and returns what the wrapped
    notifier returned; call it in a task for fire-and-forget. Deletes are not paced.
    """

    def __init__(
        self,
        inner: Notifier,
        *,
        limits: DeliveryLimits | None = None,
        audience: AudienceLookup | None = None,
        on_blocked: Callable[[int], Awaitable[None]] | None = None,
        clock: Clock = _time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.inner = inner
        self.limits = limits or DeliveryLimits()
        self.audience = audience
        self.on_blocked = on_blocked
        self.clock = clock
        self.sleep = sleep
        self.wall = wall
        self._seq = itertools.count()
        self._chats: dict[int, _Chat] = {}
        self._swept_at = clock()
        self._global = TokenBucket(self.limits.global_burst, self.limits.global_per_sec, clock())
        # The same pace again where the request goes on the wire (a notifier's ON_WIRE):
        # the audience read, the rate limiter and the connection pool between the two can
        # hold sends up and release them together.
        self._wire = WireGate(
            TokenBucket(self.limits.wire_burst, self.limits.global_per_sec, clock()),
            clock, sleep)
        self._gone: set[int] = set()  # chats that said "unreachable" (groups: not in the DB)
        # Chats whose latest message did not go out (refused, given up on, or skipped as
        # blocked): callers that record "sent" (alerts) ask `undelivered` first.
        self._undelivered: set[int] = set()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Set by close(): what is still queued, or submitted later, is answered with the
        # fallback. Callers that can retry later (alerts) check it to tell "not delivered"
        # from "delivered, or deliberately skipped".
        self.closed = False
        self.stats: dict[str, int] = dict.fromkeys(
            ("sent", "throttled", "network_retries", "failed", "unreachable", "skipped_off",
             "skipped_blocked", "silenced"), 0)

    # ------------------------------------------------------------------ Notifier
    async def send(self, chat_id: int, text: str, *, buttons: Keyboard | None = None,
                   silent: bool = False, kind: str = "reply",
                   thread_id: int | None = None) -> Sent | None:
        async def op(quiet: bool) -> Any:
            return await self.inner.send(chat_id, text, buttons=buttons,
                                         silent=silent or quiet, kind=kind,
                                         thread_id=thread_id)

        result: Sent | None = await self._submit(chat_id, kind, op, edit=False, fallback=None)
        return result

    async def photo(self, chat_id: int, png: bytes, *, caption: str = "", silent: bool = False,
                    kind: str = "reply", thread_id: int | None = None) -> Sent | None:
        async def op(quiet: bool) -> Any:
            return await self.inner.photo(chat_id, png, caption=caption,
                                          silent=silent or quiet, kind=kind,
                                          thread_id=thread_id)

        result: Sent | None = await self._submit(chat_id, kind, op, edit=False, fallback=None)
        return result

    async def edit(self, chat_id: int, message_id: int, text: str, *,
                   buttons: Keyboard | None = None) -> Edited:
        async def op(quiet: bool) -> Any:
            return await self.inner.edit(chat_id, message_id, text, buttons=buttons)

        result = await self._submit(chat_id, "edit", op, edit=True, fallback=Edited.FAILED)
        if not isinstance(result, Edited):
            # A wrapped notifier answers an `Edited` (GONE is what callers act on): a plain
            # True here would pass a deleted message off as shown.
            log.error("an edit in %s was answered %r, not an Edited", chat_id, result)
            return Edited.FAILED
        return result

    async def delete(self, chat_id: int, message_id: int) -> bool:
        try:
            return await self.inner.delete(chat_id, message_id)
        except DeliveryError:
            return False

    async def unpin(self, chat_id: int, message_id: int) -> bool:
        try:
            return await self.inner.unpin(chat_id, message_id)
        except DeliveryError:
            return False

    # ------------------------------------------------------------------ control
    def pending(self) -> int:
        return sum(len(c.jobs) for c in self._chats.values())

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until nothing is queued or in flight; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop the worker; whatever is still queued is logged and answered with None."""
        self.closed = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        left = 0
        for chat in self._chats.values():
            for job in chat.jobs:
                left += 1
                if not job.future.done():
                    job.future.set_result(job.fallback)
            chat.jobs.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if left:
            self.stats["failed"] += left
            log.error("delivery stopped with %d message(s) undelivered", left)
        self._idle.set()

    def forget_gone(self, chat_id: int) -> None:
        """The chat is reachable again (the bot was added back to a group)."""
        self._gone.discard(chat_id)
        self._undelivered.discard(chat_id)

    def mark_gone(self, chat_id: int) -> None:
        """The bot was kicked from a group (Telegram said so): stop writing there at once."""
        if chat_id < 0:
            self._gone.add(chat_id)
        self._undelivered.add(chat_id)

    def undelivered(self, chat_id: int) -> bool:
        """True when the last message to `chat_id` did not reach it (or the chat is gone)."""
        return chat_id in self._gone or chat_id in self._undelivered

    # ------------------------------------------------------------------ internals
    async def _submit(self, chat_id: int, kind: str, op: Callable[[bool], Awaitable[Any]], *,
                      edit: bool, fallback: Any) -> Any:
        if chat_id in self._gone:
            self.stats["skipped_blocked"] += 1
            self._undelivered.add(chat_id)
            return fallback
        if self.closed:
            self.stats["failed"] += 1
            log.warning("delivery is stopped: a %s to %s was not sent", kind, chat_id)
            return fallback
        loop = asyncio.get_running_loop()
        # The worker's tasks do not run in the caller's context: its ON_WIRE travels
        # with the job, to be set again around the attempt. Only a message's: callers
        # record "maybe told" there, which an edit has nothing of (it still passes the
        # wire gate, see `_wire_hook`).
        job = _Job(next(self._seq), chat_id, kind, PRIORITY.get(kind, 2), edit, op,
                   loop.create_future(), fallback, None if edit else ON_WIRE.get())
        # Enqueued synchronously, before any await, so that the order of calls is the
        # order of delivery in each chat.
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = _Chat(chat_id, self.limits, self.clock())
        chat.jobs.append(job)
        self._idle.clear()
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="delivery-queue")
        return await asyncio.shield(job.future)

    def _pick(self, now: float) -> tuple[_Chat | None, float]:
        """The chat to serve now, or how long until one could be served."""
        best: _Chat | None = None
        best_key: tuple[int, int] = (1 << 30, 0)
        soonest = float("inf")
        for chat in self._chats.values():
            if chat.sending or not chat.jobs:
                continue
            wait = chat.ready_in(now)
            if wait > 0:
                soonest = min(soonest, wait)
                continue
            key = (chat.priority(), chat.jobs[0].seq)
            if key < best_key:
                best, best_key = chat, key
        return best, soonest

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock()
            if self._in_flight < self.limits.max_in_flight:
                chat, wait = self._pick(now)
                if chat is not None:
                    gwait = self._global.wait(now)
                    if gwait <= 0:
                        self._global.tokens -= 1
                        # The chat's own buckets count it when its answer is back (`count`).
                        chat.sending = True
                        self._in_flight += 1
                        task = asyncio.create_task(self._deliver(chat, chat.jobs[0]))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                        continue
                    wait = gwait
            else:
                wait = float("inf")
            self._gc(now)
            if not self._in_flight and self.pending() == 0:
                # Nothing left: the worker ends (the next message starts a new one), so an
                # idle queue holds no task open at shutdown.
                self._idle.set()
                return
            await self._nap(wait)

    async def _nap(self, seconds: float) -> None:
        """Sleep until `seconds` pass or something changes (a new message, a delivery)."""
        waker = asyncio.ensure_future(self._wake.wait())
        if seconds == float("inf"):
            await waker
            return
        sleeper = asyncio.ensure_future(self.sleep(max(seconds, 0.001)))
        _, pending = await asyncio.wait({waker, sleeper},
                                        return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    def _gc(self, now: float) -> None:
        """Forget the chats that nothing is left of: no message waiting, none in flight,
        every bucket full again (a minute at most after a group's last message). Built
        anew they let no more through, so what is held is the chats served in the last
        minute, not every chat ever notified: the soak saw a _Chat (~1 KB) made on each
        user's first notification and kept for good (up to 10,000 before, and then even
        chats mid-pace were dropped, so their next messages went unpaced)."""
        if now - self._swept_at < SWEEP_EVERY_S:
            return
        self._swept_at = now
        for cid in [cid for cid, c in self._chats.items()
                    if not c.jobs and not c.sending and c.idle(now)]:
            del self._chats[cid]

    def chats_held(self) -> int:
        """How many chats' pacing state is in memory (for the soak and the tests)."""
        return len(self._chats)

    async def _deliver(self, chat: _Chat, job: _Job) -> None:
        try:
            outcome = await self._attempt(chat, job)
        except Exception:  # a bug in a wrapped notifier must not kill the queue
            log.exception("delivery to %s failed unexpectedly", job.chat_id)
            self.stats["failed"] += 1
            outcome = ("done", job.fallback)
        finally:
            chat.sending = False
            self._in_flight -= 1
        state, value = outcome
        if state == "retry":
            chat.not_before = max(chat.not_before, self.clock() + value)
        else:
            if chat.jobs and chat.jobs[0] is job:
                chat.jobs.popleft()
            if not job.future.done():
                job.future.set_result(value)
            if state == "gone":
                self._fail_rest(chat)
        self._wake.set()

    async def _attempt(self, chat: _Chat, job: _Job) -> tuple[str, Any]:
        quiet = False
        if self.audience is not None and job.chat_id > 0 and job.priority > 0:
            aud = await self.audience(job.chat_id)
            if aud is not None:
                if aud.blocked:
                    self.stats["skipped_blocked"] += 1
                    self._undelivered.add(job.chat_id)
                    return "done", job.fallback
                mode = aud.mode(job.kind, self.wall())
                if mode == "off":
                    self.stats["skipped_off"] += 1
                    log.debug("%s to %s not sent: turned off in settings", job.kind, job.chat_id)
                    return "done", job.fallback
                quiet = mode == "silent"
                if quiet:
                    self.stats["silenced"] += 1
        job.attempts += 1
        token = ON_WIRE.set(self._wire_hook(job))
        refused = False
        try:
            result = await job.op(quiet)
        except RetryLater as e:
            refused = True
            job.throttled += 1
            self.stats["throttled"] += 1
            chat.refused(job.edit, self.clock())
            if job.throttled > 30:
                return self._give_up(job, f"still throttled after {job.throttled} tries")
            return "retry", e.seconds
        except Unreachable:
            self.stats["unreachable"] += 1
            log.info("chat %s is unreachable; its queued messages are dropped", job.chat_id)
            if job.chat_id < 0:
                self._gone.add(job.chat_id)
            self._undelivered.add(job.chat_id)
            if self.on_blocked is not None:
                await self.on_blocked(job.chat_id)
            return "gone", job.fallback
        except Transient as e:
            self.stats["network_retries"] += 1
            if job.attempts >= self.limits.max_attempts:
                return self._give_up(job, f"network error: {e}")
            delay = min(self.limits.backoff * 2 ** (job.attempts - 1), self.limits.max_backoff)
            return "retry", delay
        finally:
            ON_WIRE.reset(token)
            if not refused:  # sent, or may have been (a network error, a bug)
                chat.count(job.edit, self.clock())
        self.stats["sent"] += 1
        if not job.edit:
            if result is None:
                # The wrapped notifier refused it (a 400, e.g. General closed too):
                # nothing reached the chat, so callers must not record it as sent.
                self._undelivered.add(job.chat_id)
            else:
                self._undelivered.discard(job.chat_id)
        return "done", result

    def _wire_hook(self, job: _Job) -> Callable[[], Awaitable[None]]:
        """What the notifier awaits right before the request, sends and edits alike
        (Telegram's 30 a second counts both): the caller's ON_WIRE, then the gate, last,
        so that nothing waits between the gate and the wire."""

        async def hook() -> None:
            if job.on_wire is not None:
                await job.on_wire()
            await self._wire.through()

        return hook

    def _give_up(self, job: _Job, why: str) -> tuple[str, Any]:
        self.stats["failed"] += 1
        self._undelivered.add(job.chat_id)
        log.error("gave up delivering a %s to %s: %s", job.kind, job.chat_id, why)
        return "done", job.fallback

    def _fail_rest(self, chat: _Chat) -> None:
        dropped = 0
        while chat.jobs:
            job = chat.jobs.popleft()
            dropped += 1
            if not job.future.done():
                job.future.set_result(job.fallback)
        if dropped:
            self.stats["unreachable"] += dropped
            log.warning("dropped %d queued message(s) for an unreachable chat", dropped)
