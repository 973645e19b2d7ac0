"""Fixtures for running the real PTB client against the Bot API emulator.

Import the fixtures into a test module (`from tests.e2e.emulator_fixtures import emulator`)
or into a conftest. `running(app)` starts polling the way production does and always shuts
the application down, so a failing test does not leave a poller behind.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from telegram import Bot
from telegram.ext import Application, ApplicationBuilder, BaseRateLimiter

from bot.sandbox.telegram import FloodLimits, TelegramEmulator

TOKEN = "123456:TEST-TOKEN-abcdefghijklmnopqrstuvwxyz"
BOT_USERNAME = "TradeTestBot"
POLL_TIMEOUT = 1


@pytest.fixture
async def emulator() -> AsyncIterator[TelegramEmulator]:
    """A started emulator with one bot and flood limits off (limit tests switch them on)."""
    emu = TelegramEmulator(FloodLimits.off())
    await emu.start()
    emu.add_bot(TOKEN, BOT_USERNAME, "Trade Bot")
    yield emu
    await emu.stop()
    # A crash inside the emulator is answered as a 400 so the bot survives it; fail here.
    assert not emu.internal_errors, emu.internal_errors


def make_app(
    emulator: TelegramEmulator,
    *,
    token: str = TOKEN,
    rate_limiter: BaseRateLimiter | None = None,
) -> Application:
    builder = (
        ApplicationBuilder()
        .token(token)
        .base_url(emulator.url + "/bot")
        .base_file_url(emulator.url + "/file/bot")
    )
    if rate_limiter is not None:
        builder = builder.rate_limiter(rate_limiter)
    return builder.build()


def make_bot(emulator: TelegramEmulator, token: str = TOKEN) -> Bot:
    return Bot(token, base_url=emulator.url + "/bot", base_file_url=emulator.url + "/file/bot")


@asynccontextmanager
async def running(
    app: Application,
    poll_timeout: int = POLL_TIMEOUT,
) -> AsyncIterator[Application]:
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=poll_timeout)
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


@pytest.fixture
async def bot(emulator: TelegramEmulator) -> AsyncIterator[Bot]:
    """A plain PTB Bot (no Application) talking to the emulator."""
    client = make_bot(emulator)
    await client.initialize()
    yield client
    await client.shutdown()


def png(width: int, height: int) -> bytes:
    """A real (tiny, grey) PNG image of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
