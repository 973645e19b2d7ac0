"""The feeds' membership cache: trusted briefly, corrected by updates, closed when blind."""

from __future__ import annotations

import pytest

import bot.feeds.members as feeds_mod
from bot.feeds import Membership


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_lookups_are_cached_for_the_ttl_then_asked_again() -> None:
    clock, calls = Clock(), []
    answers = {(-1, 7): True}

    async def lookup(chat: int, user: int) -> bool:
        calls.append((chat, user))
        return answers.get((chat, user), False)

    m = Membership(ttl=60, clock=clock)
    m.lookup = lookup
    assert await m.is_member(-1, 7) and await m.is_member(-1, 7)
    assert calls == [(-1, 7)]
    answers[(-1, 7)] = False  # left without the bot hearing of it
    clock.now = 59
    assert await m.is_member(-1, 7)
    clock.now = 61
    assert not await m.is_member(-1, 7) and len(calls) == 2
    m.note(-1, 7, True)  # a chat_member update: joined again
    assert await m.is_member(-1, 7) and len(calls) == 2


async def test_without_a_lookup_nobody_is_a_member() -> None:
    assert not await Membership().is_member(-1, 7)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feeds_mod, "MEMBER_CACHE_MAX", 100)
    clock = Clock()
    m = Membership(ttl=60, clock=clock)
    for uid in range(1000):
        clock.now = uid
        m.note(-1, uid, True)
    assert len(m._seen) <= 100
