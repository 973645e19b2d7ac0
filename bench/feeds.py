"""Signal feed fan-out: time from a signal post to every follower's private preview.

Run: ``python bench/feeds.py [FOLLOWERS]`` (default 1,000; about a minute and a half).

The real bot (PTB application, services, delivery queue) runs against the BitMEX
simulator and the Bot API emulator with Telegram's flood limits ON and unscaled
(30 messages/s per bot, 1/s per chat). Every follower has a verified testnet key and
a `risk 1%` follow, so each preview is really sized (instrument, ticker, margins) and
stored as a trading card before it is sent. Setup (keys, follows) goes through the
services directly and is not timed; the clock starts when the admin's message is
handed to the emulator and stops when the last follower's preview is in their chat.
The floor is what 30 msg/s alone allows: FOLLOWERS / 30 seconds.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.feeds import feeds_of
from bot.parsing import intents as P
from bot.sandbox.bitmex import BitmexSimulator, RateLimitConfig
from bot.sandbox.telegram import FloodLimits, TelegramEmulator
from tests.e2e.harness import Harness

SIGNAL = "/signal long XBTUSD entry 59900-60100 tp 62000,64000 sl 59000"


async def main(n: int) -> None:
    sim = BitmexSimulator(rate_limit=RateLimitConfig(
        per_minute=10_000_000, per_second_orders=100_000, unauthenticated_per_minute=10_000_000))
    emu = TelegramEmulator(FloodLimits())  # Telegram's limits, real time
    await sim.start()
    await emu.start()
    with tempfile.TemporaryDirectory() as tmp:
        h = Harness(sim, emu, Path(tmp))
        await h.start()
        try:
            await run(h, n)
        finally:
            await h.stop()
            await emu.stop()
            await sim.stop()


async def run(h: Harness, n: int) -> None:
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    svc = h.services
    assert svc is not None
    feeds = feeds_of(svc)
    live = getattr(svc, "live", None)
    if live is not None:
        # The fill watcher opens a private socket per connected account; 1,000 of them at
        # setup time measure the socket layer, not the fan-out, so it is off here.
        await live.close()
        print("live fill watcher: off for this bench (one private socket per follower)")
    admin = h.person("Admin")
    group = h.group("Bench Calls", [], [admin])
    await admin.send("/feed on bench", chat=group)

    t = time.monotonic()
    people = [h.person(f"F{i}") for i in range(n)]
    gate = asyncio.Semaphore(32)

    async def setup(p: object) -> None:
        uid = p.id  # type: ignore[attr-defined]
        key, secret = h.exchange_account()
        group.members[uid] = "member"  # only the group's members may follow its feed
        async with gate:
            await svc.touch_user(uid, None, f"F{uid}")
            await svc.accounts.connect(uid, "testnet", key, secret)
            await feeds.follow(uid, P.Follow(feed="bench", mode="risk", value=Decimal(1)))

    await asyncio.gather(*(setup(p) for p in people))
    print(f"setup: {n} followers with verified keys in {time.monotonic() - t:.1f} s")

    def delivered() -> int:
        count = 0
        for p in people:
            m = h.emu.last_bot_message(p.chat, bot=h.bot_username)
            if m is not None and "signal #1" in (m.content or ""):
                count += 1
        return count

    before_429 = h.emu.count("sendMessage", status=429)
    t0 = time.monotonic()
    h.emu.send_text(admin.user, group, SIGNAL, bot=h.bot_username)
    card = await h.emu.wait_bot_message(group, timeout=30, bot=h.bot_username)
    t_card = time.monotonic() - t0
    await h.emu.wait_for(lambda: delivered() >= n, timeout=175)
    elapsed = time.monotonic() - t0
    await feeds.drain()
    report = feeds.last_fanout
    floor = n / 30
    previews = sum(1 for p in people
                   if (m := h.emu.last_bot_message(p.chat, bot=h.bot_username)) is not None
                   and m.buttons == [["✅ Confirm", "✖️ Cancel"]])
    print(f"signal card in the group after {t_card:.2f} s ({(card.content or '')[:40]!r}...)")
    print(f"{n} private previews delivered in {elapsed:.1f} s "
          f"(floor at 30 msg/s: {floor:.1f} s; ratio {elapsed / floor:.2f}x)")
    print(f"previews with Confirm/Cancel: {previews}/{n}; "
          f"429 answers during the run: {h.emu.count('sendMessage', status=429) - before_429}")
    if report is not None:
        print(f"fan-out report: {report.previews} previews, {report.told} told, "
              f"{report.unreachable} unreachable, {report.seconds:.1f} s inside the service")
    print("flood limits: on, unscaled (time_scale=1), so these are real-time figures")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
