"""A crash at each point of telling a fired alert (issue #15, the chaos run's alert told
twice): queued, request in flight, answered. The process "dies" by being abandoned
mid-delivery (nothing closes, nothing is marked after); a new service on the same
database is the next start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlmodel import col, select

from bot import parse as it
from bot.alerts.service import AlertService
from bot.db.engine import Database
from bot.db.models import Alert
from bot.notify import REPEATED, DeliveryQueue, Edited, Sent, on_wire
from tests.dbs import test_database_url
from tests.unit.test_alert_service import T0, Recorder, inst

ANSWERED, IN_FLIGHT, QUEUED = 1, 2, 3  # chat ids, one alert each


@dataclass
class Wire:
    """Telegram as the queue meets it: chat 1 is answered; chat 2's request goes on the
    wire and no answer ever comes (the kill); chat 3's message never gets past pacing."""

    sent: list[tuple[int, str]] = field(default_factory=list)

    async def send(self, chat_id: int, text: str, **kw: Any) -> Sent | None:
        if chat_id == QUEUED:
            await asyncio.Event().wait()  # still waiting for its turn
        await on_wire()
        if chat_id == IN_FLIGHT:
            await asyncio.Event().wait()  # asked, the answer never arrives
        self.sent.append((chat_id, text))
        return Sent(chat_id, len(self.sent))

    async def edit(self, chat_id: int, message_id: int, text: str, **kw: Any) -> Edited:
        return Edited.SHOWN

    async def photo(self, chat_id: int, png: bytes, **kw: Any) -> Sent | None:
        return None

    async def delete(self, chat_id: int, message_id: int) -> bool:
        return True


@pytest_asyncio.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    d = Database(test_database_url(tmp_path, "crash.db"))
    await d.migrate()
    yield d
    await d.dispose()


async def by_chat(db: Database) -> dict[int, str]:
    async with db.session() as s:
        rows = (await s.exec(select(Alert).order_by(col(Alert.id)))).all()
    return {r.chat_id: r.state for r in rows}


async def test_a_crash_while_telling_alerts_repeats_only_the_one_in_flight_marked(
        db: Database) -> None:
    wire = Wire()
    queue = DeliveryQueue(wire)
    svc = AlertService(db, queue, clock=lambda: T0)
    for chat in (ANSWERED, IN_FLIGHT, QUEUED):
        await svc.create(chat, chat, it.PriceAlert("XBTUSD", "above", Decimal(61000),
                                                   f"n{chat}"))
    await svc.on_instrument("mainnet", inst(last="61000"))

    async def settled() -> bool:
        return (await by_chat(db)).get(ANSWERED) == "sent" and (
            await by_chat(db)).get(IN_FLIGHT) == "sending"

    for _ in range(200):
        if await settled():
            break
        await asyncio.sleep(0.01)
    # The kill, here: one answered, one asked for with no answer, one never asked for.
    # Each is recorded as far as it got (the answered one at once, not with its batch).
    assert await by_chat(db) == {ANSWERED: "sent", IN_FLIGHT: "sending", QUEUED: "fired"}
    assert [c for c, _ in wire.sent] == [ANSWERED]

    rec = Recorder()
    again = AlertService(db, rec, clock=lambda: T0)  # the next start
    await again.start()
    await again.drain()
    told = {chat: text for chat, text, _ in rec.sent}
    assert set(told) == {IN_FLIGHT, QUEUED}  # the answered one is not told again
    assert told[IN_FLIGHT].endswith(REPEATED) and "(n2)" in told[IN_FLIGHT]
    assert REPEATED not in told[QUEUED] and told[QUEUED].endswith("(n3)")
    assert set((await by_chat(db)).values()) == {"sent"}
    # What the kill did to the first process: its tasks end without running on.
    tasks = [*svc._deliveries, *queue._tasks, *([queue._worker] if queue._worker else [])]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
