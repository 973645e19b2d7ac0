"""Soak: one bot process, 1,000 simulated users, 10 minutes of mixed use; does it hold up?

    python bench/soak.py [--minutes 10] [--users 1000] [--rate 10] [--db sqlite|postgres]
                         [--plot sandbox-out/soak.png] [--trace-malloc]

The bot runs as it is deployed (`python -m bot run` in a process of its own, polling the
Bot API emulator with Telegram's flood limits on), the BitMEX simulator in a third process
with its REST limits on and the market ticking 10 times a second (a random walk within
+-1.5 %); the set-up is bench/capacity.py's (seeded directly: every user, one in ten with a
connected testnet account, 3 standing alerts each, a few feeds). Then, open loop at
`--rate` updates/s, a random user who is not waiting for the bot does one of:

- a command: /help, /price, /alerts, /balance, /positions, /orders;
- a press of a /start menu button (Help, Balance) — the first action of a user who has no
  menu yet is /start;
- an alert a fraction of a per cent from the market (the walk fires it within seconds);
- a connected user: /buy or /sell 100 XBTUSD at market, then Confirm on the card (a fill
  told a moment later), or /close XBTUSD and Confirm.

Recorded every `--sample-seconds` (10): the bot's RSS and delivery queue depth (/metrics);
per minute: updates sent and answered, reply latency p50/p99 (update handed to the
emulator → the bot's first message or edit in that chat; a press → its answer), errors
(an error reply, an update in the error handler, an ERROR or traceback in the bot's log,
an update not answered in 30 s), Telegram 429s (the emulator's answers), BitMEX 429s (the
bot's counter), alerts fired and fills told. A table per minute, and a PNG plot of RSS,
latency and queue depth over time.

Warm-up (the first 1/3) starts every user (half its actions go to users not seen yet), so
per-user and per-chat state is all made before RSS is fitted ("users started by the end of
warm-up: N of N"). A probe thread in the bot records where RSS is every 5 s: SQLite's heap
(sqlite3_memory_used), glibc malloc's bytes in use and free-but-kept, Python's traced
bytes (with --trace-malloc), Python's allocated blocks and gc's full collections; their
slopes after warm-up are printed under the verdict, and what none of the malloc figures
shows is Python's small-object arenas (pymalloc, mmapped) or other maps. Diagnostics:
$SOAK_GC_EVERY=s (a full collection that often: garbage or live?), $SOAK_MALLOC_TRIM=1,
--ticks 0 (a still market: per tick or per update?).

"No growth after warm-up": RSS over the last 2/3 of the run is fitted by least squares
and its slope printed in MB/min; the verdict is "flat" when the fitted growth over that
stretch is below 2 MB and 2 % of the mean (the allocator's noise), else "GROWS". To find a
leak, `--trace-malloc` runs tracemalloc in the bot's process and prints the allocation
sites that grew most between the end of warm-up and the end of the run.

The machine is shared (the emulator and the simulator run on the same cores, and other
jobs too): the harness's own CPU and the machine's load average are printed alongside.
The smoke test (tests/test_bench_soak.py) runs it for 20 s with 20 users.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import math
import os
import random
import re
import signal
import sys
import threading
import time
import tracemalloc
import weakref
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import capacity
from bench.capacity import (
    BOT,
    MARKS,
    SENT,
    TOKEN,
    BotProcess,
    Size,
    metrics,
    seed,
    start_bot,
    wait_started,
    workdir,
)
from bench.common import SimOptions, SimProcess, cpu_seconds, pct, rss_kib

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
TRACE_ENV = "SOAK_TRACEMALLOC"  # a folder: snapshots diffed on SIGUSR2 are written there
MEMLOG_ENV = "SOAK_MEMLOG"  # a file: the bot's memory by owner, a line every few seconds
WARMUP_SHARE = 1 / 3  # RSS is fitted over the rest of the run
MIN_FIT_MINUTES = 3.0  # a shorter stretch after warm-up tells nothing about growth
ANSWER_WITHIN = 30.0  # seconds: an update not answered by then counts as an error
ERROR_WORDS = ("went wrong", "Traceback")
LOG_ERROR = re.compile(rb"\bERROR\b|Traceback|CRITICAL")
SYMBOL = "XBTUSD"


# ---------------------------------------------------------------- inside the bot's process


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def memory_probe(path: Path, every: float) -> None:
    """A thread writing, every `every` s, where the bot's RSS is: SQLite's own heap
    (sqlite3_memory_used: page caches, statements), glibc malloc's bytes in use and free
    inside its arenas (free but kept: fragmentation), Python's traced bytes (tracemalloc,
    when on), threads; then Python's own heap: blocks allocated (sys.getallocatedblocks:
    live objects and buffers, pymalloc's or not), gc's pending counts per generation and
    its full collections so far. RSS growth that none of the malloc figures shows is
    outside malloc (pymalloc's mmapped arenas, thread stacks).

    Diagnostics, off unless asked: $SOAK_GC_EVERY (seconds) runs a full gc.collect() from
    this thread that often (is the growth garbage waiting for a generation-2 collection?),
    $SOAK_MALLOC_TRIM=1 calls malloc_trim(0) before each line (kept-free or in use?)."""
    sqlite = ctypes.CDLL("libsqlite3.so.0")  # the one _sqlite3 links: same process heap
    sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    tick = threading.Event()  # never set: its wait is the thread's pause
    gc_every = float(os.environ.get("SOAK_GC_EVERY", "0"))
    trim = os.environ.get("SOAK_MALLOC_TRIM") == "1"

    def loop() -> None:
        last_gc = time.monotonic()
        with path.open("a") as out:
            while True:
                if gc_every and time.monotonic() - last_gc >= gc_every:
                    gc.collect()
                    last_gc = time.monotonic()
                if trim:
                    libc.malloc_trim(0)
                m = libc.mallinfo2()
                traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
                g0, g1, g2 = gc.get_count()
                full = gc.get_stats()[2]["collections"]
                out.write(f"{time.monotonic():.1f}\t{rss_kib() * 1024}\t"
                          f"{sqlite.sqlite3_memory_used()}\t{m.uordblks + m.hblkhd}\t"
                          f"{m.fordblks}\t{traced}\t{threading.active_count()}\t"
                          f"{sys.getallocatedblocks()}\t{g0}\t{g1}\t{g2}\t{full}\n")
                out.flush()
                tick.wait(every)

    threading.Thread(target=loop, name="soak-memory-probe", daemon=True).start()


def serve_bot() -> int:
    """`python -m bot run` with the memory probe; with $SOAK_TRACEMALLOC, on each SIGUSR2
    a census written to that folder (tracemalloc-N.txt): the allocation sites that grew
    most since the first SIGUSR2 (tracemalloc, unless SOAK_TRACE_FRAMES=0), objects per
    type, weak references by target, the containers that grew longest and who holds
    what grew."""
    memlog = os.environ.get(MEMLOG_ENV)
    if memlog:
        memory_probe(Path(memlog), 5.0)
    folder = os.environ.get(TRACE_ENV)
    if folder:
        # One frame a trace: deeper ones slowed the bot so much at 1,000 users that it
        # answered nothing (SOAK_TRACE_FRAMES for more, at a smaller --users).
        # 0: no tracemalloc at all, only the census of objects (gc), which costs nothing
        # between the two signals and so leaves the bot's pace as measured.
        frames = int(os.environ.get("SOAK_TRACE_FRAMES", "1"))
        if frames:
            tracemalloc.start(frames)
        baseline = Path(folder, "tracemalloc-baseline.snap")
        types: list[Counter[str]] = []
        targets: list[Counter[str]] = []
        sizes: dict[int, tuple[str, int]] = {}  # id -> (type, len) of the larger containers
        by_attr: list[Counter[str]] = []  # "Owner.attr" -> the summed length of its containers
        count = [0]

        def census() -> tuple[Counter[str], Counter[str]]:
            """Objects per type (gc) and what the weak references point at."""
            objects = gc.get_objects()
            by_type = Counter(type(o).__qualname__ for o in objects)
            weak = Counter[str]()
            for o in objects:
                if isinstance(o, weakref.ReferenceType):
                    target = o()
                    # A class made at run time is a leak of its own kind: name it.
                    weak[f"class {target.__module__}.{target.__qualname__}"
                         if isinstance(target, type) else type(target).__qualname__] += 1
            return by_type, weak

        def attr_lengths() -> Counter[str]:
            """Every instance's container attributes, their lengths summed per "Owner.attr"
            (and per table name for the streams' tables): many small containers that each
            grow a little (a table per account) are under lengths()'s 50 and its top 10,
            yet add up."""
            total = Counter[str]()
            for o in gc.get_objects():
                try:  # past any __getattr__: a diagnostic must not run the bot's code
                    d = object.__getattribute__(o, "__dict__")
                except (AttributeError, TypeError):
                    continue
                if not isinstance(d, dict):
                    continue
                owner = type(o).__qualname__
                if owner == "Table":
                    owner = f"Table[{d.get('name')}]"
                for k, v in list(d.items()):
                    if isinstance(v, (dict, list, set, deque)):
                        total[f"{owner}.{k}"] += len(v)
            return total

        def lengths() -> dict[int, tuple[str, int, Any]]:
            """The containers of 50 items or more: one that keeps growing (a list, a dict)
            adds no object of a new type, only to its own length. gc lists only what it
            tracks, and a dict of ints and floats (a map of ids) is untracked: those are
            found as the referents of what it does list."""
            out: dict[int, tuple[str, int, Any]] = {}
            for o in gc.get_objects():
                for c in (o, *gc.get_referents(o)):
                    if isinstance(c, (dict, list, set, deque)) and len(c) >= 50:
                        out[id(c)] = (type(c).__qualname__, len(c), c)
            return out

        def holder(target: Any) -> str:
            """What holds this container (an instance: by its __dict__)."""
            names = []
            for r in gc.get_referrers(target):
                if isinstance(r, tuple) and len(r) == 3 and r[2] is target:
                    continue  # lengths()'s own record of it
                if isinstance(r, dict):
                    owners = [type(x).__qualname__ for x in gc.get_referrers(r)
                              if getattr(x, "__dict__", None) is r]
                    key = next((k for k, v in r.items() if v is target), "?")
                    names.append(f"{owners[0] if owners else 'dict'}.{key}")
                elif not isinstance(r, list) or len(r) < 1000:  # not gc's own lists
                    names.append(type(r).__qualname__)
            return ", ".join(names[:3])

        def referrers(kinds: list[str], sample: int = 200) -> dict[str, str]:
            """Who holds the newest objects of each grown type (gc keeps survivors in age
            order, so the last ones listed are the youngest): one pass over every object's
            referents, an instance's __dict__ named after its owner."""
            objects = gc.get_objects()
            wanted: dict[int, str] = {}
            for kind in kinds:
                mine = [o for o in objects if type(o).__qualname__ == kind][-sample:]
                wanted.update((id(o), kind) for o in mine)
            owner_of: dict[int, str] = {}
            held: dict[str, Counter[str]] = {k: Counter() for k in kinds}
            hits: list[tuple[str, Any]] = []
            for o in objects:
                for r in gc.get_referents(o):
                    found = wanted.get(id(r))
                    if found is not None:
                        hits.append((found, o))
                try:  # past any __getattr__: a diagnostic must not run the bot's code
                    d = object.__getattribute__(o, "__dict__")
                except (AttributeError, TypeError):
                    continue
                if isinstance(d, dict):
                    owner_of[id(d)] = type(o).__qualname__
            for kind, o in hits:
                name = type(o).__qualname__
                if isinstance(o, dict) and id(o) in owner_of:
                    name = f"dict of {owner_of[id(o)]}"
                held[kind][name] += 1
            del objects, hits
            return {k: ", ".join(f"{n} {c}" for n, c in held[k].most_common(5)) for k in kinds}

        def diff(signum: int, frame: Any) -> None:
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]) if frames else None
            count[0] += 1
            gc.collect()
            now, weak = census()
            if not types:
                # On disk, not in the heap: a snapshot held in memory is tens of MB of
                # traced tuples, which then reads as growth of the very process measured.
                if snap is not None:
                    snap.dump(str(baseline))
                del snap
                types.append(now)
                targets.append(weak)
                sizes.update((i, (t, n)) for i, (t, n, _) in lengths().items())
                by_attr.append(attr_lengths())
                text = "baseline taken\n"
            else:
                lines = []
                stats = []
                if snap is not None:
                    first = tracemalloc.Snapshot.load(str(baseline))
                    stats = snap.compare_to(first, "traceback" if frames > 1 else "lineno")[:15]
                    # pymalloc's 64-byte class is the one that grows: its traces (49-64
                    # bytes: a 2- or 3-tuple, a str of up to 15 characters) by traceback.
                    small = Counter(t.traceback for t in snap.traces if 49 <= t.size <= 64)
                    small.subtract(t.traceback for t in first.traces if 49 <= t.size <= 64)
                    del first, snap
                for s in stats:
                    lines.append(f"{s.size_diff / 1024:+10.1f} KiB {s.count_diff:+8d} blocks")
                    lines += [f"      {f}" for f in s.traceback.format()[-2 * frames:]]
                if stats:
                    lines.append("traces of 49-64 bytes, grown most by traceback:")
                    for tb, n in small.most_common(12):
                        lines.append(f"{n:+10d} blocks")
                        lines += [f"      {f}" for f in tb.format()[-2 * frames:]]
                    del small
                grown = sorted(((n - types[0][k], k) for k, n in now.items()), reverse=True)
                lines.append("objects per type (gc), grown most:")
                lines += [f"{d:+10d} {k} (now {now[k]})" for d, k in grown[:12] if d > 0]
                lines.append("weak references by target type, grown most:")
                wgrown = sorted(((n - targets[0][k], k) for k, n in weak.items()), reverse=True)
                lines += [f"{d:+10d} {k} (now {weak[k]})" for d, k in wgrown[:12] if d > 0]
                if wgrown and wgrown[0][0] > 0:
                    # Who keeps the weak references to the target grown most, two levels up.
                    name = wgrown[0][1]
                    refs = [o for o in gc.get_objects() if isinstance(o, weakref.ReferenceType)
                            and (t := o()) is not None and isinstance(t, type)
                            and f"class {t.__module__}.{t.__qualname__}" == name][-50:]
                    seen = Counter[str]()
                    for ref in refs:
                        for r in gc.get_referrers(ref):
                            if r is refs:
                                continue
                            seen[f"{type(r).__qualname__} in {holder(r)}"] += 1
                    lines.append(f"  weak references to {name} held by: "
                                 + ", ".join(f"{k} {n}" for k, n in seen.most_common(4)))
                    del refs
                lines.append("held by (the newest 200 of each of the 6 types grown most):")
                # SQLAlchemy's compiled cache: its entries by statement (digits masked).
                for eng in [o for o in gc.get_objects() if type(o).__qualname__ == "Engine"]:
                    cache = getattr(eng, "_compiled_cache", None)
                    if cache is None:
                        continue
                    texts = Counter(re.sub(r"\d+", "N", str(v))[:160]
                                    for v in list(cache.values()))
                    lines.append(f"engine {eng.url!r}: compiled cache {len(cache)} entries"
                                 f" (of {getattr(cache, 'capacity', '?')}), by statement:")
                    lines += [f"{n:+10d} {t}" for t, n in texts.most_common(8)]
                lines.append("container attributes grown most, lengths summed over instances:")
                now_attr = attr_lengths()
                agrown = sorted(((n - by_attr[0][k], k) for k, n in now_attr.items()),
                                reverse=True)[:20]
                lines += [f"{d:+10d} {k} (now {now_attr[k]})" for d, k in agrown if d > 0]
                lines.append("containers grown most in length (held by):")
                later = lengths()
                longer = sorted(((n - sizes[i][1], i, t) for i, (t, n, _) in later.items()
                                 if i in sizes and sizes[i][0] == t), reverse=True)[:10]
                lines += [f"{d:+10d} {t} (now {later[i][1]}) {holder(later[i][2])}"
                          for d, i, t in longer if d > 0]
                del later
                top = [k for d, k in grown[:6] if d > 0]
                lines += [f"  {k}: {who}" for k, who in referrers(top).items()]
                text = "\n".join(lines) + "\n"
            Path(folder, f"tracemalloc-{count[0]}.txt").write_text(text)
            # pymalloc's own account (arenas, blocks in use and free per size class): RSS
            # that gc's census does not explain is either live small objects or free
            # blocks kept in arenas that still hold a live one (fragmentation).
            with Path(folder, f"pymalloc-{count[0]}.txt").open("w") as out:
                sys.stderr.flush()
                saved = os.dup(2)
                os.dup2(out.fileno(), 2)
                try:
                    sys._debugmallocstats()
                finally:
                    os.dup2(saved, 2)
                    os.close(saved)

        signal.signal(signal.SIGUSR2, diff)
    # The bot as deployed, without capacity.py's probes: their loop-lag and pool-wait
    # records grow for 10 and 25 minutes (6,000 and 3,000 samples) and are written out as
    # one JSON document every 0.5 s, in the very process whose RSS is fitted here; the
    # soak reads none of them (its census showed those two lists as the containers that
    # grew most after warm-up).
    from bot.__main__ import main as bot_main

    return bot_main(["run"])


# ------------------------------------------------------------------------- the harness


@dataclass
class Waiting:
    """One user's update the bot has yet to answer."""

    user: int
    kind: str
    at: float
    chat: str
    press: str | None = None  # the callback query id of a press
    done: asyncio.Future[float] = field(default_factory=lambda: asyncio.get_running_loop()
                                        .create_future())


@dataclass
class Minute:
    sent: int = 0
    answered: int = 0
    replies_ms: list[float] = field(default_factory=list)
    presses_ms: list[float] = field(default_factory=list)
    error_replies: int = 0
    unanswered: int = 0
    handler_errors: int = 0
    log_errors: int = 0
    tg_429: int = 0
    bitmex_429: float = 0.0
    queue_max: float = 0.0
    rss_mb: float = 0.0
    alerts_fired: float = 0.0
    fills: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def errors(self) -> int:
        return self.error_replies + self.unanswered + self.handler_errors + self.log_errors


@dataclass
class Sample:
    t: float  # seconds since the load began
    rss_mb: float
    queue: float
    latency_ms: float  # p50 of replies answered in the last interval (NaN: none)


class Watcher:
    """Reads the emulator's call log as it grows: answers the waiting, counts the rest."""

    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.seen = len(emu.calls)
        self.by_chat: dict[str, list[Waiting]] = {}
        self.by_query: dict[str, Waiting] = {}
        self.tg_429 = 0
        self.error_replies = 0
        self.fills = 0

    def wait(self, w: Waiting) -> Waiting:
        if w.press is not None:
            self.by_query[w.press] = w
        else:
            self.by_chat.setdefault(w.chat, []).append(w)
        return w

    def scan(self) -> None:
        calls = self.emu.calls
        new, self.seen = calls[self.seen:], len(calls)
        for c in new:
            if c.status == 429:
                self.tg_429 += 1
            if c.status != 200:
                continue
            if c.method == "answerCallbackQuery":
                w = self.by_query.pop(str(c.params.get("callback_query_id")), None)
                if w is not None and not w.done.done():
                    w.done.set_result(c.at)
                continue
            if c.method not in SENT:
                continue
            text = str(c.params.get("text") or c.params.get("caption") or "")
            if any(word in text for word in ERROR_WORDS):
                self.error_replies += 1
            if "Order filled" in text or "Filled" in text:
                self.fills += 1
            chat = str(c.params.get("chat_id"))
            waiting = self.by_chat.get(chat)
            while waiting and waiting[0].at <= c.at:
                w = waiting.pop(0)
                if not w.done.done():
                    w.done.set_result(c.at)
                break  # one message answers one update


class Soak:
    def __init__(self, emu: Any, sim: SimProcess, bot: BotProcess, people: list[Any],
                 connected: set[int], rate: float, seed_: int = 5) -> None:
        self.emu, self.sim, self.bot = emu, sim, bot
        self.people, self.connected, self.rate = people, connected, rate
        self.rng = random.Random(seed_)
        self.watch = Watcher(emu)
        self.busy: set[int] = set()
        self.started: set[int] = set()
        self.menus: dict[int, Any] = {}  # the /start menu of a user with an account
        self.marks = {s: Decimal(v) for s, v in sim.call("marks").items()}
        self.start = time.monotonic()
        self.minutes: list[Minute] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.seen_in_warmup = 0  # users started (answered /start) by the end of warm-up

    def minute(self, at: float | None = None) -> Minute:
        k = int(((time.monotonic() if at is None else at) - self.start) // 60)
        while len(self.minutes) <= k:
            self.minutes.append(Minute())
        return self.minutes[k]

    # -- one user's action --

    def chat_of(self, user: Any) -> Any:
        return self.emu.private_chat(user, bot=BOT)

    def send(self, user: Any, text: str, kind: str) -> Waiting:
        w = self.watch.wait(Waiting(user.id, kind, time.monotonic(), str(user.id)))
        self.emu.send_text(user, None, text, bot=BOT)
        return w

    def press(self, user: Any, message: Any, button: str, kind: str) -> Waiting:
        at = time.monotonic()
        qid = self.emu.press(user, message, button, bot=BOT)
        return self.watch.wait(Waiting(user.id, kind, at, str(user.id), press=qid))

    async def answered(self, w: Waiting) -> bool:
        m = self.minute(w.at)
        m.sent += 1
        m.kinds[w.kind] += 1
        try:
            at = await asyncio.wait_for(asyncio.shield(w.done), ANSWER_WITHIN)
        except TimeoutError:
            m.unanswered += 1
            self.watch.by_query.pop(w.press or "", None)
            with contextlib.suppress(ValueError):
                self.watch.by_chat.get(w.chat, []).remove(w)
            return False
        m.answered += 1
        (m.presses_ms if w.press else m.replies_ms).append(1000 * (at - w.at))
        return True

    def pick(self, user: Any) -> str:
        r = self.rng.random()
        if user.id not in self.started:
            return "start"
        trader = user.id in self.connected
        if trader and r < 0.4:
            return "order" if self.rng.random() < 0.8 else "close"
        if r < 0.45:
            return "command"
        if r < 0.75:  # only an account's /start shows the menu: the others type it
            return "press" if user.id in self.menus else "command"
        return "alert"

    async def act(self, user: Any) -> None:
        try:
            what = self.pick(user)
            if what == "start":
                if await self.answered(self.send(user, "/start", "/start")):
                    self.started.add(user.id)
                    m = self.emu.last_bot_message(self.chat_of(user), bot=BOT)
                    if m is not None and "❓ Help" in str(m.buttons):
                        self.menus[user.id] = m
            elif what == "command":
                trader = user.id in self.connected
                text = self.rng.choice(["/help", "/price xbtusd", "/alerts", "/orders"]
                                       + (["/balance", "/positions"] if trader else []))
                await self.answered(self.send(user, text, text.split()[0]))
            elif what == "press":
                button = self.rng.choice(["❓ Help", "💰 Balance"])
                await self.answered(self.press(user, self.menus[user.id], button,
                                               f"press {button[2:]}"))
            elif what == "alert":
                mark = self.marks[SYMBOL]
                up = self.rng.random() < 0.5
                price = mark * (Decimal("1.003") if up else Decimal("0.997"))
                text = f"/alert xbtusd {'above' if up else 'below'} {price:.0f}"
                await self.answered(self.send(user, text, "/alert"))
            else:
                text = ("/close xbtusd" if what == "close" else
                        f"/{self.rng.choice(['buy', 'sell'])} 100 xbtusd")
                if await self.answered(self.send(user, text, text.split()[0])):
                    card = self.card(user)
                    if card is not None:
                        await self.answered(self.press(user, card[0], card[1],
                                                       "press Confirm"))
        finally:
            self.busy.discard(user.id)

    def card(self, user: Any) -> tuple[Any, str] | None:
        """The newest card in the user's chat and its Confirm button's data."""
        for m in reversed(self.emu.bot_messages(self.chat_of(user), bot=BOT)[-3:]):
            for row in (m.reply_markup or {}).get("inline_keyboard", []):
                for b in row:
                    if str(b.get("callback_data", "")).startswith("t:c:"):
                        return m, b["callback_data"]
        return None

    # -- the run --

    async def drive(self, seconds: float) -> None:
        n = round(self.rate * seconds)
        # Warm-up reaches everyone: each user's first action (/start) comes within it, so
        # the state kept per user and per chat (caches, the delivery queue's chats, PTB's
        # user data) has all been made before RSS is fitted. Picked at random alone, one
        # user in eight would still be new after warm-up, and look like growth.
        unseen = self.rng.sample(self.people, len(self.people))
        warm = n * WARMUP_SHARE
        for k in range(n):
            await asyncio.sleep(max(0.0, self.start + k / self.rate - time.monotonic()))
            if k == math.ceil(warm):
                self.seen_in_warmup = len(self.started)
            while unseen and (unseen[-1].id in self.busy or unseen[-1].id in self.started):
                unseen.pop()  # seen already, picked at random
            if unseen and k < warm and k % 2 == 0:  # half the warm-up's actions: new users
                user = unseen.pop()
            else:
                idle = [p for p in self.rng.sample(self.people, min(8, len(self.people)))
                        if p.id not in self.busy]
                if not idle:
                    continue  # everyone picked is waiting for the bot: an open loop skips
                user = idle[0]
            self.busy.add(user.id)
            task = asyncio.create_task(self.act(user))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def scanner(self) -> None:
        while True:
            self.watch.scan()
            await asyncio.sleep(0.05)

    async def marks_follower(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.marks = {s: Decimal(v) for s, v in self.sim.call("marks").items()}


async def sampler(soak: Soak, session: Any, every: float, samples: list[Sample],
                  log_errors: list[int]) -> None:
    """Every `every` s: RSS, queue depth, new log errors, counters per minute."""
    offset = 0
    last: dict[str, float] = {}
    fills_seen = tg_seen = errs_seen = 0
    latencies_seen = 0
    while True:
        await asyncio.sleep(every)
        m = soak.minute()
        rss = rss_kib(soak.bot.pid) / 1024
        try:
            page = await metrics(session, soak.bot)
        except Exception:  # the bot busy or gone: a gap in the record, not a crash here
            page = {}
        queue = page.get("bot_delivery_queue_depth", 0.0)
        with soak.bot.log_path.open("rb") as f:
            f.seek(offset)
            chunk = f.read()
        cut = chunk.rfind(b"\n") + 1
        offset += cut
        new_errors = len(LOG_ERROR.findall(chunk[:cut]))
        log_errors[0] += new_errors
        m.log_errors += new_errors
        for name, attr in (("bot_exchange_rate_limited_total", "bitmex_429"),
                           ("bot_alerts_fired_total", "alerts_fired")):
            now = page.get(name, last.get(name, 0.0))
            setattr(m, attr, getattr(m, attr) + now - last.get(name, now))
            last[name] = now
        handler = sum(v for k, v in page.items() if k.startswith("bot_update_errors_total"))
        m.handler_errors += int(handler - last.get("handler", handler))
        last["handler"] = handler
        w = soak.watch
        m.fills += w.fills - fills_seen
        m.tg_429 += w.tg_429 - tg_seen
        m.error_replies += w.error_replies - errs_seen
        fills_seen, tg_seen, errs_seen = w.fills, w.tg_429, w.error_replies
        m.queue_max = max(m.queue_max, queue)
        m.rss_mb = rss
        recent = [x for mm in soak.minutes for x in mm.replies_ms]
        fresh, latencies_seen = recent[latencies_seen:], len(recent)
        samples.append(Sample(time.monotonic() - soak.start, rss, queue, pct(fresh, 50)))


def fit(samples: list[Sample], share: float = WARMUP_SHARE
        ) -> tuple[float, float, float, float]:
    """Least squares over the samples after warm-up (the first `share` of the run left
    out): slope MB/min, growth MB, mean MB, and the minutes fitted."""
    if len(samples) < 3:
        return float("nan"), float("nan"), float("nan"), 0.0
    t0 = samples[-1].t * share
    tail = [s for s in samples if s.t >= t0] or samples[-3:]
    xs = [s.t / 60 for s in tail]
    ys = [s.rss_mb for s in tail]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return slope, slope * (xs[-1] - xs[0]), my, xs[-1] - xs[0]


MEMORY_COLUMNS = ("RSS", "SQLite heap", "malloc in use", "malloc free (kept)",
                  "Python traced")


def memory_report(text: str, start: float, t0: float) -> str:
    """The probe's record after warm-up (load-relative time >= t0): each owner's fitted
    slope and its first and last values, so RSS growth is put down to its owner; then
    Python's allocated blocks and gc's generation-2 record (full collections, pending)."""
    rows = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 12:
            rows.append([float(x) for x in parts])
    tail = [r for r in rows if r[0] - start >= t0]
    if len(tail) < 3:
        return "memory probe: too few samples after warm-up"
    out = [f"memory after warm-up ({len(tail)} probe samples, {(tail[-1][0] - tail[0][0]) / 60:.1f}"
           f" min; threads {int(tail[0][6])} -> {int(tail[-1][6])}):"]
    for i, name in enumerate(MEMORY_COLUMNS, start=1):
        series = [Sample(r[0] - start, r[i] / 2**20, 0.0, 0.0) for r in tail]
        slope, _, _, _ = fit(series, share=0.0)
        out.append(f"  {name:<20} {series[0].rss_mb:8.1f} -> {series[-1].rss_mb:8.1f} MB"
                   f"   slope {slope:+.2f} MB/min")
    blocks = [Sample(r[0] - start, r[7] / 1000, 0.0, 0.0) for r in tail]
    slope, _, _, _ = fit(blocks, share=0.0)
    out.append(f"  {'Python blocks':<20} {blocks[0].rss_mb:8.0f} -> {blocks[-1].rss_mb:8.0f} k"
               f"    slope {slope:+.1f} k/min")
    out.append(f"  gc: full collections {int(tail[0][11])} -> {int(tail[-1][11])} after "
               f"warm-up; generation-1 collections since the last full one {int(tail[0][10])}"
               f" -> {int(tail[-1][10])}")
    return "\n".join(out)


def verdict(slope: float, growth: float, mean: float, span: float) -> str:
    if slope != slope or span < MIN_FIT_MINUTES:  # warm-up noise would be the verdict
        return "too short to tell"
    return "flat" if growth < max(2.0, 0.02 * mean) else "GROWS"


def table(minutes: list[Minute]) -> str:
    head = ("| min | sent | answered | reply p50/p99 ms | press p50/p99 ms | errors "
            "(reply/handler/log/lost) | TG 429 | BitMEX 429 | queue max | alerts fired "
            "| fills | RSS MB |")
    rule = "|" + "|".join("-" * (len(c) + 0) for c in head.split("|")[1:-1]) + "|"
    lines = [head, rule]
    for i, m in enumerate(minutes):
        lines.append(
            f"| {i + 1:>3} | {m.sent:>4} | {m.answered:>8} | "
            f"{pct(m.replies_ms, 50):>6.0f} / {pct(m.replies_ms, 99):<6.0f} | "
            f"{pct(m.presses_ms, 50):>6.0f} / {pct(m.presses_ms, 99):<6.0f} | "
            f"{m.errors:>4} ({m.error_replies}/{m.handler_errors}/{m.log_errors}/"
            f"{m.unanswered}) | {m.tg_429:>6} | {m.bitmex_429:>10.0f} | {m.queue_max:>9.0f} | "
            f"{m.alerts_fired:>12.0f} | {m.fills:>5} | {m.rss_mb:>6.1f} |")
    return "\n".join(lines)


def plot(samples: list[Sample], minutes: list[Minute], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(9, 8))
    ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True)
    ts = [s.t / 60 for s in samples]
    ax1.plot(ts, [s.rss_mb for s in samples], marker=".")
    ax1.set_ylabel("bot RSS, MB")
    ax1.axvline(ts[-1] * WARMUP_SHARE if ts else 0, color="grey", linestyle=":",
                label="end of warm-up")
    ax1.legend(loc="lower right")
    mids = [i + 0.5 for i in range(len(minutes))]
    ax2.plot(mids, [pct(m.replies_ms, 50) for m in minutes], marker="o", label="reply p50")
    ax2.plot(mids, [pct(m.replies_ms, 99) for m in minutes], marker="o", label="reply p99")
    ax2.plot(mids, [pct(m.presses_ms, 99) for m in minutes], marker="x", label="press p99")
    ax2.set_ylabel("latency, ms")
    ax2.set_yscale("log")
    ax2.legend(loc="upper right")
    ax3.plot(ts, [s.queue for s in samples], marker=".", color="tab:red")
    ax3.set_ylabel("delivery queue")
    ax3.set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


async def run(a: argparse.Namespace) -> int:
    import aiohttp

    from bot.sandbox.telegram import FloodLimits, TelegramEmulator
    from bot.vault import generate_key

    users = a.users
    size = Size(users=users, accounts=max(2, users // 10), alerts_per_user=3,
                feeds=max(2, users // 100),
                followers_per_feed=min(5, max(2, users // 10)))
    sim = SimProcess(SimOptions(accounts=size.accounts, marks=MARKS, ticks_per_second=a.ticks))
    emu = TelegramEmulator(FloodLimits())  # Telegram's limits, unscaled
    await emu.start()
    emu.add_bot(TOKEN, BOT, "Trade Bot")
    people = [emu.user(first_name=f"U{i}") for i in range(size.users)]
    for p in people:
        emu.private_chat(p, bot=BOT)
    groups = [emu.group(f"Feed {i}", people[i * 5:i * 5 + 5], [people[size.accounts + i]])
              for i in range(size.feeds)]
    bot: BotProcess | None = None
    pg_name = None
    started = datetime.now(UTC)
    samples: list[Sample] = []
    log_errors = [0]
    soak: Soak | None = None
    soak_start: float | None = None
    mem_text = ""
    trace = None
    code = 1
    with workdir(a.keep, a.db) as folder:
        if a.db == "postgres":
            pg_name = f"soak_{os.getpid()}"
            url = capacity.create_pg(a.pg_url, pg_name)
        else:
            url = f"sqlite+aiosqlite:///{folder / 'bot.db'}"
        master = generate_key()
        env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": emu.url,
               "BITMEX_MAINNET_URL": sim.url, "BITMEX_TESTNET_URL": sim.url,
               "DATABASE_URL": url, "MASTER_KEY": master}
        if a.trace_malloc:
            env[TRACE_ENV] = str(folder)
        memlog = folder / "memory.tsv"
        env[MEMLOG_ENV] = str(memlog)
        try:
            await seed(url, master, size, [p.id for p in people], sim.keys,
                       [g.id for g in groups])
            bot = start_bot(folder, env, script=SCRIPT)
            async with aiohttp.ClientSession() as session:
                ready_s, all_up_s = await wait_started(session, bot, size)
                print(f"bot ready in {ready_s:.1f} s, all streams up and alerts loaded in "
                      f"{all_up_s:.1f} s; RSS {rss_kib(bot.pid) / 1024:.0f} MB", flush=True)
                connected = {p.id for p in people[:size.accounts]}
                soak = Soak(emu, sim, bot, people, connected, a.rate)
                soak_start = soak.start
                harness_cpu = cpu_seconds() + cpu_seconds(sim.pid)
                bot_cpu = cpu_seconds(bot.pid)
                helpers = [asyncio.create_task(x) for x in (
                    soak.scanner(), soak.marks_follower(),
                    sampler(soak, session, a.sample_seconds, samples, log_errors))]
                seconds = 60 * a.minutes
                pid = bot.pid
                warmup = asyncio.get_running_loop().call_later(
                    seconds * WARMUP_SHARE,
                    lambda: os.kill(pid, signal.SIGUSR2) if a.trace_malloc else None)
                try:
                    await soak.drive(seconds)
                    if a.trace_malloc:
                        os.kill(bot.pid, signal.SIGUSR2)
                    if soak.tasks:  # the last actions' answers (counted in their minute)
                        await asyncio.wait(set(soak.tasks), timeout=ANSWER_WITHIN + 5)
                    await asyncio.sleep(a.sample_seconds)  # the last sample's counts
                finally:
                    warmup.cancel()
                    for t in helpers:
                        t.cancel()
                wall = time.monotonic() - soak.start
                harness_pct = 100 * (cpu_seconds() + cpu_seconds(sim.pid) - harness_cpu) / wall
                bot_pct = 100 * (cpu_seconds(bot.pid) - bot_cpu) / wall
            if a.trace_malloc:  # the bot writes it when it gets to the signal
                for _ in range(60):
                    with contextlib.suppress(FileNotFoundError):
                        trace = (folder / "tracemalloc-2.txt").read_text()
                        break
                    await asyncio.sleep(1)
            code = 0
        finally:
            with contextlib.suppress(FileNotFoundError):
                mem_text = memlog.read_text()
            if bot is not None:
                await bot.stop()
            await emu.stop()
            sim.stop()
            if pg_name is not None:
                capacity.drop_pg(a.pg_url, pg_name)
    assert soak is not None
    minutes = soak.minutes[:max(1, -(-round(60 * a.minutes) // 60))]
    for extra in soak.minutes[len(minutes):]:  # answers counted past the end: last minute
        minutes[-1].answered += extra.answered
    print()
    print(f"soak, {users:,} users ({size.accounts} with accounts), {a.rate:g} updates/s, "
          f"{a.minutes:g} min on {a.db}, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}: python bench/soak.py "
          + " ".join(sys.argv[1:]))
    print(table(minutes))
    total = sum(m.sent for m in minutes)
    errors = sum(m.errors for m in minutes)
    print(f"updates {total}, answered {sum(m.answered for m in minutes)}, errors {errors} "
          f"({100 * errors / total if total else 0:.2f} %); bot CPU {bot_pct:.0f} % of a core, "
          f"harness (emulator + simulator) {harness_pct:.0f} %")
    kinds = Counter[str]()
    for m in minutes:
        kinds.update(m.kinds)
    print("mix:", ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    print(f"users started by the end of warm-up: {soak.seen_in_warmup} of {users}")
    slope, growth, mean, span = fit(samples)
    v = verdict(slope, growth, mean, span)
    print(f"RSS after warm-up (last {100 * (1 - WARMUP_SHARE):.0f} % of the run, "
          f"{len([s for s in samples if s.t >= samples[-1].t * WARMUP_SHARE])} samples): "
          f"slope {slope:+.2f} MB/min, fitted growth {growth:+.1f} MB on {mean:.0f} MB: {v}")
    if soak_start is not None and samples:
        print(memory_report(mem_text, soak_start, samples[-1].t * WARMUP_SHARE))
    if trace is not None:
        print("tracemalloc, grown most from the end of warm-up to the end:")
        print(trace)
    if samples:
        plot(samples, minutes, a.plot, f"soak: {users} users, {a.rate:g}/s, {a.db}, "
             f"{started:%Y-%m-%d %H:%M} UTC")
        print(f"plot: {a.plot}")
    return code if v != "GROWS" else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=10.0, help="updates per second, overall")
    ap.add_argument("--sample-seconds", type=float, default=10.0)
    ap.add_argument("--ticks", type=float, default=10.0,
                    help="the simulator's market ticks per second (0: a still market)")
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--pg-url", default=os.environ.get("PG_URL", capacity.PG_URL))
    ap.add_argument("--plot", type=Path, default=ROOT / "sandbox-out" / "soak.png")
    ap.add_argument("--keep", type=Path, default=None, metavar="DIR",
                    help="keep the bot's folder (log, SQLite file) under DIR/<db>")
    ap.add_argument("--trace-malloc", action="store_true",
                    help="tracemalloc in the bot: what grew from warm-up to the end")
    ap.add_argument("--serve-bot", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve_bot:
        return serve_bot()
    return asyncio.run(run(a))


if __name__ == "__main__":
    raise SystemExit(main())
