"""Chaos restarts: a real `python -m bot run` process killed with SIGKILL at random points
while several people trade, set alerts and follow a feed, and the promises checked after
every restart and at the end (issue #15, item 1).

The people, the exchange and Telegram live in this process (the BitMEX simulator and the
Bot API emulator); only the bot is a child process, so a kill takes nothing but the bot. The
users keep typing and pressing while it is down, as people do; their updates wait in the
emulator for the next process, and the exchange keeps moving (price, fills).

What is checked (the `Invariants` methods), from what a user and an operator would see:
  - no order on the exchange without a Confirm press on its card (clOrdID → card row →
    the card message the person pressed), and none placed twice (clOrdIDs, card rows);
  - every press ends in a visible outcome on its card once the bot is back;
  - every fill and every fired alert told exactly once (the emulator's messages: never
    twice at any check, all of them at the end);
  - `PRAGMA integrity_check` ok after every kill;
  - no secret (the API secrets connected, MASTER_KEY) in the database file, its WAL or
    the log.
`tests/chaos/test_chaos.py` runs a short version in CI, `bench/chaos.py` the long one.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import random
import re
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.buttons import CardPress, decode
from bot.notify import REPEATED as NOTIFY_REPEATED
from bot.sandbox.bitmex import BitmexSimulator, RateLimitConfig
from bot.sandbox.telegram import FloodLimits, TelegramEmulator
from bot.sandbox.telegram.state import Chat, Message, User
from bot.trading.place import ARRIVAL_MARGIN, SEND_WINDOW
from bot.vault import generate_key
from tests.procs import ROOT, Instance, bot_env, until

SYM = "XBTUSD"
CONFIRM = "✅ Confirm"
CANCEL = "✖️ Cancel"
# What a card shows once its press is settled (bot/trading/cards.py `current`).
OUTCOMES = ("✅ Placed", "✅ Filled", "❌", "❓", "⌛ Expired", "✖️ Cancelled")
LOOKING = "looking it up by its id"
FILL_RE = re.compile(r"^(🟢 Filled |✅ Order filled)")
ALERT_RE = re.compile(r"^🔔 ")
NOTE_RE = re.compile(r"\((a\d+)\)$", re.M)
# What an alert told again after a restart carries when its first request was on the wire
# at the kill (bot/notify REPEATED).
REPEATED = "repeated after a restart"
MARK_LINE = "\n🔁 "
# A request counts as "in flight at the kill" when it reached Telegram this shortly before
# the kill: the bot records the answer within milliseconds, but the machine is loaded.
IN_FLIGHT = 1.0  # seconds
# The bot, sped up where the chaos needs it: leadership (SQLite: one instance, no lease).
FAST = {"LOG_LEVEL": "INFO"}


@dataclass
class Fault:
    """A fault switched on for a phase of the run: `on` when the phase starts and again
    at every restart (some are one-shot), `off` when it ends."""

    name: str
    on: Callable[[ChaosWorld], Awaitable[None]]
    off: Callable[[ChaosWorld], None]


async def _lag(w: ChaosWorld) -> None:
    w.sim.faults.engine_lag(n=3, seconds=2.0)


async def _storm503(w: ChaosWorld) -> None:
    w.sim.faults.fail_next(6, status=503)


async def _shed(w: ChaosWorld) -> None:
    w.sim.faults.load_shedding = True


async def _drop(w: ChaosWorld) -> None:
    w.sim.faults.drop_after_accept(1, mode="close")
    await w.sim.faults.close_sockets()


async def _slow(w: ChaosWorld) -> None:
    w.sim.faults.latency = 0.4


async def _tg429(w: ChaosWorld) -> None:
    # Long flood waits from the server, and a few sends refused outright with a 429.
    w.emu.limits = FloodLimits(min_retry_after=2.0)
    w.emu.refuse_next("sendMessage", "Too Many Requests: retry after 1", times=4,
                      bot=w.bot, retry_after=1.0)


async def _tg_slow(w: ChaosWorld) -> None:
    w.emu.latency = 0.4  # sent at once, answered late: a kill in between is "maybe told"


async def _no_edit(w: ChaosWorld) -> None:
    w.emu.refuse_next("editMessageText", times=4, bot=w.bot)


def _plain(text: str) -> str:
    """What the chat shows of the HTML the bot sent."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def _unmarked(sent: str) -> str:
    """The HTML the bot sent, without the repeat marker it adds after a restart."""
    return sent.split(NOTIFY_REPEATED)[0]


def _sim_clear(w: ChaosWorld) -> None:
    w.sim.faults.clear()


def _emu_clear(w: ChaosWorld) -> None:
    w.emu.limits = FloodLimits()
    w.emu.latency = 0.0


FAULTS = {
    "engine-lag": Fault("engine-lag", _lag, _sim_clear),
    "bitmex-503-storm": Fault("bitmex-503-storm", _storm503, _sim_clear),
    "load-shedding": Fault("load-shedding", _shed, _sim_clear),
    "dropped-sockets": Fault("dropped-sockets", _drop, _sim_clear),
    "bitmex-slow": Fault("bitmex-slow", _slow, _sim_clear),
    "telegram-429-storm": Fault("telegram-429-storm", _tg429, _emu_clear),
    "telegram-slow": Fault("telegram-slow", _tg_slow, _emu_clear),
    "refused-edits": Fault("refused-edits", _no_edit, _emu_clear),
}


@dataclass
class Trader:
    user: User
    chat: Chat
    key: str
    secret: str
    account_id: int
    # The card messages this person pressed (message id -> the last button pressed), and
    # the cards (ids from the buttons' data) Confirm was pressed on.
    pressed: dict[int, str] = field(default_factory=dict)
    confirmed: set[int] = field(default_factory=set)
    alerts: int = 0


@dataclass
class Report:
    kills: int = 0
    restarts: int = 0
    checks: int = 0
    presses: int = 0
    orders: int = 0
    fills: int = 0
    alerts_fired: int = 0
    signals: int = 0
    seconds: float = 0.0
    by_fault: Counter[str] = field(default_factory=Counter)
    startup: list[float] = field(default_factory=list)
    # (person, the fill or alert) told again, marked, because its first request was in
    # flight at a kill: allowed (bot/notify REPEATED), counted.
    repeats: list[tuple[str, str]] = field(default_factory=list)
    kill_times: list[float] = field(default_factory=list)

    def summary(self) -> str:
        st = sorted(self.startup) or [0.0]
        faults = ", ".join(f"{k} {v}" for k, v in self.by_fault.items())
        return (f"chaos: {self.kills} kills ({faults}), {self.restarts} restarts, "
                f"{self.checks} invariant checks passed, {self.presses} presses, "
                f"{self.orders} orders, {self.fills} fills, {self.alerts_fired} alerts "
                f"fired, {self.signals} signals; start-up p50 {st[len(st) // 2]:.1f} s, "
                f"max {st[-1]:.1f} s; {self.seconds:.0f} s in all; fills and alerts repeated "
                f"(marked, in flight at a kill): {len(self.repeats)}")


class Forked(Instance):
    """The bot as a child of a warmed-up parent (tests/chaos/zygote.py): the same
    `bot.__main__.main(["run"])` as `python -m bot run`, without 3-7 s of imports."""

    zygote: asyncio.subprocess.Process | None = None
    pid: int | None = None
    rc: int | None = None

    async def _ask(self, line: str) -> str:
        if self.zygote is None:
            env = {**self.env, "METRICS_PORT": str(self.port)}
            self.zygote = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "tests" / "chaos" / "zygote.py"), env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert self.zygote.stdin is not None and self.zygote.stdout is not None
        self.zygote.stdin.write(line.encode() + b"\n")
        await self.zygote.stdin.drain()
        answer = await asyncio.wait_for(self.zygote.stdout.readline(), 120)
        return answer.decode().split()[1]

    async def start(self) -> Forked:
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.pid = int(await self._ask(f"spawn {self.cwd} {self.log}"))
        self.rc = None
        return self

    def kill(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)

    async def wait(self) -> int:
        if self.rc is None:
            self.rc = int(await self._ask(f"wait {self.pid}"))
        return self.rc

    async def exited(self) -> int | None:
        if self.rc is None and self.pid is not None:
            got = await self._ask(f"poll {self.pid}")
            self.rc = None if got == "none" else int(got)
        return self.rc

    async def stop(self) -> int:
        if self.pid is not None and self.rc is None:
            os.kill(self.pid, signal.SIGTERM)
        return await asyncio.wait_for(self.wait(), 60)

    async def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, TypeError):
            if self.rc is None and self.pid is not None:
                os.kill(self.pid, signal.SIGKILL)
                await self.wait()
        if self.zygote is not None:
            assert self.zygote.stdin is not None
            self.zygote.stdin.close()
            await asyncio.wait_for(self.zygote.wait(), 30)


class ChaosWorld:
    """The simulator, the emulator, the people, and the bot process they talk to."""

    def __init__(self, tmp: Path, *, seed: int, users: int = 3) -> None:
        self.tmp = tmp
        self.rng = random.Random(seed)
        self.n_users = users
        self.sim = BitmexSimulator(rate_limit=RateLimitConfig())
        self.emu = TelegramEmulator(FloodLimits())
        self.token = f"{515151 + seed % 1000}:chaos-test-token-abcdefghijklmnopqrstuvwxyz"
        self.bot = "ChaosBot"
        self.master = generate_key()
        self.db = tmp / "bot.db"
        self.traders: list[Trader] = []
        self.admin: User | None = None
        self.group: Chat | None = None
        self.report = Report()
        self.inst: Forked | None = None
        self.p0 = Decimal(0)
        # Every order a distinct size (whole lots of 100): its fill notices are distinct too.
        self.qty = 0
        self.n_alert = 0

    # -- the world -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.sim.start()
        await self.emu.start()
        self.emu.add_bot(self.token, self.bot, "Chaos")
        self.p0 = Decimal(60000)
        self.sim.engine.set_mark(SYM, self.p0)
        env = bot_env(self.emu, self.sim, self.token, f"sqlite+aiosqlite:///{self.db}",
                      self.master, PAPER_STATE_FILE=str(self.tmp / "paper.pickle"), **FAST)
        self.inst = Forked("bot", env, self.tmp / "run")
        await self.boot()
        for i in range(self.n_users):
            user = self.emu.user(first_name=f"Trader{i}")
            chat = self.emu.private_chat(user, bot=self.bot)
            key, secret = self.sim.add_account(xbt=10)
            t = Trader(user, chat, key, secret, self.sim.account(key).id)
            self.traders.append(t)
            self.emu.send_text(user, chat, f"/connect testnet {key} {secret}", bot=self.bot)
        for t in self.traders:
            await self.wait_text(t.chat, "Connected")
        self.admin = self.emu.user(first_name="Caller")
        self.group = self.emu.group("Chaos Calls", [t.user for t in self.traders],
                                    [self.admin], bots=[self.bot], bot_admin=True)
        self.emu.send_text(self.admin, self.group, "/feed on chaos", bot=self.bot)
        await self.wait_text(self.group, "now the signal feed chaos")
        for i, t in enumerate(self.traders):
            self.emu.send_text(t.user, t.chat, f"/follow chaos size {50 + i}", bot=self.bot)
        for t in self.traders:
            await self.wait_text(t.chat, "Following chaos")

    async def stop(self) -> None:
        if self.inst is not None:
            await self.inst.close()
        await self.emu.stop()
        await self.sim.stop()

    async def boot(self) -> None:
        assert self.inst is not None
        # BitMEX allows a few dozen WebSocket connects per address per hour; a real crash
        # loop dozens of times a minute would use them up (and the bot then waits out the
        # hour, not ready, as it should). The run squeezes hours of crashes into minutes:
        # each restart comes as after a pause, with the hour's budget whole again.
        self.sim.ws_limit.reset()
        t0 = time.monotonic()
        await self.inst.start()
        await until(self._ready, 60, f"the bot ready\n{self.inst.text()[-3000:]}")
        self.report.startup.append(time.monotonic() - t0)

    async def _ready(self) -> bool:
        assert self.inst is not None
        rc = await self.inst.exited()
        if rc is not None:
            raise AssertionError(f"the bot exited {rc}:\n"
                                 f"{self.inst.text()[-4000:]}")
        return (await self.inst.ready())[0] == 200

    async def kill(self) -> None:
        assert self.inst is not None
        self.report.kill_times.append(time.monotonic())
        self.inst.kill()
        assert await self.inst.wait() == -signal.SIGKILL
        self.report.kills += 1

    async def wait_text(self, chat: Chat, needle: str, timeout: float = 30) -> None:  # noqa: ASYNC109
        try:
            await self.emu.wait_for(lambda: any(needle in (m.content or "")
                                                for m in self.bot_msgs(chat)), timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"{needle!r} never arrived:\n"
                                 f"{self.emu.transcript(chat, bot=self.bot)}") from None

    def bot_msgs(self, chat: Chat) -> list[Message]:
        return self.emu.bot_messages(chat, bot=self.bot)

    # -- what people do --------------------------------------------------------------------
    def step(self) -> None:
        """One thing someone does: type a command, press a button, or the market moves."""
        rng, t = self.rng, self.rng.choice(self.traders)
        mark = self.sim.engine.instrument(SYM).mark
        roll = rng.random()
        if roll < 0.22:
            self.qty += 100
            # Far below the price: it rests until this run fills it.
            price = self.p0 - 3000 - rng.randrange(0, 500)
            self.emu.send_text(t.user, t.chat, f"/buy {self.qty} xbtusd limit {price}",
                               bot=self.bot)
        elif roll < 0.47:
            self.press(t, CONFIRM if rng.random() < 0.85 else CANCEL)
        elif roll < 0.60:
            self.n_alert += 1
            side, off = rng.choice((("above", 1), ("below", -1)))
            level = mark + off * rng.randrange(50, 700)
            self.emu.send_text(t.user, t.chat, f"/alert xbtusd {side} {level} a{self.n_alert}",
                               bot=self.bot)
        elif roll < 0.75:
            step = Decimal(rng.randrange(-150, 151))
            new = min(max(mark + step, self.p0 - 900), self.p0 + 900)
            self.sim.engine.set_mark(SYM, new)
        elif roll < 0.90:
            self.fill_some(t)
        elif roll < 0.95 and self.admin is not None and self.group is not None:
            lo, hi = int(mark) - 1500, int(mark) + 1500
            self.emu.send_text(self.admin, self.group,
                               f"/signal long XBTUSD entry {lo}-{hi} tp {int(self.p0) + 6000} "
                               f"sl {int(self.p0) - 6000}", bot=self.bot)
            self.report.signals += 1
        else:
            self.emu.send_text(t.user, t.chat, "/balance", bot=self.bot)

    def press(self, t: Trader, label: str) -> None:
        cards = [m for m in self.bot_msgs(t.chat)
                 if any(label == b for row in m.buttons for b in row)]
        if not cards:
            return
        m = self.rng.choice(cards)
        data = next(b.get("callback_data") for row in (m.reply_markup or {})[
            "inline_keyboard"] for b in row if b.get("text") == label)
        press = decode(data)
        assert isinstance(press, CardPress), data
        # Recorded before the press reaches anyone: an order for this card is allowed now.
        t.pressed[m.message_id] = label
        if label == CONFIRM:
            t.confirmed.add(press.card_id)
        self.emu.press(t.user, m, label, bot=self.bot)
        self.report.presses += 1

    def fill_some(self, t: Trader) -> None:
        engine = self.sim.engine
        rows = [o for o in engine.open_order_rows(t.account_id)
                if o["ordType"] == "Limit" and ":" not in str(o["clOrdID"])]
        if not rows:
            return
        o = self.rng.choice(rows)
        left = int(o["leavesQty"])
        qty = left if left <= 3 or self.rng.random() < 0.4 else self.rng.randrange(1, left)
        engine.fill_order(str(o["orderID"]), qty)

    # -- invariants ------------------------------------------------------------------------
    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return list(conn.execute(query, args))
        finally:
            conn.close()

    def check_integrity(self) -> None:
        """While the bot is down: the file it was killed over is sound."""
        conn = sqlite3.connect(self.db, timeout=10)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()

    def check_secrets(self) -> None:
        assert self.inst is not None
        secrets = [t.secret for t in self.traders] + [self.master, self.token]
        for path in (self.db, self.db.with_name(self.db.name + "-wal"), self.inst.log):
            if not path.exists():
                continue
            data = path.read_bytes()
            for s in secrets:
                assert s.encode() not in data, f"a secret in {path.name}"

    def check_orders(self) -> None:
        """No order without a Confirm press on its card; none placed twice."""
        cards = {cl: (chat, card) for cl, chat, card in self.sql(
            "SELECT cl_ord_id, chat_id, id FROM order_intents")}
        orders = 0
        for t in self.traders:
            rows = self.sim.engine.order_rows(t.account_id)
            cl_ids = [str(o["clOrdID"]) for o in rows]
            dup = [c for c, n in Counter(cl_ids).items() if n > 1]
            assert not dup, f"{t.user.first_name}: placed twice: {dup}"
            for cl in cl_ids:
                base = cl.split(":", 1)[0]  # a signal's exits carry <clOrdID>:sl, :tpN
                assert base in cards, f"{t.user.first_name}: order {cl} has no card"
                chat, card = cards[base]
                assert chat == t.chat.id, f"{cl}: another chat's card"
                assert card in t.confirmed, (
                    f"{t.user.first_name}: order {cl} but its card {card} was never confirmed"
                    f"\n{self.emu.transcript(t.chat, bot=self.bot)}")
            # One order per card: the card rows agree with the exchange.
            entries = [c for c in cl_ids if ":" not in c]
            orders += len(entries)
        self.report.orders = orders

    def _told(self, chat: Chat, pattern: re.Pattern[str]) -> list[str]:
        return [m.content or "" for m in self.bot_msgs(chat) if pattern.match(m.content or "")]

    def check_told_once(self, *, final: bool) -> None:
        """No fill and no alert told twice; at the end, every one of them told."""
        fills = alerts = 0
        for t in self.traders:
            # A fill's words are its own (each order a distinct size): told twice is the
            # same words twice, a marked repeat with the marker's line after them.
            by_words: dict[str, list[str]] = {}
            for x in self._told(t.chat, FILL_RE):
                by_words.setdefault(x.split(MARK_LINE)[0], []).append(x)
            for words, texts in by_words.items():
                if len(texts) > 1:
                    self.check_repeat(t, f"fill {words!r}", texts,
                                      lambda sent, w=words: _plain(sent) == w)
            told_fills = list(by_words)
            # Each alert carries its own note (a17): told twice is the same note twice.
            by_note: dict[str, list[str]] = {}
            for x in self._told(t.chat, ALERT_RE):
                if m := NOTE_RE.search(x):
                    by_note.setdefault(m.group(1), []).append(x)
            for note, texts in by_note.items():
                if len(texts) > 1:
                    self.check_repeat(t, f"alert {note}", texts,
                                      lambda sent, n=note: f"({n})" in sent)
            told_alerts = list(by_note)
            executions = [e for e in self.sim.engine.execution_rows(t.account_id)
                          if e.get("execType") == "Trade"]
            sent = self.sql("SELECT count(*) FROM alerts WHERE chat_id = ? AND state = 'sent'",
                            t.chat.id)[0][0]
            assert len(told_alerts) <= sent or not final, (t.user.first_name, told_alerts)
            if final:
                assert len(told_fills) == len(executions), (
                    f"{t.user.first_name}: {len(executions)} fills, {len(told_fills)} told:\n"
                    f"{self.emu.transcript(t.chat, bot=self.bot)}")
                assert len(told_alerts) == sent, (
                    f"{t.user.first_name}: {sent} alerts fired, {len(told_alerts)} told:\n"
                    f"{self.emu.transcript(t.chat, bot=self.bot)}")
            fills += len(executions)
            alerts += len(told_alerts)
        self.report.fills, self.report.alerts_fired = fills, alerts

    def check_repeat(self, t: Trader, what: str, texts: list[str],
                     first_of: Callable[[str], bool]) -> None:
        """A fill or an alert told more than once: only allowed as marked repeats, each
        after a telling whose request reached Telegram just before a kill (the answer
        never got back). A repeat can itself be cut off by the next kill, and the first
        telling may never have reached Telegram at all (killed on its way out), so: at
        most one unmarked telling, first; every later one marked; and every telling but
        the last in flight at some kill. `first_of` tells the requests by the text sent."""
        who = t.user.first_name
        assert all(REPEATED in x for x in texts[1:]), (
            f"{who}: {what} told {len(texts)} times, a later one unmarked: {texts}")
        sends = sorted(c.at for c in self.emu.calls_to("sendMessage", status=200)
                       if c.bot == self.bot and str(c.params.get("chat_id")) == str(t.chat.id)
                       and first_of(_unmarked(str(c.params.get("text") or ""))))
        for at in sends[:-1]:
            assert any(0 <= k - at <= IN_FLIGHT for k in self.report.kill_times), (
                f"{who}: {what} told {len(texts)} times, but its request at {at:.3f} was "
                f"not in flight at any kill {self.report.kill_times}: {texts}")
        if (who, what) not in self.report.repeats:
            self.report.repeats.append((who, what))

    def unsettled_presses(self) -> list[str]:
        """Pressed cards that do not show an outcome (yet)."""
        bad = []
        for t in self.traders:
            by_id = {m.message_id: m for m in self.bot_msgs(t.chat)}
            for mid in t.pressed:
                m = by_id.get(mid)
                text = (m.content or "") if m else ""
                shown = any(o in text for o in OUTCOMES)
                if m is None or not shown or any(CONFIRM == b for r in m.buttons for b in r):
                    bad.append(f"{t.user.first_name} message {mid}: {text!r} "
                               f"{m and m.buttons} (before: {m and m.history})")
        return bad

    def check_all(self, *, final: bool = False) -> None:
        self.check_orders()
        self.check_told_once(final=final)
        self.check_secrets()
        self.report.checks += 1

    # -- the run ---------------------------------------------------------------------------
    async def traffic(self, seconds: float, rate: float = 6.0) -> None:
        """People act for `seconds`, about `rate` things a second."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.step()
            await asyncio.sleep(self.rng.expovariate(rate))

    async def cycle(self, fault: Fault | None) -> None:
        """Traffic flows, the bot is killed at a random point, traffic goes on while it is
        down, it comes back, and the invariants hold."""
        if fault is not None:
            await fault.on(self)
        await self.traffic(self.rng.uniform(0.2, 1.6))
        await self.kill()
        self.report.by_fault[fault.name if fault else "none"] += 1
        self.check_integrity()
        self.check_secrets()
        await self.traffic(self.rng.uniform(0.0, 0.5))
        await self.boot()
        self.report.restarts += 1
        self.check_all()

    async def finish(self) -> None:
        """No more faults: the price crosses every alert, the rest is filled, and the bot,
        left alone, settles every press; then every promise holds exactly."""
        engine = self.sim.engine
        await asyncio.sleep(0.5)
        engine.set_mark(SYM, self.p0 + 1700)  # past every alert the walk left, both sides
        await asyncio.sleep(1.0)
        engine.set_mark(SYM, self.p0 - 1700)
        for t in self.traders:
            for o in engine.open_order_rows(t.account_id):
                if o["ordType"] == "Limit" and ":" not in str(o["clOrdID"]):
                    engine.fill_order(str(o["orderID"]), int(o["leavesQty"]))
        assert self.inst is not None
        await self._settled(lambda: all(LOOKING in b for b in self.unsettled_presses()))
        if self.unsettled_presses():
            # Cards a kill left in flight ("looking it up by its id"): their order can no
            # longer arrive once send_by and its margin are behind us; the timer settles
            # them only SETTLE_AFTER later, a start-up at once. So: one more kill then.
            last = max(self._send_by(intent, confirmed) for intent, confirmed in self.sql(
                "SELECT intent, confirmed_at FROM order_intents WHERE state = 'confirmed'"))
            at = last + ARRIVAL_MARGIN + timedelta(seconds=1)
            await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
            await self.kill()
            self.report.by_fault["final"] += 1
            self.check_integrity()
            await self.boot()
            self.report.restarts += 1
            self.check_all()
        await self._settled(lambda: not self.unsettled_presses())
        self.check_all(final=True)
        assert "Traceback" not in self.inst.text(), self.inst.text()[-6000:]
        assert await self.inst.stop() == 0
        self.check_integrity()
        self.check_secrets()

    @staticmethod
    def _send_by(intent: str, confirmed_at: str) -> datetime:
        """When a card's order could last reach BitMEX (bot/trading/place.py `_send_by`)."""
        send_by = json.loads(intent).get("send_by")
        if send_by:
            return datetime.fromtimestamp(float(send_by), UTC)
        return datetime.fromisoformat(confirmed_at).replace(tzinfo=UTC) + SEND_WINDOW

    async def _settled(self, presses: Callable[[], bool]) -> None:
        assert self.inst is not None
        try:
            await until(lambda: presses() and not self.emu.pending_updates(self.bot)
                        and self._alerts_all_fired(), 90, "every press settled")
            # Long enough for the last fills, paced at about one a second per chat.
            await self.emu.idle(timeout=90, quiet=2.0)
        except (AssertionError, TimeoutError) as e:
            now = time.monotonic()
            recent = "\n".join(f"  {c.at - now:+.2f} s {c.method} {c.status} "
                               f"{str(c.params.get('text') or '')[:60]!r}"
                               for c in self.emu.calls[-15:] if c.method != "getUpdates")
            raise AssertionError(f"{e}: {self.unsettled_presses()}\nlast requests:\n{recent}"
                                 f"\n{self.inst.text()[-4000:]}") from None

    def _alerts_all_fired(self) -> bool:
        return not self.sql("SELECT count(*) FROM alerts WHERE state = 'active'")[0][0]


async def chaos(tmp: Path, *, kills: int, faults: dict[str, int], seed: int = 1,
                users: int = 3) -> Report:
    """`kills` kills with no fault, then `faults[name]` kills with each fault on."""
    world = ChaosWorld(tmp, seed=seed, users=users)
    t0 = time.monotonic()
    try:
        await world.start()
        for _ in range(kills):
            await world.cycle(None)
        for name, n in faults.items():
            fault = FAULTS[name]
            for _ in range(n):
                await world.cycle(fault)
            fault.off(world)
        await world.finish()
    except AssertionError as e:
        log = world.inst.text()[-3000:] if world.inst else ""
        raise AssertionError(f"after {world.report.kills} kills: {e}\n--- bot log\n{log}") \
            from None
    finally:
        await world.stop()
    world.report.seconds = time.monotonic() - t0
    return world.report
