"""Updates of different chats run concurrently; one chat's updates keep their order.

PTB processes updates one at a time by default, so one slow exchange call would
hold up every user. `SimpleUpdateProcessor` would run them all at once and let a
user's "/buy" overtake their own "/use mainnet". A lock per chat gives both.

Webhooks: Telegram posts up to `max_connections` updates at once, so they can arrive out
of order. With `reorder_window` > 0 each update waits (at most that long) for the lower
update ids still missing, and updates are admitted in update_id order: a chat's updates
then keep the order its people sent them in.

In a group the lock is per person in it: members flooding a group with commands whose
answers wait for the group's 20 messages a minute must not hold up an admin's signal
behind them (the rate limiter then sends the signal card first).

Button presses wait for nothing: a press must be answered at once, not after the answers
to that person's earlier messages (or presses) have waited out the chat's 1 message a
second. A press acts on a message the bot already sent, so it never needs those to finish
first, and what it acts on is decided atomically (a card is claimed once, see
bot/trading/), so two presses may run side by side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

_UNBOUNDED = 2**31 - 1


class PerChatUpdateProcessor(BaseUpdateProcessor):
    def __init__(self, max_concurrent_updates: int = 256, *,
                 reorder_window: float = 0.0) -> None:
        super().__init__(_UNBOUNDED)  # the real bound is self._slots, see do_process_update
        self.reorder_window = reorder_window
        self._next_id: int | None = None  # the lowest update_id not yet admitted
        # Arrived early, waiting: update_id -> (gate, the chat's lock). The gate is given
        # the lock acquisition started for it when its turn comes.
        self._held: dict[int, tuple[asyncio.Future[asyncio.Future[Any]], asyncio.Lock]] = {}
        self._warmup: asyncio.TimerHandle | None = None
        self._slots = asyncio.Semaphore(max_concurrent_updates)
        self._locks: dict[tuple[int, int, int], asyncio.Lock] = {}
        self._waiting: dict[tuple[int, int, int], int] = {}
        # Finished updates, so tests and the sandbox can wait for "answered" exactly.
        self.completed = 0
        self._progress = asyncio.Event()
        # (update, seconds from arrival to done): the metrics' reply latency.
        self.observer: Callable[[object, float], None] | None = None

    @staticmethod
    def _key(update: object) -> tuple[int, int, int]:
        if isinstance(update, Update):
            chat, user = update.effective_chat, update.effective_user
            if update.callback_query is not None:
                return 0, 0, update.update_id  # a lane of its own
            if chat is not None:
                if chat.type in ("group", "supergroup") and user is not None:
                    return chat.id, user.id, 0
                return chat.id, 0, 0
            if user is not None:
                return user.id, 0, 0
        return 0, 0, 0

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Queue on the chat's lock first, then take one of the global slots.

        PTB's own semaphore (taken before this is called) is left unbounded: taking a
        slot before the chat's lock would let a chat flooding the bot (a spammer, a busy
        group) fill every slot with updates that only wait for their own chat, and
        everyone else would wait behind them.
        """
        arrived = time.monotonic()
        key = self._key(update)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            if self.reorder_window > 0 and isinstance(update, Update):
                await self._admit(update.update_id, lock)
            else:
                await lock.acquire()
            try:
                async with self._slots:
                    await coroutine
            finally:
                lock.release()
        finally:
            self.completed += 1
            self._progress.set()
            self._progress = asyncio.Event()
            # Forget idle chats so the map does not grow with every chat ever seen.
            self._waiting[key] -= 1
            if self._waiting[key] == 0:
                del self._waiting[key]
                self._locks.pop(key, None)
            if self.observer is not None:
                self.observer(update, time.monotonic() - arrived)

    async def _admit(self, update_id: int, lock: asyncio.Lock) -> None:
        """Return holding the chat's `lock`, taken in update_id order: once every lower
        update_id has been admitted, or the window for a missing one ran out."""
        if self._next_id is None:
            # The first deliveries after start come all at once in any order: gather them
            # for a moment and start from the lowest.
            if self._warmup is None:
                self._warmup = asyncio.get_running_loop().call_later(
                    self.reorder_window / 4, self._start_order)
        elif update_id < self._next_id:
            # Late (its gap was given up on): run it now rather than never.
            await self._take(asyncio.ensure_future(lock.acquire()), lock)
            return
        elif update_id == self._next_id:
            self._next_id += 1
            taking = asyncio.ensure_future(lock.acquire())  # queued before those released
            self._release()
            await self._take(taking, lock)
            return
        gate: asyncio.Future[asyncio.Future[Any]] = asyncio.get_running_loop().create_future()
        self._held[update_id] = (gate, lock)
        try:
            while not gate.done():
                try:
                    await asyncio.wait_for(asyncio.shield(gate), self.reorder_window)
                except TimeoutError:
                    if self._next_id is None or gate.done():
                        continue
                    # The oldest missing update may never come (lost, or filtered out):
                    # give up on that gap and let the held updates after it go.
                    self._next_id = min(self._held)
                    self._release()
        finally:
            if self._held.get(update_id, (None, None))[0] is gate:
                del self._held[update_id]
        await self._take(gate.result(), lock)

    @staticmethod
    async def _take(taking: asyncio.Future[Any], lock: asyncio.Lock) -> None:
        """Wait for a lock acquisition started earlier; never leave it held on cancel."""
        try:
            await asyncio.shield(taking)
        except asyncio.CancelledError:
            taking.add_done_callback(
                lambda f: lock.release() if not f.cancelled() and f.exception() is None
                else None)
            raise

    def _start_order(self) -> None:
        self._warmup = None
        if self._held:
            self._next_id = min(self._held)
            self._release()

    def _release(self) -> None:
        """Admit held updates that are next in line, lowest first. Their chats' locks are
        requested here, in update_id order (tasks start in creation order), so the order
        in which the held tasks happen to wake up does not matter."""
        assert self._next_id is not None
        while self._next_id in self._held:
            gate, lock = self._held.pop(self._next_id)
            self._next_id += 1
            if not gate.done():
                gate.set_result(asyncio.ensure_future(lock.acquire()))

    async def wait_completed(self, count: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Return once `count` updates in total have been fully processed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.completed < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.completed} of {count} updates processed")
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                continue

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None
