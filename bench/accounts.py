"""N connected accounts over the multiplexed streams, and a restart.

    python bench/accounts.py [--n 100 1000 5000] [--per-socket 400]

The simulator runs in a child process (so the client's memory is measured alone);
the client runs one StreamPool per network with a PrivateStream per account (each
with its REST trade history, as the bot runs them). For each N it prints: WebSocket
handshakes at start and after a restart (the simulator's own count, limit 60 an hour),
seconds until every account is live, client memory per account, and how many of the
N fills (one market order per account, placed over REST) were reported.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SimOptions, SimProcess, rss_kib
from bot.exchange.client import BitmexClient, RetryPolicy
from bot.exchange.stream import ConnectionBudget, PrivateStream, StreamOptions, StreamPool
from bot.exchange.types import Execution


async def one_process(child: SimProcess, session: aiohttp.ClientSession, per_socket: int,
                      fills: dict[str, list[Execution]]) -> tuple[float, StreamPool,
                                                                 list[PrivateStream]]:
    """One bot process's streams: start them all, wait until every one is live."""
    pool = StreamPool(child.ws_url, session=session, capacity=per_socket,
                      budget=ConnectionBudget(), options=StreamOptions(backoff_base=0.2))
    retry = RetryPolicy(base_delay=0.01, max_delay=0.2)
    streams = []
    for key, secret in child.keys:
        history = BitmexClient(child.url, key, secret, session=session, retry=retry)
        s = PrivateStream(child.ws_url, key, secret, session=session, pool=pool,
                          history=history)
        got = fills.setdefault(key, [])

        async def on_fill(ex: Execution, got: list[Execution] = got) -> None:
            got.append(ex)

        s.on_fill(on_fill)
        streams.append(s)
    t0 = time.perf_counter()
    gate = asyncio.Semaphore(64)  # the REST baseline of each account, as the bot reads it

    async def start(s: PrivateStream) -> None:
        async with gate:
            await s.start()

    await asyncio.gather(*(start(s) for s in streams))
    await asyncio.gather(*(s.wait_ready(600) for s in streams))
    return time.perf_counter() - t0, pool, streams


async def fill_each(child: SimProcess, session: aiohttp.ClientSession,
                    fills: dict[str, list[Execution]], want: int) -> tuple[int, float]:
    """One market order per account over REST; how many accounts had it reported."""
    gate = asyncio.Semaphore(32)
    retry = RetryPolicy(base_delay=0.01, max_delay=0.2)

    async def buy(key: str, secret: str) -> None:
        async with gate:
            client = BitmexClient(child.url, key, secret, session=session, retry=retry)
            await client.place_order("XBTUSD", "Buy", 100, "Market")

    t0 = time.perf_counter()
    await asyncio.gather(*(buy(k, s) for k, s in child.keys))
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        if all(len(fills[k]) >= want for k, _ in child.keys):
            break
        await asyncio.sleep(0.05)
    reported = sum(1 for k, _ in child.keys if len(fills[k]) == want)
    return reported, time.perf_counter() - t0


async def run(n: int, per_socket: int) -> dict[str, Any]:
    # The simulator measures sockets here, not REST budgets: its limits are off.
    child = SimProcess(SimOptions(accounts=n, rate_limits=False,
                                  marks={"XBTUSD": Decimal(50000)}))
    try:
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64)) as session:
            fills: dict[str, list[Execution]] = {}
            base = rss_kib()
            live1, pool, streams = await one_process(child, session, per_socket, fills)
            mem = (rss_kib() - base) / n
            hs_start, _ = child.handshakes()
            sockets = len(pool.sockets)
            reported1, _ = await fill_each(child, session, fills, 1)
            for s in streams:  # the bot stops: every stream and socket goes
                await s.close()
            await pool.close()
            live2, pool, streams = await one_process(child, session, per_socket, fills)
            hs_total, refused = child.handshakes()
            reported2, t_fill = await fill_each(child, session, fills, 2)
            for s in streams:
                await s.close()
            await pool.close()
    finally:
        child.stop()
    return {"n": n, "sockets": sockets, "hs_start": hs_start, "hs_total": hs_total,
            "refused": refused, "live1": live1, "live2": live2, "mem": mem,
            "fills": f"{reported1}/{n}, {reported2}/{n}", "t_fill": t_fill}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--per-socket", type=int, default=400)
    args = parser.parse_args()
    rows = [asyncio.run(run(n, args.per_socket)) for n in args.n]
    print(f"{'accounts':>8} {'sockets':>7} {'hs start':>8} {'hs +restart':>11} "
          f"{'429s':>4} {'live s':>7} {'live s restart':>14} {'KiB/acct':>8} "
          f"{'fills reported (start, restart)':>32} {'fill s':>6}")
    ok = True
    for r in rows:
        print(f"{r['n']:>8} {r['sockets']:>7} {r['hs_start']:>8} {r['hs_total']:>11} "
              f"{r['refused']:>4} {r['live1']:>7.2f} {r['live2']:>14.2f} {r['mem']:>8.1f} "
              f"{r['fills']:>32} {r['t_fill']:>6.2f}")
        ok = ok and r["hs_total"] <= 60 and r["fills"] == f"{r['n']}/{r['n']}, {r['n']}/{r['n']}"
    print("within 60 connects/hour and every fill reported:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
