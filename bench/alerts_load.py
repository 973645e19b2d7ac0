"""Alerts at start-up: 1,000,000 stored alerts loaded into the index, on SQLite and PostgreSQL.

Run: ``python bench/alerts_load.py [ALERTS] [--db sqlite|postgres|both] [--profile]``
(default 1,000,000 on both when a PostgreSQL server answers at PG_URL; a few minutes, most
of it seeding).

The rows are seeded straight into a migrated database (a bulk insert, not timed), spread
like bench/alerts.py's: 10,000 users, ten symbols, 60 % price alerts, 30 % move alerts,
10 % funding alerts, a note on one in ten. The clock runs around `AlertService.start()`,
what the bot awaits at start-up before its alerts are live ("alerts ready": every active
alert is in the index and in the service's map that writes the messages). The baseline in
the same run is the bare database read: the same rows fetched as plain tuples by the
driver, with no conversion at all, which no loader reading rows can beat (on PostgreSQL the
load reads COPY text instead, a column at a time, and can come in under it). RSS is this
process's, read after the load (the database file and the server are not in it).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_seconds, peak_rss_kib, rss_kib, runqueue_wait_seconds

GOAL_S = 5.0
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
SYMBOLS = ["XBTUSD", "ETHUSD", "SOLUSD", "XRPUSD", "DOGEUSD", "LINKUSD", "ADAUSD",
           "XBTUSDT", "ETHUSDT", "LTCUSD"]
WINDOWS = (900, 3600, 14400, 86400)
USERS = 10_000


def alert_rows(n: int, seed: int = 5) -> list[tuple[Any, ...]]:
    """(user_id, chat_id, kind, symbol, direction, threshold, window_seconds, note)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        uid = 1 + i % USERS
        symbol = SYMBOLS[i % len(SYMBOLS)]
        r = rng.random()
        note = f"note {i}" if i % 10 == 0 else None
        if r < 0.6:
            direction = "above" if r < 0.3 else "below"
            price = Decimal(rng.randrange(100_000, 9_000_000)) / 100
            rows.append((uid, uid, "price", symbol, direction, price, None, note))
        elif r < 0.9:
            pct = Decimal(rng.randrange(50, 500)) / 10
            rows.append((uid, uid, "move", symbol, None, pct, rng.choice(WINDOWS), note))
        else:
            rate = Decimal(rng.randrange(5, 100)) / 10000
            rows.append((uid, uid, "funding", symbol, rng.choice(["above", "below"]), rate,
                         None, note))
    return rows


async def seed(url: str, n: int) -> float:
    """Migrate and bulk-insert `n` active alerts (and their users); returns the seconds."""
    from sqlalchemy import insert

    from bot.db.engine import Database
    from bot.db.models import User

    begin = time.monotonic()
    db = Database(url)
    await db.migrate()
    now = datetime.now(UTC)
    rows = alert_rows(n)
    try:
        async with db.session() as s:
            await s.exec(insert(User), params=[{"id": u, "created_at": now, "notify_prefs": {}}
                                               for u in range(1, USERS + 1)])
            await s.commit()
        if url.startswith("postgresql"):
            # COPY: a million rows in seconds (multi-row INSERTs take a minute).
            async with db.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                pg: Any = raw.driver_connection
                naive = now.replace(tzinfo=None)
                await pg.copy_records_to_table(
                    "alerts",
                    columns=["user_id", "chat_id", "kind", "symbol", "direction", "threshold",
                             "window_seconds", "note", "network", "state", "created_at"],
                    records=[(*r[:5], format(r[5], "f"), *r[6:], "mainnet", "active", naive)
                             for r in rows])
                await conn.commit()
        else:
            # The stdlib driver's executemany straight into the file: ten times faster than
            # going through the ORM layer, same stored formats (text decimals and times).
            import sqlite3

            from bot.db.engine import database_file

            path = database_file(url)
            assert path is not None
            naive = str(now.replace(tzinfo=None))
            with sqlite3.connect(path) as conn:
                conn.executemany(
                    "INSERT INTO alerts (user_id, chat_id, kind, symbol, direction, threshold, "
                    "window_seconds, note, network, state, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'mainnet', 'active', ?)",
                    ((*r[:5], format(r[5], "f"), *r[6:], naive) for r in rows))
    finally:
        await db.dispose()
    return time.monotonic() - begin


async def bare_read(url: str) -> float:
    """The floor of a load through the driver's rows: the same columns fetched as tuples,
    nothing built."""
    from bot.db.engine import Database

    db = Database(url)
    try:
        begin = time.perf_counter()
        async with db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            sql = ("SELECT id, chat_id, user_id, kind, symbol, direction, threshold, "
                   "window_seconds, note, thread_id FROM alerts WHERE state = 'active'")
            if url.startswith("postgresql"):
                count = len(await driver.fetch(sql))
            else:
                cursor = await driver.execute(sql)
                count = len(await cursor.fetchall())
                await cursor.close()
        seconds = time.perf_counter() - begin
        assert count > 0
        return seconds
    finally:
        await db.dispose()


async def load(url: str, n: int, profile: bool) -> tuple[float, float, float, int, int]:
    """Seconds for AlertService.start() (wall, CPU of this process, waiting for a core),
    RSS (KiB) before and after it."""
    from bot.alerts.service import AlertService
    from bot.db.engine import Database
    from bot.notify import Sent

    class Quiet:
        async def send(self, *_a: Any, **_k: Any) -> Sent | None:
            return None

    db = Database(url)
    try:
        svc = AlertService(db, Quiet())  # type: ignore[arg-type]
        gc.collect()
        before = rss_kib()
        prof = cProfile.Profile() if profile else None
        begin, cpu, queued = time.perf_counter(), cpu_seconds(), runqueue_wait_seconds()
        if prof is not None:
            prof.enable()
        loaded = await svc.start()
        seconds = time.perf_counter() - begin
        cpu, queued = cpu_seconds() - cpu, runqueue_wait_seconds() - queued
        if prof is not None:
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(18)
        assert loaded == n and len(svc.index) == n, (loaded, n)
        after = rss_kib()
        await svc.close()
        return seconds, cpu, queued, before, after
    finally:
        await db.dispose()


async def run_one(kind: str, n: int, pg_url: str, profile: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        name = f"bench_alerts_load_{os.getpid()}"
        if kind == "postgres":
            from tests import dbs

            os.environ[dbs.ENV] = pg_url
            url = await asyncio.to_thread(dbs.create_database, name)
        else:
            url = f"sqlite+aiosqlite:///{folder}/bot.db"
        try:
            seeded = await seed(url, n)
            bare = await bare_read(url)
            seconds, cpu, queued, before, after = await load(url, n, profile)
        finally:
            if kind == "postgres":
                await asyncio.to_thread(dbs.drop_database, name)
    return {"seed": seeded, "bare": bare, "load": seconds, "cpu": cpu, "queued": queued,
            "rss_before": before / 1024,
            "rss_after": after / 1024}


def pg_answers(url: str) -> bool:
    async def probe() -> bool:
        try:
            import asyncpg

            conn = await asyncio.wait_for(asyncpg.connect(url.replace(
                "postgresql+asyncpg://", "postgresql://", 1)), 2)
        except Exception:  # no server, no driver, refused: not there
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("alerts", type=int, nargs="?", default=1_000_000)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default=None,
                    help="default: both when a PostgreSQL server answers, else sqlite")
    ap.add_argument("--pg-url", default=os.environ.get("PG_URL", PG_URL))
    ap.add_argument("--profile", action="store_true", help="cProfile the load, top 18")
    a = ap.parse_args(argv)
    import logging

    logging.disable(logging.INFO)
    if a.db is None:
        chosen = ["sqlite", "postgres"] if pg_answers(a.pg_url) else ["sqlite"]
        if len(chosen) == 1:
            print(f"no PostgreSQL server at {a.pg_url}: SQLite only")
    else:
        chosen = {"both": ["sqlite", "postgres"]}.get(a.db, [a.db])
    goal = GOAL_S * a.alerts / 1_000_000
    ok = True
    print(f"alerts loaded at start-up, {a.alerts:,} rows, {datetime.now(UTC):%Y-%m-%d %H:%M} "
          f"UTC, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"{'db':<9} {'seed s':>7} {'bare read s':>12} {'start() s':>10} {'CPU s':>6} "
          f"{'no core s':>9} {'vs bare':>8} {'goal s':>7} {'start/goal':>11} "
          f"{'RSS MB before/after':>20}")
    for kind in chosen:
        r = asyncio.run(run_one(kind, a.alerts, a.pg_url, a.profile))
        passed = r["load"] <= goal
        ok &= passed
        print(f"{kind:<9} {r['seed']:>7.1f} {r['bare']:>12.2f} {r['load']:>10.2f} "
              f"{r['cpu']:>6.2f} {r['queued']:>9.2f} {r['load'] / r['bare']:>7.1f}x "
              f"{goal:>7.2f} {r['load'] / goal:>10.2f}x "
              f"{r['rss_before']:>9.0f} / {r['rss_after']:<8.0f} "
              f"{'PASS' if passed else 'FAIL'}", flush=True)
    print(f"peak RSS of the run: {peak_rss_kib() / 1024:.0f} MB (the seed data included). "
          "CPU s: this process's CPU time during start() (all threads); no core s: the time "
          "its main thread was runnable but other processes held the cores")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
