"""Who gets what, and how: the order messages leave in, and the person's settings
(`/settings notify`, quiet hours) per kind of message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from datetime import time as dtime
from typing import Literal

# Lower goes first. Answers to what a person just did beat their own account's events,
# which beat alerts, which beat bulk posts (feeds, summaries, broadcasts).
PRIORITY: dict[str, int] = {
    "reply": 0, "card": 0, "expire": 0,
    "fill": 1, "order": 1, "liquidation": 1, "liqalert": 1, "deadman": 1,
    "alert": 2,
    "summary": 3, "feed": 3, "signal": 3, "liqfeed": 3,
    "broadcast": 4,
}
BULK_PRIORITY = 3

# `kind` -> the key people use in `/settings notify KIND on|off|silent`. Kinds missing
# here (replies, cards) are always delivered with sound: the person is looking.
PREF_KEY: dict[str, str] = {
    "fill": "fills", "fills": "fills",
    "order": "orders", "orders": "orders",
    "liquidation": "liquidations", "liquidations": "liquidations", "liqalert": "liquidations",
    "alert": "alerts", "alerts": "alerts",
    "summary": "summaries", "summaries": "summaries",
    "feed": "feeds", "feeds": "feeds", "signal": "feeds", "liqfeed": "feeds",
}

Mode = Literal["on", "silent", "off"]


@dataclass(frozen=True)
class Audience:
    """What the queue needs to know about the person behind a chat."""

    blocked: bool = False
    prefs: Mapping[str, str] = field(default_factory=dict)
    quiet: tuple[dtime, dtime] | None = None
    tz: tzinfo = UTC

    def mode(self, kind: str, now: datetime) -> Mode:
        """How a message of `kind` goes out at `now`: with sound, silently, or not at all."""
        key = PREF_KEY.get(kind)
        if key is None:
            return "on"
        pref = self.prefs.get(key, "on")
        if pref == "off":
            return "off"
        if pref == "silent" or self.in_quiet_hours(now):
            return "silent"
        return "on"

    def in_quiet_hours(self, now: datetime) -> bool:
        if self.quiet is None:
            return False
        start, end = self.quiet
        local = now.astimezone(self.tz).time().replace(tzinfo=None)
        if start <= end:
            return start <= local < end
        return local >= start or local < end  # wraps midnight: 22:00-07:00


AudienceLookup = Callable[[int], Awaitable[Audience | None]]
