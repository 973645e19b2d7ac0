"""Shared e2e fixtures: one simulator and one emulator for the session, a fresh bot per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.sandbox.bitmex import BitmexSimulator, RateLimitConfig
from bot.sandbox.telegram import FloodLimits, TelegramEmulator
from tests.e2e.harness import Harness


@pytest_asyncio.fixture(scope="session")
async def world_sim() -> AsyncIterator[BitmexSimulator]:
    # Every test gets its own exchange accounts, so one simulator serves the session. Its
    # REST limits are BitMEX's own (120/min and 10/s per key, 30/min unauthenticated per
    # address): a test that needs a kinder exchange must say so itself.
    sim = BitmexSimulator(rate_limit=RateLimitConfig())
    await sim.start()
    yield sim
    await sim.stop()


# Telegram's flood limits and callback deadline, on a clock 10 times faster than real time
# (a group's minute lasts 6 s, the 15 s deadline of a button press 1.5 s: room for a
# loaded test machine, which a press answered at once needs far less than).
E2E_TIME_SCALE = 10.0


@pytest_asyncio.fixture(scope="session")
async def world_emu() -> AsyncIterator[TelegramEmulator]:
    emu = TelegramEmulator(FloodLimits(time_scale=E2E_TIME_SCALE))
    await emu.start()
    yield emu
    await emu.stop()
    assert not emu.internal_errors, emu.internal_errors


@pytest_asyncio.fixture
async def h(world_sim: BitmexSimulator, world_emu: TelegramEmulator,
            tmp_path: Path) -> AsyncIterator[Harness]:
    """A fresh bot (own token, own database) on the shared emulator and simulator."""
    world_sim.faults.clear()
    world_sim.clock_skew = 0.0  # a test that wants BitMEX's clock off says so itself
    # Each test is a new bot process, as if on its own address: it starts with full REST
    # budgets (30/min public) and an IP that has not opened the simulator's WebSockets in
    # the last hour -- not what the session's earlier bots left behind.
    world_sim.ws_limit.reset()
    world_sim.reset_rate_limits()
    # Market microstructure is shared: give every test the simulator's default spread.
    for inst in world_sim.engine.instruments.values():
        if inst.spread is not None:
            world_sim.engine.set_spread(inst.symbol, None)
    if world_emu.limits != FloodLimits(time_scale=E2E_TIME_SCALE) or world_emu.clock is not None:
        world_emu.clock = None  # a test that changed the world leaves it as it found it
        world_emu.limits = FloodLimits(time_scale=E2E_TIME_SCALE)
    harness = Harness(world_sim, world_emu, tmp_path)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
