"""Place and cancel N orders through BitmexClient against the in-process simulator.

    python bench/orders.py [--n 1000] [--concurrency 16] [--chaos] [--lag]

Checks that the exchange holds exactly the orders that were sent (none lost,
none doubled, all cancelled) and prints orders per second. With --chaos some
POSTs answer 503 or lose their response after being accepted, exercising the
clOrdID retry path. With --lag every 10th order is a market order that BitMEX's
engine takes only `--lag-seconds` after the client's timeout gave up on it (the
client must look it up, never re-send: a filled clOrdID may be reused, so a re-send
fills twice), and a few lag past their api-expires (the client must report them not
placed, and the exchange must not hold them).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.errors import NotPlaced
from bot.exchange.client import BitmexClient, RetryPolicy
from bot.matching import Clock, Engine
from bot.sandbox.bitmex.server import BitmexSimulator, RateLimitConfig


async def run(n: int, concurrency: int, chaos: bool, lag: float = 0.0) -> int:
    # With lag the engine's clock follows wall time, so a held order comes in by itself.
    sim = BitmexSimulator(Engine(Clock(follow_wall=True)) if lag else None,
                          rate_limit=RateLimitConfig(per_minute=10**9, per_second_orders=10**9))
    await sim.start(host="127.0.0.1", port=0)
    key, secret = sim.add_account(xbt=1000)
    sim.engine.set_mark("XBTUSD", Decimal(50000))
    gate = asyncio.Semaphore(concurrency)
    retry = RetryPolicy(base_delay=0.005, max_delay=0.05, overload_delay=0.005)
    try:
        async with aiohttp.ClientSession() as session:
            client = BitmexClient(sim.url, key, secret, session=session, retry=retry,
                                  timeout=0.5 if lag else 5)
            late = lag_late = 0.0
            if lag:
                late, lag_late = lag, client.order_expires_in + 5.0
            markets: list[str] = []
            not_placed: list[str] = []

            async def place(i: int) -> str:
                async with gate:
                    if chaos and i % 50 == 7:
                        sim.faults.fail_next(1, status=503)
                    if chaos and i % 100 == 13:
                        sim.faults.drop_after_accept(1)
                    cl = f"bench-{i}"
                    if lag and i % 10 == 3:
                        # Held past the client's timeout; one in 25 of them past its expiry.
                        sim.faults.engine_lag(1, lag_late if i % 250 == 93 else late, cl)
                        try:
                            order = await client.place_order(
                                "XBTUSD", "Buy" if i % 20 == 3 else "Sell", 100, "Market",
                                cl_ord_id=cl)
                        except NotPlaced:
                            not_placed.append(cl)
                            return ""
                        markets.append(order.order_id)
                        return order.order_id
                    price = Decimal(40000) + Decimal(i % 500) / 10
                    order = await client.place_order(
                        "XBTUSD", "Buy", 100, "Limit", price, cl_ord_id=cl
                    )
                    return order.order_id

            async def cancel(order_id: str) -> bool:
                async with gate:
                    (res,) = await client.cancel_orders([order_id])
                    return res.ok

            t0 = time.perf_counter()
            ids = await asyncio.gather(*(place(i) for i in range(n)))
            t_place = time.perf_counter() - t0
            t1 = time.perf_counter()
            resting = [oid for oid in ids if oid and oid not in set(markets)]
            oks = await asyncio.gather(*(cancel(oid) for oid in resting))
            t_cancel = time.perf_counter() - t1
            for _ in range(600):  # anything still on its way arrives (or expires) first
                if not sim.faults.held:
                    break
                await asyncio.sleep(0.1)

        rows = sim.engine.order_rows(sim.account(key).id)
        sent = {f"bench-{i}" for i in range(n)} - set(not_placed)
        held = Counter(r["clOrdID"] for r in rows)
        lost = len(sent - set(held))
        # BitMEX frees a clOrdID once its order filled or was cancelled, so a re-sent order
        # shows up here as a second row with the same clOrdID.
        doubled = sum(c - 1 for c in held.values() if c > 1)
        extra = len(set(held) - sent)  # includes "not placed" orders the exchange holds
        placed_ids = [oid for oid in ids if oid]
        returned_ok = (len(set(placed_ids)) == len(sent)
                       and set(placed_ids) == {r["orderID"] for r in rows})
        still_open = sum(1 for r in rows if r["ordStatus"] not in ("Canceled", "Filled"))
        filled = sum(1 for r in rows if r["ordStatus"] == "Filled")
        print(f"placed    {n} orders in {t_place:.2f}s: {n / t_place:.0f} orders/s")
        print(f"cancelled {sum(oks)} orders in {t_cancel:.2f}s: "
              f"{len(resting) / t_cancel:.0f} cancels/s")
        if lag:
            print(f"engine lag: {len(markets) + len(not_placed)} market orders held "
                  f"{late:.1f}s past a 0.5s client timeout ({len(not_placed)} of them "
                  f"{lag_late:.0f}s, past api-expires): {filled} filled once, "
                  f"{len(not_placed)} reported not placed")
        print(f"exchange holds {len(rows)} orders: lost {lost}, doubled {doubled}, "
              f"unknown {extra}, still open {still_open}; "
              f"returned ids match: {'yes' if returned_ok else 'NO'}")
        ok = (lost == 0 and doubled == 0 and extra == 0 and still_open == 0 and all(oks)
              and returned_ok)
        total = t_place + t_cancel
        print(f"bench orders: n={n} {'chaos ' if chaos else ''}{'lag ' if lag else ''}"
              f"{(n + len(resting)) / total:.0f} requests/s {'OK' if ok else 'FAILED'}")
        return 0 if ok else 1
    finally:
        await sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--chaos", action="store_true")
    parser.add_argument("--lag", action="store_true", help="inject engine lag")
    parser.add_argument("--lag-seconds", type=float, default=1.5)
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.n, args.concurrency, args.chaos,
                             args.lag_seconds if args.lag else 0.0)))


if __name__ == "__main__":
    main()
