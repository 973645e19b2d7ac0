"""Claiming Telegram updates (bot/leader.py `UpdateLog`): one statement per update, as
before, against the claims of one event-loop turn (or of one statement's round trip) in
one statement, side by side in one run.

    python bench/update_claims.py [--db sqlite|postgres|both] [--updates 2000]

Updates go through the bot's own `PerChatUpdateProcessor` (handlers/processor.py) the way
PTB hands them over: every update of a getUpdates batch (up to 100) at once, one task
each; each is claimed when its handling starts, then "handled" (a 2 ms wait: the handler's
own time, no database). Three shapes of traffic:

- polling, 100 chats: a batch holds one update of each of 100 chats;
- polling, 10 chats: a batch holds 10 updates of each of 10 chats (one chat's updates run
  one after the other, so their claims cannot share a statement);
- webhook: one update a request, a new one every 1 ms, from 100 chats.

Printed per shape: claiming statements per update, wall time inside them per update
(SQLAlchemy's cursor events: what the database spends on claims), and the whole run's
wall time per update. The machine is shared by other sessions: compare the two columns of
one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event
from telegram import Chat, Message, Update, User

from bot.db.engine import Database
from bot.leader import UpdateLog
from handlers.processor import PerChatUpdateProcessor

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
HANDLE_S = 0.002


class PerUpdateLog(UpdateLog):
    """The claim as it was: its own INSERT for every update, sent at once."""

    async def claim(self, update_id: int) -> bool:
        first = bool(await self.claim_many([update_id]))
        if not first:
            self.skipped += 1
        return first


@dataclass
class Figures:
    statements: int = 0
    db_s: float = 0.0
    wall_s: float = 0.0
    updates: int = 0


def _update(update_id: int, chat_id: int) -> Update:
    user = User(chat_id, "u", is_bot=False)
    chat = Chat(chat_id, "private")
    msg = Message(update_id, datetime.now(UTC), chat, from_user=user, text="/price")
    return Update(update_id, message=msg)


async def _run(log: UpdateLog, shape: str, n: int, start_id: int) -> float:
    processor = PerChatUpdateProcessor()
    tasks: list[asyncio.Task[None]] = []

    async def handle(update_id: int) -> None:
        if await log.claim(update_id):
            await asyncio.sleep(HANDLE_S)

    def hand_over(update: Update) -> None:
        coro: Awaitable[Any] = handle(update.update_id)
        tasks.append(asyncio.ensure_future(processor.process_update(update, coro)))

    began = time.perf_counter()
    uid = start_id
    if shape.startswith("polling"):
        chats = 100 if shape == "polling, 100 chats" else 10
        for _ in range(n // 100):
            batch = [_update(uid + i, 1000 + (i % chats)) for i in range(100)]
            uid += 100
            for u in batch:
                hand_over(u)
            # The next getUpdates goes out once this batch is handed over; the emulated
            # round trip to Telegram is one turn of the loop.
            await asyncio.sleep(0)
    else:
        for i in range(n):
            hand_over(_update(uid, 1000 + i % 100))
            uid += 1
            await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    return time.perf_counter() - began


async def measure(url: str, n: int) -> dict[str, dict[str, Figures]]:
    db = Database(url)
    await db.migrate()
    counted = {"n": 0, "s": 0.0}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "handled_updates" in statement:
            counted["n"] += 1
            counted["s"] += time.perf_counter() - conn.info.pop("bench_t0")

    event.listen(db.engine.sync_engine, "before_cursor_execute", before)
    event.listen(db.engine.sync_engine, "after_cursor_execute", after)
    out: dict[str, dict[str, Figures]] = {}
    start = 1
    try:
        for shape in ("polling, 100 chats", "polling, 10 chats", "webhook"):
            out[shape] = {}
            # Alternate the two, twice each, so neither gets the quieter moment of the machine.
            for _ in range(2):
                for name, make in (("per update", PerUpdateLog), ("batched", UpdateLog)):
                    log = make(db, 4242)
                    counted["n"], counted["s"] = 0, 0.0
                    wall = await _run(log, shape, n, start)
                    start += n
                    f = out[shape].setdefault(name, Figures())
                    f.statements += counted["n"]
                    f.db_s += counted["s"]
                    f.wall_s += wall
                    f.updates += n
    finally:
        await db.dispose()
    return out


def report(db_name: str, out: dict[str, dict[str, Figures]]) -> None:
    print(f"\n{db_name}: per update, before (one INSERT each) | after (batched) | ratio")
    for shape, figs in out.items():
        a, b = figs["per update"], figs["batched"]
        rows: list[tuple[str, Callable[[Figures], float], str]] = [
            ("statements", lambda f: f.statements / f.updates, "{:.3f}"),
            ("DB ms", lambda f: 1000 * f.db_s / f.updates, "{:.3f}"),
            ("wall ms", lambda f: 1000 * f.wall_s / f.updates, "{:.3f}"),
        ]
        for label, get, fmt in rows:
            x, y = get(a), get(b)
            ratio = f"{x / y:.1f}x" if y else "-"
            print(f"  {shape:<20} {label:<11} {fmt.format(x):>9} | {fmt.format(y):>9} | {ratio}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--updates", type=int, default=2000, help="per shape and run (of 4)")
    args = ap.parse_args()
    n = max(100, args.updates // 100 * 100)
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            report("SQLite", await measure(f"sqlite+aiosqlite:///{tmp}/claims.db", n))
    if args.db in ("postgres", "both"):
        from tests.pg import throwaway_database

        async with throwaway_database() as url:
            report("PostgreSQL", await measure(url, n))


if __name__ == "__main__":
    asyncio.run(main())
