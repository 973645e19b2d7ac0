"""Bot-side latency from a Confirm press reaching the bot to POST /order reaching the simulator.

Measured inside one process: the moment the update processor starts the callback
update, and the moment the simulator's engine receives the order. Everything in
between is ours: access gate, authorization, the atomic claim in SQLite, the
signed REST call over loopback (and, since presses are answered first, the
answerCallbackQuery round trip before it). Prints p50/p99 over N orders, and how long
each press waited for its answer.

    python bench/confirm_latency.py [--orders 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.sandbox.bitmex import BitmexSimulator, RateLimitConfig
from bot.sandbox.runner import BotRunner
from bot.sandbox.telegram import FloodLimits, TelegramEmulator


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main(orders: int) -> None:
    sim = BitmexSimulator(rate_limit=RateLimitConfig(100000, 100000, 100000))
    emu = TelegramEmulator(FloodLimits.off())
    await sim.start()
    await emu.start()
    sim.engine.set_spread("XBTUSD", Decimal(0))
    sim.engine.set_mark("XBTUSD", Decimal(60000))
    key, secret = sim.add_account(xbt=100)
    with tempfile.TemporaryDirectory() as tmp:
        runner = BotRunner(sim, emu, Path(tmp))
        await runner.start()
        assert runner.services is not None
        runner.services.ratelimit.burst = 1e9
        proc = runner.app.update_processor
        starts: list[float] = []
        original = proc.do_process_update

        async def timed(update: Any, coroutine: Awaitable[Any]) -> None:
            if getattr(update, "callback_query", None) is not None:
                starts.append(time.perf_counter())
            await original(update, coroutine)

        proc.do_process_update = timed
        arrivals: list[float] = []
        place = sim.engine.place_order

        def recorded(account_id: int, params: Any) -> Any:
            arrivals.append(time.perf_counter())
            return place(account_id, params)

        sim.engine.place_order = recorded  # type: ignore[method-assign]
        user = emu.user(first_name="Bench")
        chat = emu.private_chat(user, bot=runner.bot_username)
        emu.send_text(user, chat, f"/connect testnet {key} {secret}", bot=runner.bot_username)
        await runner.settle()
        latencies: list[float] = []
        answered: list[float] = []
        for i in range(orders):
            side = "buy" if i % 2 == 0 else "sell"
            emu.send_text(user, chat, f"/{side} 100 xbtusd", bot=runner.bot_username)
            await runner.settle()
            # The newest card with a Confirm button: a fill notice of the previous order
            # may arrive after it.
            card = next(m for m in reversed(emu.bot_messages(chat, bot=runner.bot_username))
                        if "Confirm" in str(m.buttons))
            n_start, n_arr = len(starts), len(arrivals)
            qid = emu.press(user, card, "✅ Confirm", bot=runner.bot_username)
            await runner.settle()
            assert len(starts) == n_start + 1 and len(arrivals) == n_arr + 1, "order not placed"
            latencies.append((arrivals[-1] - starts[-1]) * 1000)
            answer = emu.answers(qid)
            assert answer is not None, "press not answered"
            answered.append(answer.after * 1000)
        await runner.stop()
    await emu.stop()
    await sim.stop()
    print(f"orders confirmed: {orders} (each placed exactly once)")
    print(f"press→POST /order  p50 {pct(latencies, 50):.2f} ms   p99 {pct(latencies, 99):.2f} ms"
          f"   mean {statistics.mean(latencies):.2f} ms   max {max(latencies):.2f} ms")
    print(f"press→answered    p50 {pct(answered, 50):.2f} ms   p99 {pct(answered, 99):.2f} ms"
          "   (the press is answered before the order is sent)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=200)
    asyncio.run(main(ap.parse_args().orders))
