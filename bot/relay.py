"""The Telegram side as the services see it from the start: a `Notifier` that forwards
to the one the composition root connects once.

The services are built before the Telegram bot is attached (handlers/app.py `attach`),
so each of them holds this relay (inside the delivery queue) instead of asking for the
notifier later. A message sent before the connection waits for it: alerts that fire
while the bot is still starting go out as soon as the Telegram side is there.
"""

from __future__ import annotations

import asyncio

from bot.notify import Edited, Keyboard, Notifier, Sent


class Relay:
    """A `Notifier` forwarding to the target `connect` sets (once per process)."""

    def __init__(self) -> None:
        self._target: Notifier | None = None
        self._connected = asyncio.Event()

    def connect(self, target: Notifier) -> None:
        if self._target is not None and self._target is not target:
            raise RuntimeError("the relay is already connected to another notifier")
        self._target = target
        self._connected.set()

    @property
    def connected(self) -> bool:
        return self._target is not None

    async def _ready(self) -> Notifier:
        await self._connected.wait()
        assert self._target is not None
        return self._target

    async def send(self, chat_id: int, text: str, *, buttons: Keyboard | None = None,
                   silent: bool = False, kind: str = "reply",
                   thread_id: int | None = None) -> Sent | None:
        return await (await self._ready()).send(chat_id, text, buttons=buttons, silent=silent,
                                                kind=kind, thread_id=thread_id)

    async def edit(self, chat_id: int, message_id: int, text: str, *,
                   buttons: Keyboard | None = None) -> Edited:
        return await (await self._ready()).edit(chat_id, message_id, text, buttons=buttons)

    async def photo(self, chat_id: int, png: bytes, *, caption: str = "", silent: bool = False,
                    kind: str = "reply", thread_id: int | None = None) -> Sent | None:
        return await (await self._ready()).photo(chat_id, png, caption=caption, silent=silent,
                                                 kind=kind, thread_id=thread_id)

    async def delete(self, chat_id: int, message_id: int) -> bool:
        return await (await self._ready()).delete(chat_id, message_id)

    async def unpin(self, chat_id: int, message_id: int) -> bool:
        return await (await self._ready()).unpin(chat_id, message_id)
