"""Fixtures for tests that talk to the BitMEX simulator over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.sandbox.bitmex import BitmexSimulator, RateLimitConfig


@pytest_asyncio.fixture(scope="module")
async def simulator() -> AsyncIterator[BitmexSimulator]:
    """One simulator per test module on 127.0.0.1:<free port>.

    State is shared inside a module: give each test its own account
    (`simulator.add_account()`), and restore any `rate_limit`/`faults` change. The limits
    are BitMEX's own; each test starts with full budgets (`_full_budgets`).
    """
    sim = BitmexSimulator(rate_limit=RateLimitConfig())
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture(autouse=True)
def _full_budgets(request: pytest.FixtureRequest) -> None:
    """Unauthenticated calls from 127.0.0.1 share one bucket across the module's tests;
    each test is a new client, as if on its own address, so it starts full."""
    if "simulator" in request.fixturenames:
        sim = request.getfixturevalue("simulator")
        sim.reset_rate_limits()
        sim.clock_skew = 0.0  # a test that wants BitMEX's clock off says so itself
