"""The engine's simulated time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any


class Clock:
    """Simulated time. Tests `advance()` it; the sandbox lets it follow wall time.

    Listeners run after every advance so funding, dead-man switches and stop
    triggers happen deterministically at the simulated instant.
    """

    def __init__(self, start: datetime | None = None, *, follow_wall: bool = False) -> None:
        self.follow_wall = follow_wall
        self._offset = timedelta(0)
        self._t = (start or datetime.now(UTC)).astimezone(UTC)
        self._listeners: list[Callable[[], None]] = []

    def __getstate__(self) -> dict[str, Any]:
        # Listeners are live callbacks of this process; whoever loads re-registers its own.
        state = dict(self.__dict__)
        state["_listeners"] = []
        return state

    def now(self) -> datetime:
        if self.follow_wall:
            return datetime.now(UTC) + self._offset
        return self._t

    def advance(self, seconds: float) -> None:
        delta = timedelta(seconds=seconds)
        if self.follow_wall:
            self._offset += delta
        else:
            self._t += delta
        for listener in list(self._listeners):
            listener()

    def on_advance(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)
