"""Fixtures for tests that talk to the BitMEX simulator over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from bot.sandbox.bitmex import BitmexSimulator, RateLimitConfig


@pytest_asyncio.fixture(scope="module")
async def simulator() -> AsyncIterator[BitmexSimulator]:
    """One simulator per test module on 127.0.0.1:<free port>.

    State is shared inside a module: give each test its own account
    (`simulator.add_account()`), and restore any `rate_limit`/`faults` change.
    Unauthenticated calls from 127.0.0.1 share one bucket, so it is raised here.
    """
    sim = BitmexSimulator(rate_limit=RateLimitConfig(unauthenticated_per_minute=10000))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()
