"""Confirm press → POST /order, and press → answered, through the emulator and the simulator.

One process: the emulator notes when the press is made and when answerCallbackQuery
arrives; the simulator notes when POST /order arrives (its gateway, before the engine).
Everything in between is ours plus the loopback hops: getUpdates handing the press over,
the access gate, authorization, answering the press, the atomic claim in the database and
the signed REST call. The bot-side part (the update processor starting the press → the
POST arriving) is printed too, so the delivery hop can be told apart.

The card is found by the message id it has (the first bot message after the /buy with a
Confirm button), not as the chat's last message: the previous order's fill notice may
arrive after it.

    python bench/confirm_latency.py [--orders 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import pct
from bot.sandbox.bitmex import BitmexSimulator, RateLimitConfig
from bot.sandbox.runner import BotRunner
from bot.sandbox.telegram import FloodLimits, TelegramEmulator

GOAL_POST_P50_MS = 15.0
GOAL_ANSWER_P99_MS = 100.0


def confirm_button(message: Any) -> str | None:
    for row in message.buttons:
        for label in row:
            if "Confirm" in label:
                return str(label)
    return None


async def main(orders: int, db_url: str | None = None) -> dict[str, float]:
    sim = BitmexSimulator(rate_limit=RateLimitConfig(100000, 100000, 100000))
    emu = TelegramEmulator(FloodLimits.off())
    await sim.start()
    await emu.start()
    sim.engine.set_spread("XBTUSD", Decimal(0))
    sim.engine.set_mark("XBTUSD", Decimal(60000))
    key, secret = sim.add_account(xbt=100)
    pressed: list[float] = []  # when each press was made (the emulator stores it then)
    starts: list[float] = []  # when the bot's update processor started it
    arrivals: list[float] = []  # when its POST /order reached the simulator
    with tempfile.TemporaryDirectory() as tmp:
        extra = {"DATABASE_URL": db_url} if db_url else {}
        runner = BotRunner(sim, emu, Path(tmp), **extra)
        await runner.start()
        assert runner.services is not None
        runner.services.ratelimit.burst = 1e9
        proc = runner.app.update_processor
        original = proc.do_process_update

        async def timed(update: Any, coroutine: Awaitable[Any]) -> None:
            if getattr(update, "callback_query", None) is not None:
                starts.append(time.perf_counter())
            await original(update, coroutine)

        proc.do_process_update = timed
        rate_check = sim._rate_check

        def arrived(request: Any) -> Any:  # the gateway's first step for every /api/ call
            if request.method == "POST" and request.path.endswith("/order"):
                arrivals.append(time.perf_counter())
            return rate_check(request)

        sim._rate_check = arrived  # type: ignore[method-assign]
        user = emu.user(first_name="Bench")
        chat = emu.private_chat(user, bot=runner.bot_username)
        emu.send_text(user, chat, f"/connect testnet {key} {secret}", bot=runner.bot_username)
        await runner.settle()
        answered: list[float] = []
        for i in range(orders):
            side = "buy" if i % 2 == 0 else "sell"
            asked = emu.send_text(user, chat, f"/{side} 100 xbtusd", bot=runner.bot_username)

            def card(after: int = asked.message_id) -> Any:
                return next((m for m in emu.bot_messages(chat, bot=runner.bot_username)
                             if m.message_id > after and confirm_button(m)), None)

            message = await emu.wait_for(card, timeout=30)
            label = confirm_button(message)
            assert label is not None
            n_arr = len(arrivals)
            pressed.append(time.perf_counter())
            qid = emu.press(user, message, label, bot=runner.bot_username)
            await emu.wait_for(lambda n=n_arr, q=qid: len(arrivals) > n and emu.answers(q),
                               timeout=30)
            answer = emu.answers(qid)
            assert answer is not None
            answered.append(answer.after * 1000)
            # The card shows the outcome before the next order starts.
            await emu.wait_for(lambda m=message: confirm_button(m) is None, timeout=30)
        await runner.settle(timeout=60)
        await runner.stop()
    await emu.stop()
    await sim.stop()
    assert len(arrivals) == orders == len(starts), (len(arrivals), orders, len(starts))
    post = [(a - p) * 1000 for a, p in zip(arrivals, pressed, strict=True)]
    inside = [(a - s) * 1000 for a, s in zip(arrivals, starts, strict=True)]
    figures = {"post_p50": pct(post, 50), "post_p99": pct(post, 99),
               "inside_p50": pct(inside, 50), "inside_p99": pct(inside, 99),
               "answer_p50": pct(answered, 50), "answer_p99": pct(answered, 99)}
    print(f"orders confirmed: {orders}, each POST /order sent once")
    print("| figure | p50 ms | p99 ms | goal | ratio to goal |")
    print("|---|---|---|---|---|")
    print(f"| press → POST /order at the simulator | {figures['post_p50']:.1f} | "
          f"{figures['post_p99']:.1f} | p50 ≤ {GOAL_POST_P50_MS:.0f} ms | "
          f"{figures['post_p50'] / GOAL_POST_P50_MS:.2f} |")
    print(f"| press → answered (answerCallbackQuery) | {figures['answer_p50']:.1f} | "
          f"{figures['answer_p99']:.1f} | p99 ≤ {GOAL_ANSWER_P99_MS:.0f} ms | "
          f"{figures['answer_p99'] / GOAL_ANSWER_P99_MS:.2f} |")
    print(f"| bot-side: update started → POST /order | {figures['inside_p50']:.1f} | "
          f"{figures['inside_p99']:.1f} | | |")
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--db-url", default=None, help="a database URL (default: SQLite in a temp dir)")
    a = ap.parse_args()
    asyncio.run(main(a.orders, a.db_url))
