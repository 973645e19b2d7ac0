"""Who may follow a feed (members of its group, cached) and how fast a feed may post."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from bot.errors import UserError

log = logging.getLogger(__name__)

SIGNALS_PER_MINUTE = 7

# --- rates -------------------------------------------------------------------


# Seconds a getChatMember answer is trusted. chat_member updates (left, kicked, joined)
# correct it at once where the bot hears them; the TTL bounds it where it does not.
MEMBER_TTL = 60.0
MEMBER_CACHE_MAX = 50_000
# (group chat id, user id) -> is that user a member of the group now? The Telegram side
# answers it with getChatMember (creator, administrator, member, restricted member).
MemberLookup = Callable[[int, int], Awaitable[bool]]


class NotMember(UserError):
    """A feed is only for the members of its group."""


class Membership:
    """Who is in a feed's group, as Telegram says, kept briefly per (chat, user).

    With no lookup attached nobody counts as a member: a feed's signals never go to
    people who could not be checked."""

    def __init__(self, ttl: float = MEMBER_TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self.lookup: MemberLookup | None = None
        self._seen: dict[tuple[int, int], tuple[float, bool]] = {}

    async def is_member(self, chat_id: int, user_id: int) -> bool:
        now = self.clock()
        hit = self._seen.get((chat_id, user_id))
        if hit is not None and now - hit[0] <= self.ttl:
            return hit[1]
        if self.lookup is None:
            return False
        member = await self.lookup(chat_id, user_id)
        self.note(chat_id, user_id, member)
        return member

    def note(self, chat_id: int, user_id: int, member: bool) -> None:
        """What a chat_member update (or a lookup) just said."""
        if len(self._seen) >= MEMBER_CACHE_MAX:
            cutoff = self.clock() - self.ttl
            self._seen = {k: v for k, v in self._seen.items() if v[0] > cutoff}
            if len(self._seen) >= MEMBER_CACHE_MAX:
                self._seen.clear()
        self._seen[(chat_id, user_id)] = (self.clock(), member)


class FeedRateLimit:
    """At most `limit` signals per feed in any `window` seconds (a sliding window)."""

    def __init__(self, limit: int = SIGNALS_PER_MINUTE, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self._posts: dict[int, deque[float]] = {}

    def take(self, feed_id: int) -> float:
        """0 when a post is allowed (and counted), else seconds until one is."""
        now = self.clock()
        q = self._posts.setdefault(feed_id, deque())
        while q and now - q[0] >= self.window:
            q.popleft()
        if len(q) >= self.limit:
            return self.window - (now - q[0])
        q.append(now)
        return 0.0
