"""Updates of different chats run concurrently; one chat's updates keep their order.

PTB processes updates one at a time by default, so one slow exchange call would
hold up every user. `SimpleUpdateProcessor` would run them all at once and let a
user's "/buy" overtake their own "/use mainnet". A lock per chat gives both.

In a group the lock is per person in it: members flooding a group with commands whose
answers wait for the group's 20 messages a minute must not hold up an admin's signal
behind them (the rate limiter then sends the signal card first).

Button presses wait for nothing: a press must be answered at once, not after the answers
to that person's earlier messages (or presses) have waited out the chat's 1 message a
second. A press acts on a message the bot already sent, so it never needs those to finish
first, and what it acts on is decided atomically (a card is claimed once, see
bot/trading.py), so two presses may run side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

_UNBOUNDED = 2**31 - 1


class PerChatUpdateProcessor(BaseUpdateProcessor):
    def __init__(self, max_concurrent_updates: int = 256) -> None:
        super().__init__(_UNBOUNDED)  # the real bound is self._slots, see do_process_update
        self._slots = asyncio.Semaphore(max_concurrent_updates)
        self._locks: dict[tuple[int, int, int], asyncio.Lock] = {}
        self._waiting: dict[tuple[int, int, int], int] = {}
        # Finished updates, so tests and the sandbox can wait for "answered" exactly.
        self.completed = 0
        self._progress = asyncio.Event()

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
        key = self._key(update)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock, self._slots:
                await coroutine
        finally:
            self.completed += 1
            self._progress.set()
            self._progress = asyncio.Event()
            # Forget idle chats so the map does not grow with every chat ever seen.
            self._waiting[key] -= 1
            if self._waiting[key] == 0:
                del self._waiting[key]
                self._locks.pop(key, None)

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
