"""A fill whose message is queued, or on the wire, when the bot stops (issue #15): the
cursor stays behind it, so the next start tells it; only the one whose request was on
the wire carries the "repeated after a restart" marker (Telegram may have shown it).
The stop lands at the exact point: the message to Telegram is held there."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlmodel import select

from bot.db.models import LiveCursor
from bot.notify import REPEATED, DeliveryQueue, Notifier, Sent, on_wire
from tests.e2e.harness import Harness
from tests.e2e.test_live import count, quiet, wait_text

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

FILLED = "Order filled"
MARKER = "repeated after a restart"


class Held:
    """Between the delivery queue and Telegram: a fill's message is held before its
    request goes out (`wire=False`) or right after it went out (`wire=True`)."""

    def __init__(self, inner: Notifier, *, wire: bool) -> None:
        self.inner, self.wire = inner, wire
        self.reached = asyncio.Event()

    async def send(self, chat_id: int, text: str, **kw: Any) -> Sent | None:
        if FILLED in text:
            if self.wire:
                await on_wire()
            self.reached.set()
            await asyncio.Event().wait()  # the process dies here
        return await self.inner.send(chat_id, text, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def sending(h: Harness, user_id: int) -> str | None:
    async with h.svc.db.session() as s:
        row = (await s.exec(select(LiveCursor).where(LiveCursor.user_id == user_id))).first()
    return row.sending_exec_id if row is not None else None


@pytest.mark.parametrize("wire", [False, True], ids=["queued", "in-flight"])
async def test_a_fill_cut_off_by_a_stop_is_told_at_the_next_start(h: Harness,
                                                                  wire: bool) -> None:
    alice, key = await h.connected("Alice")
    await h.svc.live.wait_ready(alice.id)
    price = int(h.sim.engine.instrument("XBTUSD").mark) - 3000
    await alice.send(f"/buy 100 xbtusd limit {price}")
    await alice.press("✅ Confirm")
    (order,) = h.sim.engine.open_order_rows(h.sim.account(key).id)
    queue = h.svc.notifier
    assert isinstance(queue, DeliveryQueue)
    held = Held(queue.inner, wire=wire)
    queue.inner = held
    h.sim.engine.fill_order(str(order["orderID"]), 100)
    await asyncio.wait_for(held.reached.wait(), 10)
    assert (await sending(h, alice.id) is not None) is wire  # recorded before the request
    await queue.close()  # the stop, with the fill's message where it is
    await h.restart()
    await wait_text(h, alice, FILLED, timeout=15)
    await quiet(h)
    told = [t for t in alice.bot_texts if FILLED in t]
    assert len(told) == 1 and count(alice, FILLED) == 1, alice.transcript
    assert (MARKER in told[0]) is wire, told
    assert REPEATED.strip().startswith("<i>🔁")
    assert await sending(h, alice.id) is None
