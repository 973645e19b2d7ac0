"""Conversations with BitMEX's clock off from the bot's host: the card tells the truth and
an order is never filled twice. BitMEX judges api-expires by its own clock; a host
clock 20 s ahead made the bot say "Not placed" while BitMEX could still take the order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, timedelta
from decimal import Decimal

import pytest

from tests.e2e.harness import Harness
from tests.e2e.helpers import all_orders, position_qty
from tests.e2e.test_failures import (
    _crash_pending_presses,
    client_of,
    no_traceback,
    short_timeout,
)
from tests.e2e.timing import drive_time

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

AHEAD, BEHIND, NONE = -20.0, 20.0, 0.0  # BitMEX's clock relative to the bot's host
SKEWS = pytest.mark.parametrize("skew", [AHEAD, NONE, BEHIND], ids=["ahead", "none", "behind"])


@pytest.fixture(autouse=True)
def steady_market(h: Harness) -> Iterator[None]:
    engine = h.sim.engine
    saved = {s: (i.mark, i.last) for s, i in engine.instruments.items()}
    engine.set_spread("XBTUSD", Decimal(0))
    engine.set_mark("XBTUSD", Decimal(60000))
    yield
    h.sim.faults.clear()
    h.sim.clock_skew = 0.0
    for symbol, (mark, last) in saved.items():
        engine.set_mark(symbol, mark, last=last)


async def let_time_pass(h: Harness, seconds: int) -> None:
    """Second by second on BitMEX's side, so a held order arrives when it would."""
    for _ in range(seconds):
        h.sim.engine.clock.advance(1)
        h.sim.clock_skew += 1
        for _ in range(3):
            await asyncio.sleep(0)


@SKEWS
@pytest.mark.parametrize("lag", [12, 30, 60])
async def test_a_lost_order_card_tells_the_truth_and_never_fills_twice(
    h: Harness, skew: float, lag: int
) -> None:
    h.sim.clock_skew = skew
    alice, key = await h.connected("Alice")
    ex = await client_of(h, alice)
    short_timeout(ex)  # the answer is lost: the bot must work out what happened
    drive_time(h, ex)
    card = await alice.send("/buy 100 xbtusd")
    assert card is not None
    h.sim.faults.engine_lag(1, seconds=lag)
    await alice.press("✅ Confirm", card)
    text = card.content or ""
    await let_time_pass(h, 60)  # anything still on its way arrives now
    if "Not placed" in text:
        assert all_orders(h, key) == [], text  # the card said so: it must be true
        again = await alice.send("/buy 100 xbtusd")  # so the user sends it again
        await alice.press("✅ Confirm", again)
        assert "Filled" in (again.content or ""), again.content
    else:
        assert "Filled" in text and card.buttons == [], text
        assert lag < 60  # a 60 s lag is past any api-expires: it can only be "not placed"
    assert len(all_orders(h, key)) == 1 and position_qty(h, key) == 100  # never 200
    no_traceback(alice)


async def test_restart_with_the_host_clock_ahead_settles_in_bitmex_time(h: Harness) -> None:
    from sqlmodel import select

    from bot.db.models import OrderCard
    from bot.trading import SEND_WINDOW, settle_cards

    h.sim.clock_skew = AHEAD
    alice, key = await h.connected("Alice")
    short_timeout(await client_of(h, alice), 1.0)
    card = await alice.send("/buy 100 xbtusd")
    assert card is not None
    # BitMEX takes the POST, its engine 12 s later; the bot is redeployed meanwhile
    h.sim.faults.engine_lag(1, seconds=12)
    h.emu.press(alice.user, card, "✅ Confirm", bot=h.bot_username)
    await h.emu.wait_for(lambda: h.sim.faults.held == 1)
    _crash_pending_presses()
    await h.stop()
    await h._boot()
    await h.emu.wait_for(lambda: "may or may not be on the exchange" in (card.content or ""))
    assert "never reached" not in (card.content or "") and all_orders(h, key) == []
    async with h.svc.db.session() as s:
        [row] = (await s.exec(select(OrderCard).where(OrderCard.state == "confirmed")))
    assert row.confirmed_at is not None
    # the card keeps the last moment BitMEX can take it by BitMEX's clock, not ours
    confirmed = row.confirmed_at.replace(tzinfo=UTC)  # SQLite hands it back naive
    by_host = (confirmed + SEND_WINDOW).timestamp()
    assert abs(float(row.intent["send_by"]) - (by_host + AHEAD)) <= 1.5
    await let_time_pass(h, 12)  # the engine takes it now
    await h.emu.wait_for(lambda: position_qty(h, key) == 100)
    real_now = h.svc.trading.now
    h.svc.trading.now = lambda: real_now() + timedelta(minutes=3)
    try:
        assert await settle_cards(h.svc.trading, h.svc.notifier) == 1
    finally:
        h.svc.trading.now = real_now
    await h.emu.wait_for(lambda: "Filled" in (card.content or ""))
    assert len(all_orders(h, key)) == 1 and position_qty(h, key) == 100
    no_traceback(alice)
