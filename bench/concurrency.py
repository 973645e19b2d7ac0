"""Many users at once while BitMEX is slow: our per-chat processor next to PTB's default.

N users (default 50) each send /balance at the same moment, and every BitMEX call takes
300 ms (the simulator's latency fault). Our bot runs chats concurrently (handlers/
processor.py); a bare PTB app with PTB's default sequential processing answers the same
users with one BitMEX call each (GET /api/v1/user/margin, signed, as /balance makes).
Both in the same run, against the same emulator and simulator: the time from the first
update to the last answer, and each user's wait.

    python bench/concurrency.py [--users 50] [--latency 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from telegram import Update
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes

from bench.common import pct
from bot.sandbox.bitmex import BitmexSimulator, RateLimitConfig, sign
from bot.sandbox.runner import BotRunner
from bot.sandbox.telegram import FloodLimits, TelegramEmulator

GOAL_S = 1.0


async def burst(emu: TelegramEmulator, bot: str, people: list[Any], chats: list[Any],
                text: str) -> list[float]:
    """Every user sends `text` at once; seconds until each one's answer arrived."""
    before = [len(emu.bot_messages(c, bot=bot)) for c in chats]
    done: dict[int, float] = {}
    started = time.perf_counter()
    for u, c in zip(people, chats, strict=True):
        emu.send_text(u, c, text, bot=bot)

    def all_answered() -> bool:
        now = time.perf_counter()
        for i, c in enumerate(chats):
            if i not in done and len(emu.bot_messages(c, bot=bot)) > before[i]:
                done[i] = now - started
        return len(done) == len(chats)

    await emu.wait_for(all_answered, timeout=600)
    return [done[i] for i in range(len(chats))]


async def ours(sim: BitmexSimulator, emu: TelegramEmulator, keys: list[tuple[str, str]],
               latency: float, telegram_rate_limit: bool) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        runner = BotRunner(sim, emu, Path(tmp), telegram_rate_limit=telegram_rate_limit)
        await runner.start()
        bot = runner.bot_username
        people = [emu.user(first_name=f"C{i}") for i in range(len(keys))]
        chats = [emu.private_chat(u, bot=bot) for u in people]
        for u, c, (key, secret) in zip(people, chats, keys, strict=True):
            emu.send_text(u, c, f"/connect testnet {key} {secret}", bot=bot)
        await runner.settle(timeout=120)
        await burst(emu, bot, people, chats, "/balance")  # warm: every client built once
        await runner.settle(timeout=120)
        sim.faults.latency = latency
        waits = await burst(emu, bot, people, chats, "/balance")
        sim.faults.latency = 0.0
        for c in chats:
            last = emu.last_bot_message(c, bot=bot)
            assert last is not None and "Balance" in last.content, last
        await runner.stop()
    return waits


async def bare(sim: BitmexSimulator, emu: TelegramEmulator, keys: list[tuple[str, str]],
               latency: float) -> list[float]:
    """PTB as it comes (sequential updates); each /balance makes the one BitMEX call."""
    token, name = "900002:bare-sequential-token-abcdefghijklmnopqrstuvw", "BareSequentialBot"
    emu.add_bot(token, name, "Bare")
    people = [emu.user(first_name=f"S{i}") for i in range(len(keys))]
    chats = [emu.private_chat(u, bot=name) for u in people]
    key_of = {u.id: k for u, k in zip(people, keys, strict=True)}
    http = aiohttp.ClientSession()

    async def balance(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None and update.effective_user is not None
        key, secret = key_of[update.effective_user.id]
        path = "/api/v1/user/margin?currency=all"
        expires = int(time.time()) + 60
        headers = {"api-key": key, "api-expires": str(expires),
                   "api-signature": sign(secret, "GET", path, expires, "")}
        async with http.get(sim.url + path, headers=headers) as r:
            rows = await r.json()
        await update.effective_chat.send_message(f"Balance: {len(rows)} currencies")

    app = (ApplicationBuilder().token(token).base_url(emu.url + "/bot")
           .base_file_url(emu.url + "/file/bot").build())
    app.add_handler(CommandHandler("balance", balance))
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=1)
    await burst(emu, name, people, chats, "/balance")  # warm
    sim.faults.latency = latency
    waits = await burst(emu, name, people, chats, "/balance")
    sim.faults.latency = 0.0
    await app.updater.stop()
    await app.stop()
    await app.shutdown()
    await http.close()
    return waits


async def main(users: int, latency: float) -> dict[str, float]:
    sim = BitmexSimulator(rate_limit=RateLimitConfig(100000, 100000, 100000))
    emu = TelegramEmulator(FloodLimits.off())
    await sim.start()
    await emu.start()
    keys = [sim.add_account(xbt=1) for _ in range(users)]
    concurrent = await ours(sim, emu, keys, latency, telegram_rate_limit=False)
    deployed = await ours(sim, emu, keys, latency, telegram_rate_limit=True)
    sequential = await bare(sim, emu, keys, latency)
    await emu.stop()
    await sim.stop()
    rows = [("our bot (per-chat concurrent processor)", concurrent),
            ("our bot as deployed (with ChatRateLimiter)", deployed),
            ("bare PTB app, sequential (PTB's default)", sequential)]
    print(f"{users} users send /balance at once; every BitMEX call takes {latency * 1000:.0f} ms")
    print("| run | last answer, s | p50 wait, s | goal | ratio to goal |")
    print("|---|---|---|---|---|")
    for label, waits in rows:
        print(f"| {label} | {max(waits):.2f} | {pct(waits, 50):.2f} | all ≤ {GOAL_S:.0f} s | "
              f"{max(waits) / GOAL_S:.2f} |")
    print(f"sequential / concurrent: {max(sequential) / max(concurrent):.1f}x")
    return {"ours": max(concurrent), "deployed": max(deployed), "bare": max(sequential)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--latency", type=float, default=0.3, help="seconds per BitMEX call")
    a = ap.parse_args()
    asyncio.run(main(a.users, a.latency))
