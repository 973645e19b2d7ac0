"""BitMEX's clock ahead of the bot's host: the private stream's login is signed in BitMEX's
time, as the REST client learned it, so the account's fills are still told (signed by the
host's clock, every login was refused as expired and the stream never came up)."""

from __future__ import annotations

from tests.e2e.harness import Harness
from tests.e2e.test_live_streams import FAST, count, live, market_buy, wait_text


async def test_fills_are_told_when_bitmex_runs_two_minutes_ahead(h: Harness) -> None:
    live(h).stream_options.update(FAST)
    h.sim.clock_skew = 120.0  # our "valid for 30 s" is 90 s in BitMEX's past
    alice, key = await h.connected("Alice")
    await live(h).wait_ready(alice.id)
    market_buy(h, key)
    await wait_text(h, alice, "Order filled")
    assert count(alice, "Order filled") == 1, alice.transcript
