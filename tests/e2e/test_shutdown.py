"""Stopping the bot stops everything it started: no task of the last run goes on working
(on a closed database, or sending for a bot that is gone)."""

from __future__ import annotations

import asyncio

from tests.e2e.harness import Harness


async def test_stopping_leaves_no_live_task_behind(h: Harness) -> None:
    live = h.svc.live
    ran_late = asyncio.Event()

    async def exits_for_a_fill() -> None:
        ran_late.set()

    async def fill_being_told() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            # A fill finishing while the bot stops starts its follow-up work (as
            # `_exits_after_entry` does): it must not outlive the stop.
            live._spawn(exits_for_a_fill(), "exits-late")

    live._spawn(fill_being_told(), "fill-told")
    await asyncio.sleep(0)
    await h.stop()
    await asyncio.sleep(0.05)
    left = [t.get_name() for t in asyncio.all_tasks()
            if t.get_name() in ("fill-told", "exits-late") and not t.done()]
    assert left == []
    assert not ran_late.is_set()
