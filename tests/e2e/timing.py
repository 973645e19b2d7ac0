"""Simulated time for the exchange client's waits in end-to-end tests."""

from __future__ import annotations

import asyncio
import time

from bot.exchange.client import BitmexClient
from tests.e2e.harness import Harness


async def client_of(h: Harness, user_id: int) -> BitmexClient:
    ex = await h.svc.accounts.exchange(user_id, "testnet")
    assert isinstance(ex, BitmexClient)
    return ex


def drive_time(h: Harness, ex: BitmexClient) -> list[float]:
    """Every wait of the client (backoff, looking an order up) passes on the simulator's
    clock and the client's at once, so seconds of BitMEX lag cost no real seconds.
    Returns the simulated seconds waited so far (a one-item list, updated in place)."""
    waited = [0.0]
    ex.clock = lambda: time.time() + waited[0]

    async def sleep(seconds: float) -> None:
        waited[0] += seconds
        h.sim.engine.clock.advance(seconds)
        h.sim.clock_skew += seconds  # BitMEX's gateway clock moves on with the engine's
        for _ in range(3):  # the simulator's held request runs before the next lookup
            await asyncio.sleep(0)

    ex.sleep = sleep
    return waited
