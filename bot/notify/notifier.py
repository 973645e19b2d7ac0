"""How domain code talks to users without knowing about Telegram (design rule 1).

Services call a `Notifier`; the Telegram implementation lives in handlers/.
`Button` rows are plain data so that services can offer choices (Confirm/Cancel).
A notifier reports trouble by raising the `DeliveryError`s below, which the
`DeliveryQueue` (bot.notify.queue) that wraps it acts on.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Button:
    label: str
    data: str  # callback data, at most 64 bytes (Telegram's limit)

    def __post_init__(self) -> None:
        if not 1 <= len(self.data.encode()) <= 64:
            raise ValueError("callback data must be 1-64 bytes")


Keyboard = list[list[Button]]


@dataclass(frozen=True)
class Sent:
    chat_id: int
    message_id: int


class Edited(enum.Enum):
    """How an edit went. Falsy unless shown, so `if await notifier.edit(...)` reads as
    before; `GONE` is the one a caller must act on: the message was deleted (or cannot
    hold text), so editing it again can never work and what it should show must be sent
    anew."""

    SHOWN = "shown"
    FAILED = "failed"  # throttled past retries, the network, a refusal: try again later
    GONE = "gone"

    def __bool__(self) -> bool:
        return self is Edited.SHOWN


class Notifier(Protocol):
    async def send(
        self,
        chat_id: int,
        text: str,
        *,
        buttons: Keyboard | None = None,
        silent: bool = False,
        kind: str = "reply",
        thread_id: int | None = None,
    ) -> Sent | None:
        """Send HTML text; None when the chat can no longer be reached (blocked bot).

        `thread_id` is a forum topic; if that topic was closed or deleted meanwhile the
        message goes to General instead, so it is not lost."""
        ...

    async def edit(
        self, chat_id: int, message_id: int, text: str, *, buttons: Keyboard | None = None
    ) -> Edited: ...

    async def photo(
        self, chat_id: int, png: bytes, *, caption: str = "", silent: bool = False,
        kind: str = "reply", thread_id: int | None = None,
    ) -> Sent | None: ...

    async def delete(self, chat_id: int, message_id: int) -> bool: ...

    async def unpin(self, chat_id: int, message_id: int) -> bool:
        """Unpin a message the bot pinned; False when it was unpinned already, or the
        right to pin was taken away since."""
        ...


# "The request carrying this message is about to go on the wire": a caller that must tell
# "never asked for" from "asked for, answer unknown" (alerts, across a crash: Telegram has
# no idempotency key) sets this around its `send`; the `DeliveryQueue` carries it to the
# attempt, and the Telegram side awaits it (`on_wire`) at the last moment before the HTTP
# request, after every queue and pace, so all waiting before counts as "not sent".
ON_WIRE: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar("on_wire", default=None)


# Added to a message told again after a restart because its request was on the wire when
# the process died (alerts, fills): Telegram may or may not have delivered the first one,
# and cannot be asked. A trader would rather see a marked possible duplicate than miss a
# fill or an alert; the marker makes the repeat harmless to read.
REPEATED = "\n<i>🔁 repeated after a restart: you may have seen this already</i>"


async def on_wire() -> None:
    """Called by a notifier right before the request that delivers a message."""
    hook = ON_WIRE.get()
    if hook is not None:
        await hook()


class DeliveryError(Exception):
    """Raised by a wrapped notifier to tell the queue what went wrong."""


class RetryLater(DeliveryError):
    """The server said "too many requests": try again after `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds} s")
        self.seconds = max(float(seconds), 0.0)


class Unreachable(DeliveryError):
    """The chat cannot be written to any more (bot blocked, kicked, chat gone)."""


class Transient(DeliveryError):
    """A network failure or timeout: the message may be retried."""
