"""Updates per second through the real PTB client against the Bot API emulator.

Our bot (access gate, rate limiter, per-chat processor, router, HTML reply) answering
/help, next to a bare PTB echo bot answering the same command, in the same emulator,
in the same run. Prints both figures and the ratio.

    python bench/throughput.py [--updates 2000] [--users 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telegram import Update
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes

from bot.sandbox.bitmex import BitmexSimulator, RateLimitConfig
from bot.sandbox.runner import BotRunner
from bot.sandbox.telegram import FloodLimits, TelegramEmulator


async def drive(emu: TelegramEmulator, bot: str, users: int, updates: int) -> float:
    people = [emu.user(first_name=f"B{i}") for i in range(users)]
    chats = [emu.private_chat(u, bot=bot) for u in people]
    before = sum(1 for c in emu.calls_to("sendMessage") if c.bot == bot)
    started = time.perf_counter()
    for i in range(updates):
        emu.send_text(people[i % users], chats[i % users], "/help", bot=bot)
    await emu.wait_for(
        lambda: sum(1 for c in emu.calls_to("sendMessage") if c.bot == bot) - before >= updates,
        timeout=600,
    )
    return updates / (time.perf_counter() - started)


async def bare_bot(emu: TelegramEmulator) -> tuple[object, str]:
    token, name = "900001:bare-echo-token-abcdefghijklmnopqrstuvwxyz", "BareEchoBot"
    emu.add_bot(token, name, "Bare")

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None
        await update.effective_chat.send_message("Commands: /help")

    app = (ApplicationBuilder().token(token).base_url(emu.url + "/bot")
           .base_file_url(emu.url + "/file/bot").build())
    app.add_handler(CommandHandler("help", echo))
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=1)
    return app, name


async def main(updates: int, users: int) -> None:
    sim = BitmexSimulator(rate_limit=RateLimitConfig(100000, 100000, 100000))
    emu = TelegramEmulator(FloodLimits.off())
    await sim.start()
    await emu.start()
    with tempfile.TemporaryDirectory() as tmp:
        runner = BotRunner(sim, emu, Path(tmp))
        await runner.start()
        # Each user's first command creates their row; warm that so we time steady state.
        await drive(emu, runner.bot_username, users, users)
        assert runner.services is not None
        runner.services.ratelimit.burst = float(updates)  # the bench is not a spammer
        ours = await drive(emu, runner.bot_username, users, updates)
        await runner.stop()
    app, name = await bare_bot(emu)
    await drive(emu, name, users, users)
    bare = await drive(emu, name, users, updates)
    await app.updater.stop()  # type: ignore[attr-defined]
    await app.stop()  # type: ignore[attr-defined]
    await app.shutdown()  # type: ignore[attr-defined]
    await emu.stop()
    await sim.stop()
    print(f"updates: {updates} from {users} users, /help answered through the emulator")
    print(f"our bot   : {ours:8.1f} updates/s")
    print(f"bare PTB  : {bare:8.1f} updates/s")
    print(f"ratio ours/bare: {ours / bare:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=2000)
    ap.add_argument("--users", type=int, default=200)
    a = ap.parse_args()
    asyncio.run(main(a.updates, a.users))
