"""How domain code talks to users without knowing about Telegram (design rule 1).

Services call a `Notifier`; the Telegram implementation lives in handlers/.
`Button` rows are plain data so that services can offer choices (Confirm/Cancel).
"""

from __future__ import annotations

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


class Notifier(Protocol):
    async def send(
        self,
        chat_id: int,
        text: str,
        *,
        buttons: Keyboard | None = None,
        silent: bool = False,
        kind: str = "reply",
    ) -> Sent | None:
        """Send HTML text; None when the chat can no longer be reached (blocked bot)."""
        ...

    async def edit(
        self, chat_id: int, message_id: int, text: str, *, buttons: Keyboard | None = None
    ) -> bool: ...

    async def photo(
        self, chat_id: int, png: bytes, *, caption: str = "", silent: bool = False,
        kind: str = "reply",
    ) -> Sent | None: ...

    async def delete(self, chat_id: int, message_id: int) -> bool: ...
