"""Capacity: one bot process at community size, on SQLite and on PostgreSQL, side by side.

    python bench/capacity.py [--db sqlite|postgres|both] [--scale 0.1] [--rates 10 20 40]

At scale 1 the database holds 10,000 users, 2,000 connected testnet accounts (each followed
by a private stream multiplexed over /realtimemd), 100,000 alerts (10 a user, on five
symbols) and 200 signal feeds with 10 followers each. It is seeded directly (bulk inserts
of the project's own tables, secrets sealed by its Vault), not through 10,000 chats.

Then the bot runs as it is deployed: `python -m bot run` in a process of its own (the real
PTB application polling over HTTP), against the Bot API emulator with Telegram's flood
limits on and unscaled, and the BitMEX simulator in a third process with its REST limits on
and the market ticking 10 times a second (five symbols, each a random walk within +-1.5 %,
so the standing alerts stay quiet). Measured on the bot's process only:

- start-up: from the process start to /readyz answering 200, and to every private stream
  up and every alert loaded (/metrics);
- RSS after start and at its peak; CPU in % of one core at idle and under each load step;
- a mixed load, open loop, at each rate in --rates (updates/s): /help, /price, /balance,
  /alerts, /positions and presses of the /start menu's Help and Balance buttons, each user
  at most one update every few seconds; reply latency = from the update handed to the
  emulator to the bot's first message or edit in that chat (a press: to its answer);
- an alert burst during the first rate: one alert in ten users' fires at once (the mark
  jumps 2.5 %), and every message must reach its chat: bulk messages, which Telegram
  holds to 30/s overall;
- what could saturate, each against its limit: Telegram's outgoing messages (30/s for
  bulk), our CPU (one core: one event loop), event-loop lag (a callback every 100 ms in the
  bot's loop), database time (wall time inside statements) and connections (updates
  waiting for one of the pool's DB_POOL_SIZE + DB_MAX_OVERFLOW connections, counted by
  walking the loop's tasks twice a second),
  BitMEX's REST budget (120 a minute per key, 30 keyless per address) and WebSocket
  connects (60 an hour); the three nearest their limits are named.

The probes live in the bot's process (`--serve-bot`, which then runs `python -m bot run`);
`kill -USR1` on it writes where every task waits to tasks-*.txt in its folder (`--keep`);
`--pool N` gives the bot's database pool N connections (a what-if).

The machine is shared (the emulator and the simulator run on the same cores), so the
harness's own CPU is printed too. `--scale 0.1` is the quick run; the smoke test runs
`--scale 0.005`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    SimOptions,
    SimProcess,
    cpu_seconds,
    pct,
    peak_rss_kib,
    rss_kib,
    runqueue_wait_seconds,
)
from bot.alerts import WINDOWS

ROOT = Path(__file__).resolve().parents[1]
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
MARKS = {"XBTUSD": Decimal(60000), "ETHUSD": Decimal(3000), "XBTUSDT": Decimal(60000),
         "ETHUSDT": Decimal(3000), "SOLUSDT": Decimal(150)}
BURST_SYMBOL, BURST_AT, BURST_JUMP = "XBTUSD", Decimal("1.02"), 0.025
TELEGRAM_BULK_PER_SEC = 30.0
REST_PER_KEY_PER_MIN, REST_KEYLESS_PER_MIN, WS_PER_HOUR = 120, 30, 60
TOKEN = "790001:capacity-bench-token-abcdefghijklmnopqrstuvwxyz"
BOT = "CapacityBenchBot"
STATS_ENV = "CAPACITY_STATS"
LAG_PERIOD = 0.1


# ---------------------------------------------------------------- inside the bot's process


def serve_bot() -> int:
    """`python -m bot run`, plus two probes that report to the file in $CAPACITY_STATS:
    the event loop's lag (a callback due every 100 ms) and the wall time spent inside
    database statements (SQLAlchemy's cursor events, on every engine)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from bot.__main__ import main

    pool = os.environ.get("CAPACITY_POOL")
    if pool:
        # What if the pool were larger (--pool): the bot's engine with these pool sizes.
        import bot.db.engine as engine

        make = engine.make_engine

        def bigger(url: str, **kwargs: Any) -> Any:
            kwargs.setdefault("pool_size", int(pool))
            kwargs.setdefault("max_overflow", 0)
            return make(url, **kwargs)

        engine.make_engine = bigger

    path = Path(os.environ[STATS_ENV])
    stats: dict[str, Any] = {"db_n": 0, "db_s": 0.0, "lag": [], "db_top": {}, "pool_wait": []}

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn: Any, *args: Any) -> None:
        conn.info.setdefault("bench_t0", []).append(time.perf_counter())

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        took = time.perf_counter() - conn.info["bench_t0"].pop()
        stats["db_n"] += 1
        stats["db_s"] += took
        top = stats["db_top"].setdefault(" ".join(statement.split())[:90], [0, 0.0])
        top[0] += 1
        top[1] += took

    # PTB's run_polling takes the loop set here, so the probe runs in the bot's own loop.
    loop = asyncio.new_event_loop()

    def tasks() -> list[asyncio.Task[Any]]:
        return list(asyncio.all_tasks(loop))
    asyncio.set_event_loop(loop)
    due = time.monotonic() + LAG_PERIOD
    written = 0.0

    def probe() -> None:
        nonlocal due, written
        now = time.monotonic()
        stats["lag"].append((round(now, 3), round(max(0.0, now - due), 4)))
        del stats["lag"][:-6000]
        if now - written >= 0.5:
            written = now
            # Updates waiting for one of the pool's database connections (its queue).
            waiting = sum(1 for chain in map(awaiting, tasks())
                          if any("queues.py" in f for f in chain)
                          and any("greenlet_spawn" in f for f in chain))
            stats["pool_wait"].append((round(now, 3), waiting))
            del stats["pool_wait"][:-3000]
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stats))
            tmp.replace(path)
        due = now + LAG_PERIOD
        loop.call_later(LAG_PERIOD, probe)

    def dump_tasks() -> None:
        # SIGUSR1: where every task waits right now (diagnosing a slow step by hand).
        lines = [" <- ".join(reversed(chain[-4:])) for chain in map(awaiting, tasks())]
        path.with_name(f"tasks-{time.monotonic():.0f}.txt").write_text("\n".join(lines))

    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    loop.call_soon(probe)
    return main(["run"])


def awaiting(task: asyncio.Task[Any]) -> list[str]:
    """The chain of coroutines a task is suspended in, outermost first, 'file:line name'."""
    coro: Any = task.get_coro()
    chain = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return chain


# ------------------------------------------------------------------------------ seeding


@dataclass
class Size:
    users: int
    accounts: int
    alerts_per_user: int
    feeds: int
    followers_per_feed: int

    @classmethod
    def at(cls, scale: float) -> Size:
        users = max(20, round(10_000 * scale))
        return cls(users=users, accounts=max(10, round(2_000 * scale)), alerts_per_user=10,
                   feeds=max(2, round(200 * scale)), followers_per_feed=10)

    @property
    def alerts(self) -> int:
        return self.users * self.alerts_per_user

    @property
    def burst(self) -> int:
        return max(5, self.users // 10)


def standing_alert(rng: random.Random, symbol: str) -> dict[str, Any]:
    """An alert far from where the walk goes (it never fires), spread like a real bot's:
    60 % price (above and below), 30 % move, 10 % funding."""
    base = MARKS[symbol]
    r = rng.random()
    if r < 0.3:
        return {"kind": "price", "direction": "above",
                "threshold": (base * Decimal(rng.uniform(1.5, 3))).quantize(Decimal("0.01"))}
    if r < 0.6:
        return {"kind": "price", "direction": "below",
                "threshold": (base * Decimal(rng.uniform(0.2, 0.6))).quantize(Decimal("0.01"))}
    if r < 0.9:
        return {"kind": "move", "direction": None, "window_seconds": rng.choice(WINDOWS),
                "threshold": Decimal(rng.randrange(50, 500)) / 10}
    return {"kind": "funding", "direction": "above",
            "threshold": Decimal("0.05") + Decimal(rng.randrange(1, 1000)) / 10**5}


async def seed(url: str, master_key: str, size: Size, user_ids: list[int],
               keys: list[tuple[str, str]], feed_chats: list[int]) -> dict[str, int]:
    """Bulk-insert the community: users, sealed keys, alerts, feeds and follows."""
    from sqlalchemy import insert
    from sqlmodel import select

    from bot.config import decode_master_key
    from bot.db.engine import Database
    from bot.db.models import Alert, ApiCredential, Feed, Follow, User
    from bot.vault import Vault

    db = Database(url)
    await db.migrate()
    vault = Vault(decode_master_key(master_key), [])
    rng = random.Random(11)
    now = datetime.now(UTC)
    connected = user_ids[:size.accounts]
    burst = set(user_ids[-size.burst:])
    symbols = list(MARKS)
    counts: dict[str, int] = {}

    def chunks(rows: list[dict[str, Any]], n: int = 5000) -> Iterator[list[dict[str, Any]]]:
        for i in range(0, len(rows), n):
            yield rows[i:i + n]

    async def put(model: Any, rows: list[dict[str, Any]]) -> None:
        async with db.session() as s:
            for part in chunks(rows):
                await s.exec(insert(model), params=part)
            await s.commit()
        counts[model.__tablename__] = len(rows)

    try:
        await put(User, [{"id": uid, "first_name": f"U{uid}", "created_at": now,
                          "last_seen_at": now, "notify_prefs": {},
                          "active_network": "testnet" if i < size.accounts else None}
                         for i, uid in enumerate(user_ids)])
        await put(ApiCredential, [
            {"user_id": uid, "network": "testnet", "key_id": key,
             "secret_enc": vault.encrypt(secret, user_id=uid, network="testnet"),
             "permissions": ["order", "orderCancel"], "verified_at": now, "created_at": now,
             "key_version": 1}
            for uid, (key, secret) in zip(connected, keys, strict=True)])
        alerts = []
        for uid in user_ids:
            for j in range(size.alerts_per_user):
                if j == 0 and uid in burst:
                    row = {"kind": "price", "direction": "above", "symbol": BURST_SYMBOL,
                           "threshold": MARKS[BURST_SYMBOL] * BURST_AT}
                else:
                    symbol = symbols[(uid + j) % len(symbols)]
                    row = {"symbol": symbol, **standing_alert(rng, symbol)}
                alerts.append({"user_id": uid, "chat_id": uid, "network": "mainnet",
                               "state": "active", "created_at": now, "window_seconds": None,
                               **row})
        await put(Alert, alerts)
        admins = user_ids[size.accounts:size.accounts + size.feeds]
        await put(Feed, [{"chat_id": chat, "name": f"feed{i}", "title": f"Feed {i}",
                          "active": True, "created_by": admins[i % len(admins)],
                          "created_at": now} for i, chat in enumerate(feed_chats)])
        async with db.session() as s:
            feed_ids = list((await s.exec(select(Feed.id))).all())
        follows = []
        for i, fid in enumerate(feed_ids):
            for k in range(size.followers_per_feed):
                uid = connected[(i * size.followers_per_feed + k) % len(connected)]
                follows.append({"user_id": uid, "feed_id": fid, "mode": "risk",
                                "value": Decimal(1), "auto": False, "active": True,
                                "created_at": now})
        await put(Follow, follows)
    finally:
        await db.dispose()
    return counts


# --------------------------------------------------------------------------- the bot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BotProcess:
    proc: subprocess.Popen[bytes]
    port: int
    stats_path: Path
    log_path: Path
    started: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stats(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.stats_path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return {"db_n": 0, "db_s": 0.0, "lag": []}

    async def stop(self, within: float = 60.0) -> float:
        """SIGTERM, as an orchestrator stops it; the seconds it took to exit. Waited for on
        the event loop: the emulator in this process must keep answering the bot's last
        requests meanwhile."""
        t = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, within)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - t


def start_bot(folder: Path, env: dict[str, str], script: Path | None = None) -> BotProcess:
    """`python -m bot run` behind `script --serve-bot` (this file's probes by default)."""
    port = free_port()
    stats = folder / "stats.json"
    log = folder / "bot.log"
    full = {**{k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM", "BITMEX"))},
            **env, "METRICS_PORT": str(port), STATS_ENV: str(stats),
            "LOG_LEVEL": os.environ.get("CAPACITY_LOG_LEVEL", "WARNING"),
            "PAPER_STATE_FILE": str(folder / "paper.pickle"), "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(script or Path(__file__).resolve()),
                                 "--serve-bot"],
                                cwd=folder, env=full, stdout=out, stderr=subprocess.STDOUT)
    return BotProcess(proc, port, stats, log, time.monotonic())


async def metrics(session: Any, bot: BotProcess) -> dict[str, float]:
    """The /metrics page as {'name{labels}': value}."""
    async with session.get(f"http://127.0.0.1:{bot.port}/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


async def wait_started(session: Any, bot: BotProcess, size: Size) -> tuple[float, float]:
    """Seconds from the process start to /readyz 200, and to every stream up and every alert
    loaded."""
    import aiohttp

    ready_at = None
    deadline = bot.started + 900
    while time.monotonic() < deadline:
        if bot.proc.poll() is not None:
            raise RuntimeError(f"the bot exited ({bot.proc.returncode}):\n"
                               + bot.log_path.read_text()[-3000:])
        try:
            if ready_at is None:
                async with session.get(f"http://127.0.0.1:{bot.port}/readyz") as r:
                    if r.status == 200:
                        ready_at = time.monotonic()
            if ready_at is not None:
                m = await metrics(session, bot)
                if (m.get('bot_connected_accounts{state="up"}', 0) >= size.accounts
                        and m.get("bot_alerts_registered", 0) >= size.alerts):
                    return ready_at - bot.started, time.monotonic() - bot.started
        except aiohttp.ClientError:
            pass  # not listening yet
        await asyncio.sleep(0.1)
    raise TimeoutError("the bot did not get ready in 15 minutes:\n"
                       + bot.log_path.read_text()[-3000:])


# ------------------------------------------------------------------------------ the load


@dataclass
class Request:
    chat: int
    at: float
    what: str
    press: str | None = None  # the callback query id of a press


@dataclass
class Phase:
    """Figures of one stretch of time."""

    name: str
    seconds: float = 0.0
    offered: float = 0.0
    answered: float = 0.0
    replies_ms: list[float] = field(default_factory=list)
    presses_ms: list[float] = field(default_factory=list)
    unanswered: int = 0
    cpu: float = 0.0
    harness_cpu: float = 0.0
    starved: float = 0.0  # % of the time the bot's loop was runnable but had no core
    loadavg: float = 0.0  # the machine's 1-minute load average at the end
    lag_p99_ms: float = 0.0
    lag_max_ms: float = 0.0
    db_per_s: float = 0.0
    db_busy: float = 0.0  # share of wall time inside a statement (can pass 100 %: concurrent)
    db_ms: float = 0.0
    pool_wait_mean: float = 0.0  # updates waiting for a pooled database connection
    pool_wait_max: int = 0
    tg_mean: float = 0.0
    tg_peak: float = 0.0
    tg_429: int = 0
    rest_key_max: float = 0.0  # per minute, the busiest key
    rest_keyless: float = 0.0  # per minute
    rest_429: float = 0.0
    handled_p50: float = 0.0  # the bot's own histogram: update in -> handler done, s
    handled_p99: float = 0.0
    burst: int = 0
    burst_seconds: float = 0.0
    burst_told: int = 0
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    db_top: list[tuple[str, int, float]] = field(default_factory=list)


class Meter:
    """Snapshots of every counter, so a phase is the difference of two."""

    def __init__(self, bot: BotProcess, sim: SimProcess, emu: Any, session: Any) -> None:
        self.bot, self.sim, self.emu, self.session = bot, sim, emu, session

    async def snap(self) -> dict[str, Any]:
        m = await metrics(self.session, self.bot)
        s = self.bot.stats()
        return {"t": time.monotonic(), "cpu": cpu_seconds(self.bot.pid),
                "wait": runqueue_wait_seconds(self.bot.pid), "load": os.getloadavg()[0],
                "harness": cpu_seconds() + cpu_seconds(self.sim.pid), "db_n": s["db_n"],
                "db_s": s["db_s"], "db_top": s.get("db_top", {}), "rest": self.sim.call("rest"),
                "calls": len(self.emu.calls),
                "ex429": m.get("bot_exchange_rate_limited_total", 0.0),
                "handled": {k: v for k, v in m.items()
                            if k.startswith("bot_reply_latency_seconds_bucket")}}

    def close(self, phase: Phase, a: dict[str, Any], b: dict[str, Any]) -> Phase:
        wall = b["t"] - a["t"]
        phase.seconds = wall
        phase.cpu = 100 * (b["cpu"] - a["cpu"]) / wall
        phase.starved = 100 * (b["wait"] - a["wait"]) / wall
        phase.loadavg = b["load"]
        phase.harness_cpu = 100 * (b["harness"] - a["harness"]) / wall
        stats = self.bot.stats()
        lags = [lag for t, lag in stats["lag"] if a["t"] <= t <= b["t"]]
        waits = [n for t, n in stats.get("pool_wait", []) if a["t"] <= t <= b["t"]]
        phase.pool_wait_max = max(waits, default=0)
        phase.pool_wait_mean = sum(waits) / len(waits) if waits else 0.0
        phase.lag_p99_ms = 1000 * pct(lags, 99) if lags else float("nan")
        phase.lag_max_ms = 1000 * max(lags, default=float("nan"))
        n = b["db_n"] - a["db_n"]
        phase.db_per_s = n / wall
        phase.db_busy = 100 * (b["db_s"] - a["db_s"]) / wall
        phase.db_ms = 1000 * (b["db_s"] - a["db_s"]) / n if n else 0.0
        before, after = a["db_top"], b["db_top"]
        top = [(k, v[0] - before.get(k, [0, 0.0])[0], v[1] - before.get(k, [0, 0.0])[1])
               for k, v in after.items()]
        phase.db_top = sorted(top, key=lambda x: -x[2])[:5]
        calls = self.emu.calls[a["calls"]:b["calls"]]
        out = [c.at for c in calls if c.status == 200 and c.method in SENT]
        per_second = Counter(int(t - a["t"]) for t in out)
        phase.tg_mean = len(out) / wall
        phase.tg_peak = max(per_second.values(), default=0)
        phase.tg_429 = sum(1 for c in calls if c.status == 429)
        used = Counter(b["rest"]) - Counter(a["rest"])
        keyless = used.pop("keyless", 0)
        phase.rest_key_max = 60 * max(used.values(), default=0) / wall
        phase.rest_keyless = 60 * keyless / wall
        phase.rest_429 = b["ex429"] - a["ex429"]
        phase.handled_p50, phase.handled_p99 = (
            bucket_pct(a["handled"], b["handled"], q) for q in (50, 99))
        return phase


def bucket_pct(a: dict[str, float], b: dict[str, float], q: float) -> float:
    """The q-th percentile of a Prometheus histogram's growth from `a` to `b`, as the upper
    bound of the bucket it falls in (seconds; inf past the last bucket)."""
    edges = []
    for name, total in b.items():
        le = name.split('le="', 1)[1].split('"', 1)[0]
        edges.append((float(le), total - a.get(name, 0.0)))
    edges.sort()
    if not edges or edges[-1][1] <= 0:
        return float("nan")
    want = edges[-1][1] * q / 100
    return next(le for le, count in edges if count >= want)


SENT = frozenset({"sendMessage", "sendPhoto", "editMessageText", "editMessageCaption"})
COMMANDS = ["/help", "/price xbtusd", "/balance", "/alerts", "/positions"]
PRESSES = ["❓ Help", "💰 Balance"]


class Load:
    """Active users sending a mix of commands and presses, open loop."""

    def __init__(self, emu: Any, people: list[Any], menus: dict[int, Any]) -> None:
        self.emu, self.people, self.menus = emu, people, menus
        self.turn = itertools.count()

    def one(self) -> Request:
        i = next(self.turn)
        user = self.people[i % len(self.people)]
        what = (i // len(self.people) + i) % (len(COMMANDS) + len(PRESSES))
        at = time.monotonic()
        if what < len(COMMANDS):
            self.emu.send_text(user, None, COMMANDS[what], bot=BOT)
            return Request(user.id, at, COMMANDS[what].split()[0])
        button = PRESSES[what - len(COMMANDS)]
        qid = self.emu.press(user, self.menus[user.id], button, bot=BOT)
        return Request(user.id, at, f"press {button[2:]}", press=qid)

    async def run(self, rate: float, seconds: float) -> list[Request]:
        sent: list[Request] = []
        start = time.monotonic()
        n = max(1, round(rate * seconds))
        for k in range(n):
            await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
            sent.append(self.one())
        return sent


async def settle_replies(emu: Any, requests: list[Request], since_call: int,
                         by_kind: dict[str, list[float]],
                         timeout: float = 60.0) -> tuple[list[float], list[float], int]:  # noqa: ASYNC109
    """Wait (up to `timeout`) for every request's first reply; their latencies in ms (also
    by command into `by_kind`)."""
    deadline = time.monotonic() + timeout
    while True:
        replies: dict[str, list[float]] = {}
        for c in emu.calls[since_call:]:
            if c.status == 200 and c.method in SENT:
                replies.setdefault(str(c.params.get("chat_id")), []).append(c.at)
        texts, presses, missing = [], [], 0
        by_kind.clear()
        for r in requests:
            if r.press is not None:
                answer = emu.answers(r.press)
                if answer is None:
                    missing += 1
                else:
                    presses.append(1000 * answer.after)
                    by_kind.setdefault(r.what, []).append(presses[-1])
                continue
            times = replies.get(str(r.chat), [])
            k = bisect.bisect_left(times, r.at)
            if k == len(times):
                missing += 1
            else:
                texts.append(1000 * (times[k] - r.at))
                by_kind.setdefault(r.what, []).append(texts[-1])
        if not missing or time.monotonic() > deadline:
            return texts, presses, missing
        await asyncio.sleep(0.25)


# ------------------------------------------------------------------------------- one run


@dataclass
class Result:
    db: str
    size: Size
    seed_s: float = 0.0
    ready_s: float = 0.0
    all_up_s: float = 0.0
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    handshakes: int = 0
    ws_refused: int = 0
    stop_s: float = 0.0
    idle: Phase = field(default_factory=lambda: Phase("idle"))
    steps: list[Phase] = field(default_factory=list)
    burst: Phase | None = None
    errors: int = 0


async def run_one(db: str, scale: float, rates: list[float], step_seconds: float,
                  idle_seconds: float, pg_url: str, keep: Path | None = None) -> Result:
    import aiohttp

    from bot.sandbox.telegram import FloodLimits, TelegramEmulator
    from bot.vault import generate_key

    size = Size.at(scale)
    result = Result(db, size)
    sim = SimProcess(SimOptions(accounts=size.accounts, marks=MARKS, ticks_per_second=10))
    emu = TelegramEmulator(FloodLimits())  # Telegram's limits, unscaled
    await emu.start()
    emu.add_bot(TOKEN, BOT, "Trade Bot")
    people = [emu.user(first_name=f"U{i}") for i in range(size.users)]
    for p in people:
        emu.private_chat(p, bot=BOT)
    groups = [emu.group(f"Feed {i}", people[i * 5:i * 5 + 5],
                        [people[size.accounts + i % max(1, size.users - size.accounts)]])
              for i in range(size.feeds)]
    pg_name = None
    bot: BotProcess | None = None
    with workdir(keep, db) as folder:
        if db == "postgres":
            pg_name = f"capacity_{os.getpid()}"
            url = create_pg(pg_url, pg_name)
        else:
            url = f"sqlite+aiosqlite:///{folder / 'bot.db'}"
        master = generate_key()
        try:
            t = time.monotonic()
            await seed(url, master, size, [p.id for p in people], sim.keys,
                       [g.id for g in groups])
            result.seed_s = time.monotonic() - t
            bot = start_bot(folder, {
                "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": emu.url,
                "BITMEX_MAINNET_URL": sim.url, "BITMEX_TESTNET_URL": sim.url,
                "DATABASE_URL": url, "MASTER_KEY": master})
            async with aiohttp.ClientSession() as session:
                result.ready_s, result.all_up_s = await wait_started(session, bot, size)
                result.rss_start_mb = rss_kib(bot.pid) / 1024
                meter = Meter(bot, sim, emu, session)
                a = await meter.snap()
                await asyncio.sleep(idle_seconds)
                result.idle = meter.close(Phase("idle"), a, await meter.snap())
                active = people[:min(size.accounts, max(20, round(max(rates) * 4)))]
                menus = await open_menus(emu, active)
                load = Load(emu, active, menus)
                for k, rate in enumerate(rates):
                    phase = Phase(f"{rate:g}/s")
                    a = await meter.snap()
                    burst_task = None
                    if k == 0:
                        burst_task = asyncio.create_task(
                            alert_burst(emu, sim, people[-size.burst:], phase))
                    requests = await load.run(rate, step_seconds)
                    if burst_task is not None:
                        await burst_task
                    b = await meter.snap()
                    texts, presses, missing = await settle_replies(emu, requests, a["calls"],
                                                                   phase.by_kind)
                    meter.close(phase, a, b)
                    phase.offered = len(requests) / step_seconds
                    phase.answered = (len(requests) - missing) / step_seconds
                    phase.replies_ms, phase.presses_ms, phase.unanswered = texts, presses, missing
                    result.steps.append(phase)
                    if k == 0:
                        result.burst = phase
                m = await metrics(session, bot)
                result.errors = int(sum(v for name, v in m.items()
                                        if name.startswith("bot_update_errors_total")))
            result.rss_peak_mb = peak_rss_kib(bot.pid) / 1024
            result.handshakes, result.ws_refused = sim.handshakes()
        finally:
            if bot is not None:
                result.stop_s = await bot.stop()
            await emu.stop()
            sim.stop()
            if pg_name is not None:
                drop_pg(pg_url, pg_name)
    return result


@contextlib.contextmanager
def workdir(keep: Path | None, db: str) -> Iterator[Path]:
    """A throwaway folder for the bot (its SQLite file, log, stats), or `keep`/db kept."""
    if keep is not None:
        folder = keep / db
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("bot.db*"):
            old.unlink()
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="capacity-") as tmp:
        yield Path(tmp)


async def open_menus(emu: Any, people: list[Any]) -> dict[int, Any]:
    """Every active user's /start menu (its buttons are what they press)."""
    for p in people:
        emu.send_text(p, None, "/start", bot=BOT)

    def menus() -> dict[int, Any] | None:
        found = {}
        for p in people:
            m = emu.last_bot_message(emu.private_chat(p, bot=BOT), bot=BOT)
            if m is None or "❓ Help" not in str(m.buttons):
                return None
            found[p.id] = m
        return found

    got: dict[int, Any] = await emu.wait_for(menus, timeout=300)
    return got


async def alert_burst(emu: Any, sim: SimProcess, owners: list[Any], phase: Phase) -> None:
    """The mark jumps: one alert of each owner fires; seconds until every one is told."""
    await asyncio.sleep(1.0)  # into the load step
    chats = {str(p.id) for p in owners}
    since = len(emu.calls)
    t0 = time.monotonic()
    sim.call("offset", BURST_SYMBOL, BURST_JUMP)
    told: dict[str, float] = {}
    deadline = t0 + 60 + len(owners) / 10
    while len(told) < len(chats) and time.monotonic() < deadline:
        for c in emu.calls[since:]:
            chat = str(c.params.get("chat_id"))
            if c.status == 200 and c.method == "sendMessage" and chat in chats:
                told.setdefault(chat, c.at)
        since = len(emu.calls)
        await asyncio.sleep(0.1)
    phase.burst, phase.burst_told = len(chats), len(told)
    phase.burst_seconds = (max(told.values()) - t0) if told else float("nan")


def create_pg(base: str, name: str) -> str:
    from tests import dbs

    os.environ[dbs.ENV] = base
    return dbs.create_database(name)


def drop_pg(base: str, name: str) -> None:
    from tests import dbs

    os.environ[dbs.ENV] = base
    dbs.drop_database(name)


def pg_answers(url: str) -> bool:
    """Whether a PostgreSQL server takes connections at `url` (within 2 s)."""
    async def probe() -> bool:
        try:
            import asyncpg

            conn = await asyncio.wait_for(
                asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1)), 2)
        except Exception:  # no server, no driver, refused: not there
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


# ------------------------------------------------------------------------------ the table


def pool_capacity() -> int:
    """The connections the bot's pool may open, as the bot's process configures it."""
    from bot.db.engine import DEFAULT_MAX_OVERFLOW, DEFAULT_POOL_SIZE

    if os.environ.get("CAPACITY_POOL"):
        return int(os.environ["CAPACITY_POOL"])
    size = int(os.environ.get("DB_POOL_SIZE") or DEFAULT_POOL_SIZE)
    return size + int(os.environ.get("DB_MAX_OVERFLOW") or DEFAULT_MAX_OVERFLOW)


def verdict(r: Result) -> str:
    """The three resources closest to their limits in the heaviest step, as 'name x %'
    (x: % of the limit; lag against 100 ms, database time against the wall clock)."""
    step = max(r.steps, key=lambda p: p.offered)
    # Replies are not held to Telegram's 30/s, bulk messages are: the alert burst is what
    # meets it, once it is long enough to outlast the server's burst allowance.
    b = r.burst
    burst_rate = (b.burst_told / b.burst_seconds
                  if b and b.burst_seconds and b.burst_told >= 2 * TELEGRAM_BULK_PER_SEC else 0.0)
    use = {
        "Telegram 30 msg/s (bulk)": 100 * burst_rate / TELEGRAM_BULK_PER_SEC,
        "bot CPU (one core)": step.cpu,
        "event loop (lag p99 vs 100 ms)": step.lag_p99_ms,
        "database (time in statements)": step.db_busy,
        # Updates queued for a connection against the pool's size (DB_POOL_SIZE +
        # DB_MAX_OVERFLOW, or --pool): a queue as long as the pool is 100 %.
        f"database connections ({pool_capacity()} in the pool)":
            100 * step.pool_wait_max / pool_capacity(),
        "BitMEX REST per key": 100 * step.rest_key_max / REST_PER_KEY_PER_MIN,
        "BitMEX REST keyless": 100 * step.rest_keyless / REST_KEYLESS_PER_MIN,
        "BitMEX WS connects/h": 100 * r.handshakes / WS_PER_HOUR,
        # Not ours to spend, but it bounds every figure above on a shared machine.
        "cores (loop runnable, waiting)": step.starved,
    }
    ranked = sorted(use, key=lambda k: -use[k])
    return "; ".join(f"{name} {use[name]:.0f} %" for name in ranked[:3])


def rows(r: Result) -> list[tuple[str, str]]:
    s = r.size
    out = [
        ("users / accounts / alerts / feeds",
         f"{s.users:,} / {s.accounts:,} / {s.alerts:,} / {s.feeds:,}"),
        ("seed (bulk insert), s", f"{r.seed_s:.1f}"),
        ("start-up to /readyz 200, s", f"{r.ready_s:.1f}"),
        ("start-up to all streams up + alerts loaded, s", f"{r.all_up_s:.1f}"),
        ("RSS after start / peak, MB", f"{r.rss_start_mb:.0f} / {r.rss_peak_mb:.0f}"),
        ("CPU idle (market 10 ticks/s), % of a core", f"{r.idle.cpu:.1f}"),
        ("machine load average (1 min) idle / heaviest step",
         f"{r.idle.loadavg:.1f} / {max(r.steps, key=lambda p: p.offered).loadavg:.1f}"),
        ("loop lag idle p99 / max, ms", f"{r.idle.lag_p99_ms:.1f} / {r.idle.lag_max_ms:.1f}"),
    ]
    for p in r.steps:
        out += [
            (f"load {p.name}: answered updates/s", f"{p.answered:.1f} of {p.offered:.1f}"
             + (f" ({p.unanswered} unanswered)" if p.unanswered else "")),
            (f"load {p.name}: reply p50 / p99, ms",
             f"{pct(p.replies_ms, 50):.0f} / {pct(p.replies_ms, 99):.0f}"),
            (f"load {p.name}: press answered p50 / p99, ms",
             f"{pct(p.presses_ms, 50):.0f} / {pct(p.presses_ms, 99):.0f}"),
            (f"load {p.name}: slowest kind p99, ms", slowest(p)),
            (f"load {p.name}: handling in the bot p50 / p99, ms (<= bucket)",
             f"{1000 * p.handled_p50:.0f} / {1000 * p.handled_p99:.0f}"),
            (f"load {p.name}: CPU %, waiting for a core %, loop lag p99 ms",
             f"{p.cpu:.0f} %, {p.starved:.0f} %, {p.lag_p99_ms:.0f} ms"),
            (f"load {p.name}: DB statements/s, mean ms, busy %",
             f"{p.db_per_s:.0f}, {p.db_ms:.1f} ms, {p.db_busy:.0f} %"),
            (f"load {p.name}: waiting for a DB connection mean / max",
             f"{p.pool_wait_mean:.0f} / {p.pool_wait_max}"),
            (f"load {p.name}: Telegram out msg/s mean / peak, 429s",
             f"{p.tg_mean:.1f} / {p.tg_peak:.0f}, {p.tg_429}"),
            (f"load {p.name}: BitMEX REST/min busiest key, keyless, 429s",
             f"{p.rest_key_max:.0f}, {p.rest_keyless:.0f}, {p.rest_429:.0f}"),
        ]
    if r.burst is not None:
        b = r.burst
        rate = b.burst_told / b.burst_seconds if b.burst_seconds else 0.0
        out.append((f"alert burst during {b.name}: told / s / msg/s",
                    f"{b.burst_told}/{b.burst} in {b.burst_seconds:.1f} s = {rate:.1f}/s"))
    out += [
        ("WS connects (limit 60/h), refused", f"{r.handshakes}, {r.ws_refused}"),
        ("harness CPU (emulator+simulator) heaviest step, %",
         f"{max(r.steps, key=lambda p: p.offered).harness_cpu:.0f}"),
        ("updates ending in the error handler", str(r.errors)),
        ("shutdown on SIGTERM, s", f"{r.stop_s:.1f}"),
        ("closest to their limits (heaviest step)", verdict(r)),
    ]
    return out


def slowest(p: Phase) -> str:
    if not p.by_kind:
        return "-"
    kind = max(p.by_kind, key=lambda k: pct(p.by_kind[k], 99))
    return f"{kind} {pct(p.by_kind[kind], 99):.0f}"


def details(r: Result) -> str:
    """Per command latency and the statements with the most database time, per step."""
    lines = [f"{r.db}:"]
    for p in r.steps:
        kinds = ", ".join(f"{k} {pct(v, 50):.0f}/{pct(v, 99):.0f}"
                          for k, v in sorted(p.by_kind.items()))
        lines.append(f"  {p.name} p50/p99 ms: {kinds}")
        for stmt, n, secs in p.db_top:
            lines.append(f"    db {secs:6.2f} s {n:6} x {stmt}")
    return "\n".join(lines)


def table(results: list[Result]) -> str:
    columns = [rows(r) for r in results]
    width = max(len(name) for name, _ in columns[0])
    cells = [max(len(r.db), *(len(v) for _, v in col)) for r, col in zip(results, columns,
                                                                         strict=True)]
    head = f"| {'':<{width}} | " + " | ".join(f"{r.db:<{w}}" for r, w in zip(results, cells,
                                                                           strict=True)) + " |"
    rule = f"|{'-' * (width + 2)}|" + "|".join("-" * (w + 2) for w in cells) + "|"
    lines = [head, rule]
    for i, (name, _) in enumerate(columns[0]):
        values = " | ".join(f"{col[i][1]:<{w}}" for col, w in zip(columns, cells, strict=True))
        lines.append(f"| {name:<{width}} | {values} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default=None,
                    help="default: both when a PostgreSQL server answers, else sqlite")
    ap.add_argument("--scale", type=float, default=1.0, help="1 = 10,000 users (0.1: quick)")
    ap.add_argument("--rates", type=float, nargs="+", default=[10, 20, 40],
                    help="load steps, updates per second")
    ap.add_argument("--step-seconds", type=float, default=20.0)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--pg-url", default=os.environ.get("PG_URL", PG_URL))
    ap.add_argument("--keep", type=Path, default=None, metavar="DIR",
                    help="keep the bot's folder (log, stats, SQLite file) under DIR/<db>")
    ap.add_argument("--pool", type=int, default=None, metavar="N",
                    help="what if: the bot's database pool holds N connections (default: "
                         "SQLAlchemy's 5 + 10 overflow)")
    ap.add_argument("--details", action="store_true",
                    help="also print latency by command and the costliest statements")
    ap.add_argument("--serve-bot", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve_bot:
        return serve_bot()
    if a.pool is not None:
        os.environ["CAPACITY_POOL"] = str(a.pool)  # read by the bot's process
    dbs = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}
    if a.db is None:
        chosen = ["sqlite", "postgres"] if pg_answers(a.pg_url) else ["sqlite"]
        if len(chosen) == 1:
            print(f"no PostgreSQL server at {a.pg_url}: SQLite only (--pg-url to choose one)")
    else:
        chosen = dbs[a.db]
    started = datetime.now(UTC)
    wall = time.monotonic()
    results = []
    for db in chosen:
        print(f"running on {db} ...", flush=True)
        results.append(asyncio.run(run_one(db, a.scale, a.rates, a.step_seconds,
                                           a.idle_seconds, a.pg_url, a.keep)))
    print()
    print(f"capacity, scale {a.scale:g}, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"{time.monotonic() - wall:.0f} s: python bench/capacity.py "
          + " ".join(argv if argv is not None else sys.argv[1:]))
    print(table(results))
    if a.details:
        for r in results:
            print(details(r))
    ok = all(not p.unanswered for r in results for p in r.steps) and all(
        r.burst is None or r.burst.burst_told == r.burst.burst for r in results)
    print("every update answered and every alert told:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
