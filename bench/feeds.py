"""Signal feed fan-out: time from a signal post to every follower's private preview.

Run: ``python bench/feeds.py [FOLLOWERS] [--flood MEMBERS]`` (default 1,000; about a minute
and a half). With ``--flood 200``, 200 of the followers are also members of the group and
each sends /feedstats there three times while the signal fans out (members flooding a busy
group): the figures are then the time to the signal card in the group and to the last
follower's preview, under that flood.

The real bot (PTB application, services, delivery queue) runs against the BitMEX
simulator and the Bot API emulator with Telegram's flood limits ON and unscaled
(30 messages/s per bot, 1/s per chat; ``--time-scale K`` runs Telegram's clock K times
faster, for smoke tests). First the delivery queue alone sends one ready message to every
follower (the baseline: pacing only, no sizing), then the signal fans out. Every follower
has a verified testnet key and a `risk 1%` follow, so each preview is really sized
(instrument, ticker, margins) and stored as a trading card before it is sent. Setup
(keys, follows) goes through the services directly and is not timed; the clock starts
when the admin's message is handed to the emulator and stops when the last follower's
preview is in their chat.
The floor is what 30 msg/s alone allows: FOLLOWERS / 30 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_seconds, runqueue_wait_seconds
from bot import parse as P
from bot.sandbox.bitmex import BitmexSimulator, RateLimitConfig
from bot.sandbox.telegram import FloodLimits, TelegramEmulator
from tests.e2e.harness import Harness

PROFILE = "--profile" in sys.argv
SIGNAL = "/signal long XBTUSD entry 59900-60100 tp 62000,64000 sl 59000"


async def main(n: int, flood: int = 0, scale: float = 1.0) -> None:
    sim = BitmexSimulator(rate_limit=RateLimitConfig(
        per_minute=10_000_000, per_second_orders=100_000, unauthenticated_per_minute=10_000_000))
    emu = TelegramEmulator(FloodLimits(time_scale=scale))  # Telegram's limits (scaled clock)
    await sim.start()
    await emu.start()
    with tempfile.TemporaryDirectory() as tmp:
        h = Harness(sim, emu, Path(tmp))
        await h.start()
        try:
            await run(h, n, flood, scale)
        finally:
            await h.stop()
            await emu.stop()
            await sim.stop()


async def run(h: Harness, n: int, flood: int = 0, scale: float = 1.0) -> None:
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    svc = h.services
    assert svc is not None
    feeds = svc.feeds
    live = getattr(svc, "live", None)
    if live is not None:
        # The fill watcher opens a private socket per connected account; 1,000 of them at
        # setup time measure the socket layer, not the fan-out, so it is off here.
        await live.close()
        print("live fill watcher: off for this bench (one private socket per follower)")
    admin = h.person("Admin")
    people = [h.person(f"F{i}") for i in range(n)]
    flooders = people[:flood]
    group = h.group("Bench Calls", flooders, [admin], bot_admin=True)
    await admin.send("/feed on bench", chat=group)

    # Setup connects every follower's key at once: the bot's ration of key checks per
    # window (meant for people, not a seeded bench) is lifted for it.
    svc.accounts.verify_total.limit = max(svc.accounts.verify_total.limit, n + 10)
    t = time.monotonic()
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

    # The delivery queue alone, the same path (queue, notifier, PTB, emulator) with the
    # messages ready: what pacing costs before any sizing. A fresh global bucket after.
    queue = svc.notifier
    q0 = time.monotonic()
    await asyncio.gather(*(queue.send(p.chat.id, f"warm-up {i}", kind="signal")
                           for i, p in enumerate(people)))
    queue_s = time.monotonic() - q0
    queue_429 = h.emu.count("sendMessage", status=429)
    floor = n / 30 / scale
    print(f"delivery queue alone: {n} ready messages in {queue_s:.1f} s "
          f"(floor {floor:.1f} s; ratio {queue_s / floor:.2f}x; 429s {queue_429})")
    await asyncio.sleep(2 / scale)  # Telegram's 30/s bucket refills before the signal

    # Which followers have their preview, read off the emulator's log of calls as it grows:
    # the wait re-checks on every change of the emulator, and scanning all 1,000 chats each
    # time (as this bench did) spent seconds of the measured process's CPU on the bench.
    chats = {p.chat.id for p in people}
    done: set[int] = set()
    cursor = 0

    def delivered() -> int:
        nonlocal cursor
        calls = h.emu.calls
        while cursor < len(calls):
            c = calls[cursor]
            cursor += 1
            if c.status != 200 or c.method.lower() != "sendmessage":
                continue
            try:
                chat_id = int(str(c.params.get("chat_id")))
            except ValueError:
                continue
            if chat_id in chats and "signal #1" in str(c.params.get("text") or ""):
                done.add(chat_id)
        return len(done)

    before_429 = h.emu.count("sendMessage", status=429)
    cursor = len(h.emu.calls)  # the warm-up messages are not previews
    prof = None
    if PROFILE:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    cpu0, queued0 = cpu_seconds(), runqueue_wait_seconds()
    t0 = time.monotonic()
    for p in flooders:  # the flood starts just before the signal...
        h.emu.send_text(p.user, group, f"/feedstats@{h.bot_username}", bot=h.bot_username)
    signal = h.emu.send_text(admin.user, group, SIGNAL, bot=h.bot_username)
    for _ in range(2):  # ...and goes on during the fan-out
        for p in flooders:
            h.emu.send_text(p.user, group, f"/feedstats@{h.bot_username}", bot=h.bot_username)

    def signal_card() -> object:
        return next((m for m in h.emu.bot_messages(group, bot=h.bot_username)
                     if m.message_id > signal.message_id and "signal #1" in (m.content or "")),
                    None)

    card = await h.emu.wait_for(signal_card, timeout=120)
    t_card = time.monotonic() - t0
    await h.emu.wait_for(lambda: delivered() >= n, timeout=175)
    elapsed = time.monotonic() - t0
    cpu, queued = cpu_seconds() - cpu0, runqueue_wait_seconds() - queued0
    if prof is not None:
        import pstats

        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    await feeds.drain()
    report = feeds.last_fanout
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
    if flood:
        said = len([m for m in h.emu.bot_messages(group, bot=h.bot_username)
                    if m.message_id > signal.message_id])
        print(f"group flood: {flood} members x 3 /feedstats; the bot posted {said} messages "
              f"in the group ({h.emu.count('editMessageText', status=200)} edits overall)")
    print(f"CPU during the fan-out: {cpu:.1f} s for bot + simulator + emulator (one process), "
          f"{cpu / n * 1000:.0f} ms a preview; runnable but without a core: {queued:.1f} s; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"fan-out / goal (1.1x the floor): {elapsed / floor / 1.1:.2f} "
          f"({'PASS' if elapsed <= 1.1 * floor else 'FAIL'})")
    print(f"flood limits: on, time_scale={scale:g}" + (
        " (real time)" if scale == 1 else " (Telegram's clock runs faster; sizing does not)"))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("followers", type=int, nargs="?", default=1000)
    ap.add_argument("--flood", type=int, default=0, metavar="MEMBERS",
                    help="followers who also flood the group with /feedstats")
    ap.add_argument("--profile", action="store_true", help="cProfile the fan-out")
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="run Telegram's clock this much faster (smoke tests)")
    a = ap.parse_args()
    asyncio.run(main(a.followers, a.flood, a.time_scale))
