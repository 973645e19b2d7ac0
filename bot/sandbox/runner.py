"""Run the real bot (PTB Application + services) against the local emulator and simulator.

Shared by the offline sandbox and the end-to-end tests, so both exercise exactly
the start-up path production uses (build_services + build_application), and both
can wait for "the bot has answered" by counting processed updates, not by sleeping.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import aiohttp

from bot.config import Settings
from bot.exchange.client import RetryPolicy
from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from bot.services import Services, build_services
from bot.vault import generate_key
from handlers.app import (
    ALLOWED_UPDATES,
    build_application,
    keep_updates,
    replay_inbox,
    set_menus,
    start_side_effects,
)
from handlers.processor import PerChatUpdateProcessor

_tokens = itertools.count(1)


class BotRunner:
    """One bot (own token and database) served by the emulator, trading on the simulator."""

    def __init__(self, sim: BitmexSimulator, emu: TelegramEmulator, folder: Path, *,
                 username: str | None = None, fast_retries: bool = True,
                 telegram_rate_limit: bool = True, keep_updates: bool = False,
                 **settings: Any) -> None:
        self.sim = sim
        self.emu = emu
        self.folder = folder
        n = next(_tokens)
        self.token = f"{700000 + n}:sandbox-token-{n:04d}-abcdefghijklmnopqrstuvwxyz"
        self.bot_username = username or f"SandboxTest{n}Bot"
        self.fast_retries = fast_retries
        self.telegram_rate_limit = telegram_rate_limit
        # As `python -m bot run` keeps updates: each claimed once, each fetched batch kept
        # until claimed (handlers/app.py `keep_updates`). Off by default: the harness's
        # bots live for one test and are never killed.
        self.keep_updates = keep_updates
        self.extra_settings = settings
        self.services: Services | None = None
        self.app: Any = None
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        assert self._settings is not None
        return self._settings

    def _make_settings(self) -> Settings:
        values: dict[str, Any] = {
            "TELEGRAM_BOT_TOKEN": self.token,
            "TELEGRAM_API_URL": self.emu.url,
            "BITMEX_MAINNET_URL": self.sim.url,
            "BITMEX_TESTNET_URL": self.sim.url,
            "DATABASE_URL": f"sqlite+aiosqlite:///{self.folder / 'bot.db'}",
            "MASTER_KEY": generate_key(),  # throwaway: this database dies with the run
        }
        limits = self.emu.limits
        if limits.enabled and self.emu.clock is None:
            # The emulator's flood windows run this much faster: pace to match.
            values["TELEGRAM_TIME_SCALE"] = limits.time_scale
        values.update(self.extra_settings)
        return Settings(_env_file=None, **values)

    async def start(self) -> None:
        self.emu.add_bot(self.token, self.bot_username, "Trade Bot")
        self._settings = self._make_settings()
        await self._boot()

    async def _boot(self) -> None:
        options: dict[str, Any] = {}
        if self.fast_retries:
            options["retry"] = RetryPolicy(base_delay=0.01, max_delay=0.05, overload_delay=0.01)
        self.services = await build_services(self.settings, http=aiohttp.ClientSession(),
                                             client_options=options)
        self.app = build_application(
            self.settings, self.services,
            rate_limiter_retries=3 if self.telegram_rate_limit else None)
        if self.keep_updates:
            keep_updates(self.app, self.services, self.token)
        await self.app.initialize()
        await set_menus(self.app)
        await self.app.start()
        await start_side_effects(self.app, self.services)  # as run_forever does
        self.replayed = await replay_inbox(self.app)
        # As `run` does: without it Telegram (and the emulator) withhold chat_member updates,
        # so promotions and demotions would go unheard in the sandbox only.
        await self.app.updater.start_polling(poll_interval=0, timeout=1,
                                             allowed_updates=ALLOWED_UPDATES)
        self._baseline = self.emu.bot(self.bot_username).next_update_id - 1
        self.services.readiness.started = True

    async def stop(self) -> None:
        if self.app is not None:
            if self.app.updater.running:
                await self.app.updater.stop()
            if self.app.running:
                await self.app.stop()
            await self.app.shutdown()
            self.app = None
        if self.services is not None:
            await self.services.close()
            self.services = None

    async def restart(self, **settings: Any) -> None:
        """Stop and start again on the same database and key: a crash or a redeploy
        (with `settings` changed, as an operator editing .env before it)."""
        await self.stop()
        if settings:
            self._settings = self.settings.model_copy(update=settings)
        await self._boot()

    async def settle(self, timeout: float = 10.0, quiet: float = 0.01) -> None:  # noqa: ASYNC109
        """Wait until every update sent to this bot was processed, then for `quiet` seconds
        without a request."""
        proc = self.app.update_processor
        assert isinstance(proc, PerChatUpdateProcessor)
        sent = self.emu.bot(self.bot_username).next_update_id - 1 - self._baseline
        await proc.wait_completed(sent, timeout)
        await self.emu.idle(timeout=timeout, quiet=quiet)

    _baseline = 0
    replayed = 0  # updates the last start took from the inbox
