"""Set-up shared by the benches: a simulator in a child process, process figures, percentiles.

The simulator runs in its own process when a bench measures the bot's memory or CPU, so
what is measured is the client alone (bench/accounts.py, bench/capacity.py). The child is
driven over a pipe: it answers with the simulator's URLs and account keys, then serves
requests (`call`) until told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default), in KiB."""
    with open(f"/proc/{pid or os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * PAGE // 1024


def peak_rss_kib(pid: int | None = None) -> int:
    """The highest resident memory the process reached (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def runqueue_wait_seconds(pid: int | None = None) -> float:
    """Time the process's main thread spent runnable but waiting for a core (other
    processes had them): what CPU time alone does not show on a shared machine."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/{pid or os.getpid()}/schedstat").read_text().split()[1]) / 1e9
    return 0.0


class CpuMeter:
    """CPU share of a process over an interval, in % of one core."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid
        self.reset()

    def reset(self) -> None:
        self._cpu, self._wall = cpu_seconds(self.pid), time.monotonic()

    def percent(self) -> float:
        wall = time.monotonic() - self._wall
        return 100 * (cpu_seconds(self.pid) - self._cpu) / wall if wall > 0 else 0.0


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


# ------------------------------------------------------------- simulator in a child process


@dataclass
class SimOptions:
    """What the child's simulator holds and does."""

    accounts: int = 0
    xbt: int = 10
    rate_limits: bool = True  # BitMEX's REST limits as the simulator keeps them (default)
    marks: dict[str, Decimal] = field(default_factory=dict)
    ticks_per_second: float = 0.0  # a random walk of every symbol in `marks`
    walk: float = 0.015  # ... within +-1.5 % of its mark, so standing alerts stay quiet
    seed: int = 7


def _serve(options: SimOptions, pipe: Connection) -> None:
    """The child: a simulator; answers the parent's calls on the pipe until "stop"."""
    from bot.sandbox.bitmex.server import BitmexSimulator

    class CountingSimulator(BitmexSimulator):
        """Counts REST requests by who pays for them (an API key, or the address)."""

        def __init__(self) -> None:
            super().__init__()
            self.rest: Counter[str] = Counter()

        def _rate_check(self, request: Any) -> dict[str, str]:
            who = request.headers.get("api-key") or "keyless"
            self.rest[who] += 1
            return super()._rate_check(request)

    async def main() -> None:
        sim = CountingSimulator()
        if not options.rate_limits:
            sim.rate_limit = None
        await sim.start()
        for symbol, price in options.marks.items():
            sim.engine.set_mark(symbol, price)
        keys = [sim.add_account(xbt=options.xbt) for _ in range(options.accounts)]
        pipe.send((sim.url, sim.ws_url, keys))
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        offsets: dict[str, Decimal] = {s: Decimal(0) for s in options.marks}

        def answer(what: Any) -> Any:
            verb, *args = what if isinstance(what, tuple) else (what,)
            if verb == "handshakes":
                return sim.ws_limit.used(), sim.ws_limit.refused
            if verb == "rest":
                return dict(sim.rest)
            if verb == "marks":  # where the walk is now (alerts set near the market)
                return {s: str(sim.engine.instrument(s).mark) for s in options.marks}
            if verb == "offset":  # move a symbol's walk centre (an alert burst)
                symbol, ratio = args
                offsets[symbol] = Decimal(str(ratio))
                base = options.marks[symbol]
                sim.engine.set_mark(symbol, base * (1 + offsets[symbol]))
                return True
            raise ValueError(f"unknown call {verb!r}")

        def on_request() -> None:
            what = pipe.recv()
            if what == "stop":
                done.set()
                return
            pipe.send(answer(what))

        async def tick() -> None:
            rng = random.Random(options.seed)
            walk = {s: 0.0 for s in options.marks}
            period = 1 / options.ticks_per_second
            next_at = loop.time()
            while True:
                next_at += period
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                for symbol, base in options.marks.items():
                    step = walk[symbol] + rng.uniform(-1, 1) * 0.001
                    walk[symbol] = max(-options.walk, min(options.walk, step))
                    price = base * (1 + offsets[symbol] + Decimal(f"{walk[symbol]:.5f}"))
                    sim.engine.set_mark(symbol, price.quantize(Decimal("0.01")))

        ticker = loop.create_task(tick()) if options.ticks_per_second > 0 else None
        loop.add_reader(pipe.fileno(), on_request)
        await done.wait()
        if ticker is not None:
            ticker.cancel()
        await sim.stop()

    asyncio.run(main())


class SimProcess:
    """The BitMEX simulator in a forked child process."""

    def __init__(self, options: SimOptions) -> None:
        self.pipe, theirs = mp.Pipe()
        self.proc = mp.get_context("fork").Process(target=_serve, args=(options, theirs),
                                                   daemon=True)
        self.proc.start()
        self.url, self.ws_url, self.keys = self.pipe.recv()
        self.keys = [tuple(k) for k in self.keys]

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def call(self, *what: Any) -> Any:
        self.pipe.send(what)
        return self.pipe.recv()

    def handshakes(self) -> tuple[int, int]:
        """WebSocket connects counted in the last hour, and how many were refused."""
        used, refused = self.call("handshakes")
        return int(used), int(refused)

    def stop(self) -> None:
        if self.proc.is_alive():
            self.pipe.send("stop")
            self.proc.join(10)
