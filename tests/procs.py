"""Real `python -m bot run` processes for tests: one instance, its log file and health
port, the environment that points it at the simulator and the emulator, and a person who
chats with it. Shared by tests/e2e (process, failover) and tests/chaos."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from bot.sandbox.telegram.state import Chat, User

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_env(emu: TelegramEmulator, sim: BitmexSimulator, token: str, url: str,
            master: str, **extra: str) -> dict[str, str]:
    """The process environment: this machine's, minus any bot setting, plus these."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "MASTER_", "WEBHOOK_", "BITMEX_", "DATABASE_",
                                "METRICS_", "LEADER_", "PAPER_"))}
    env.update(PYTHONPATH=str(ROOT), TELEGRAM_BOT_TOKEN=token, TELEGRAM_API_URL=emu.url,
               BITMEX_TESTNET_URL=sim.url, BITMEX_MAINNET_URL=sim.url, MASTER_KEY=master,
               DATABASE_URL=url, LOG_LEVEL="INFO")
    env.update(extra)
    return env


@dataclass
class Instance:
    """One bot process, its log file and its health port."""

    name: str
    env: dict[str, str]
    cwd: Path
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None

    @property
    def log(self) -> Path:
        return self.cwd / f"{self.name}.log"

    async def start(self) -> Instance:
        self.cwd.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "METRICS_PORT": str(self.port)}
        # A file, not a pipe: nobody has to read it while the process runs.
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", cwd=self.cwd, env=env,
                stdout=out, stderr=out)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def ready(self) -> tuple[int | None, dict[str, Any]]:
        """/readyz: (status, body), or (None, {}) while nothing listens."""
        try:
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{self.port}/readyz",
                    timeout=aiohttp.ClientTimeout(total=2)) as resp:
                return resp.status, await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError):
            return None, {}

    async def metric(self, name: str) -> float | str:
        """A sample of /metrics, or what went wrong (a string) when there is none."""
        try:
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{self.port}/metrics",
                    timeout=aiohttp.ClientTimeout(total=5)) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as e:
            return f"{self.name}: /metrics unreachable ({e!r})"
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return f"{self.name}: no {name} in /metrics:\n{text[-2000:]}"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 60)

    def reap(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


def logs(*instances: Instance) -> str:
    """The instances' last log lines, for a failure's message."""
    return "\n".join(f"--- {i.name}\n{i.text()[-4000:]}" for i in instances)


async def until(predicate: Any, timeout: float, what: str) -> Any:  # noqa: ASYNC109
    """Poll an async or plain predicate until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


@dataclass
class Chatter:
    emu: TelegramEmulator
    bot: str
    user: User
    chat: Chat

    def texts(self) -> list[str]:
        return [m.content or "" for m in self.emu.bot_messages(self.chat, bot=self.bot)]

    def count(self, needle: str) -> int:
        return sum(needle in t for t in self.texts())

    def send(self, text: str) -> dict[str, Any]:
        """Type `text`; the update as Telegram keeps it until the bot confirms it (taken
        at once: the emulator shares this event loop, so no poll has run yet)."""
        self.emu.send_text(self.user, self.chat, text, bot=self.bot)
        return dict(self.emu.pending_updates(self.bot)[-1])

    def press(self, label: str) -> dict[str, Any]:
        for m in reversed(self.emu.bot_messages(self.chat, bot=self.bot)):
            if any(label.lower() == b.lower() for row in m.buttons for b in row):
                self.emu.press(self.user, m, label, bot=self.bot)
                return dict(self.emu.pending_updates(self.bot)[-1])
        raise AssertionError(f"no {label!r} button:\n{self.transcript()}")

    def buttons(self, label: str) -> int:
        """How many of the bot's messages carry a button `label` now."""
        return sum(any(label == b for row in m.buttons for b in row)
                   for m in self.emu.bot_messages(self.chat, bot=self.bot))

    def transcript(self) -> str:
        return self.emu.transcript(self.chat, bot=self.bot)

    async def wait(self, needle: str, n: int = 1, timeout: float = 20.0) -> None:  # noqa: ASYNC109
        try:
            await self.emu.wait_for(lambda: self.count(needle) >= n, timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"{needle!r} x{n} never arrived:\n{self.transcript()}") from None


