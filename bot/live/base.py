"""What every part of the live updates shares: the state of each followed account, the
exactly-once cursor, and the plumbing (messages, stored cursors, closing one stream)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
from sqlmodel import select

from bot import fmt
from bot.accounts import Accounts
from bot.db.engine import Database
from bot.db.models import LiveCursor, User
from bot.exchange.stream import PrivateStream
from bot.exchange.types import Exchange, Execution, Instrument
from bot.market import MarketHub, PublicMarket
from bot.notify import Notifier, Sent
from bot.trading import Trading
from bot.users import Users

log = logging.getLogger(__name__)
STOP_TYPES = frozenset({"Stop", "StopLimit", "MarketIfTouched", "LimitIfTouched"})
# The exec type BitMEX reports when a stop fires (it has no "Trigger" type).
TRIGGERED = "TriggeredOrActivatedBySystem"
# The bot's exits carry the entry's clOrdID plus ":sl" or ":tpN" (bot/trading/exits.py).
EXIT_RE = re.compile(r"^(?P<entry>.+):(?P<leg>sl|tp(?P<n>\d+))$")
# Hysteresis of /liqalert, in percentage points: warned at N %, armed again at N + 1 %.
REARM_POINTS = Decimal(1)
DEADMAN_INTERVAL = 15.0
DEADMAN_WARN_AFTER = 3  # consecutive failed refreshes before the user is told
CURSOR_IDS = 500  # execIDs kept for the newest millisecond (many fills can share one)
REPORTED_LIMIT = 5000
ENTRY_SETTLE_WAIT = 15.0  # seconds to let a card's own press finish before placing exits


def to_decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def qty_text(value: Decimal | None) -> str:
    return "?" if value is None else fmt.num(value)


@dataclass
class Cursor:
    """The newest reported fill: its time and every execID reported at that time."""

    at: datetime | None = None
    ids: list[str] = field(default_factory=list)
    # The fill whose message was on the wire, answer not yet in (bot/live/fills.py): told
    # again after a crash, it carries bot.notify.REPEATED.
    sending: str | None = None

    def is_new(self, ex: Execution) -> bool:
        if self.at is None or ex.timestamp is None:
            return self.at is None or ex.exec_id not in self.ids
        return ex.timestamp > self.at or (ex.timestamp == self.at and ex.exec_id not in self.ids)

    def advance(self, ex: Execution) -> bool:
        """Move forward to `ex` (never back); True when something changed."""
        ts = ex.timestamp
        if ts is None:
            return False
        if self.at is None or ts > self.at:
            self.at, self.ids = ts, [ex.exec_id]
            return True
        if ts == self.at and ex.exec_id not in self.ids:
            self.ids = [*self.ids, ex.exec_id][-CURSOR_IDS:]
            return True
        return False

    def copy(self) -> Cursor:
        return Cursor(self.at, list(self.ids), self.sending)


class RecordingHistory:
    """Hands the stream its REST fill history and keeps the first answer: the baseline."""

    def __init__(self, inner: Exchange) -> None:
        self.inner = inner
        self.first: list[Execution] | None = None

    async def executions(
        self, symbol: str | None = None, *, start_time: datetime | None = None,
        end_time: datetime | None = None, count: int = 100,
    ) -> list[Execution]:
        got = await self.inner.executions(symbol, start_time=start_time, end_time=end_time,
                                          count=count)
        if self.first is None:
            self.first = got
        return got


@dataclass
class Watch:
    user_id: int
    network: str
    source: Any  # PrivateStream or PaperExchange: same callbacks
    stream: PrivateStream | None = None
    cursor: Cursor | None = None  # None for paper accounts (they do not outlive the process)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reported: OrderedDict[str, None] = field(default_factory=OrderedDict)
    triggered: set[str] = field(default_factory=set)  # orderIDs whose trigger was told
    liq_warned: set[str] = field(default_factory=set)  # symbols warned, not yet re-armed
    # Symbols with a stop the bot trails itself (BitMEX refused the peg; bot/trading/stops.py)
    bot_trailed: set[str] = field(default_factory=set)
    closed: bool = False


@dataclass
class DeadmanState:
    failures: int = 0
    last_ok: float = 0.0
    warned: bool = False


class LiveBase:
    """The live updates' state and plumbing; the parts are mixed into `LiveUpdates`."""

    def __init__(self, db: Database, accounts: Accounts, trading: Trading, users: Users,
                 notifier: Notifier, *, market: PublicMarket, hub: MarketHub,
                 http: aiohttp.ClientSession, ws_url: Callable[[str], str],
                 deadman_interval: float = DEADMAN_INTERVAL,
                 stream_options: dict[str, Any] | None = None) -> None:
        self.db = db
        self.accounts = accounts
        self.trading = trading
        self.users = users
        self.notifier = notifier
        self.market = market
        self.hub = hub
        self.http = http
        self.ws_url = ws_url
        self.deadman_interval = deadman_interval
        self.stream_options = dict(stream_options or {})
        self._watches: dict[tuple[int, str], Watch] = {}
        self._liq_pct: dict[int, Decimal | None] = {}
        self._deadman: dict[int, int] = {}
        self._dm_next: dict[int, float] = {}
        self._dm_state: dict[tuple[int, str], DeadmanState] = {}
        self._dm_paused = False
        self._dm_wake = asyncio.Event()
        self._dm_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._exit_locks: dict[int, asyncio.Lock] = {}
        self._exit_users: dict[int, int] = {}  # card id -> fills holding or awaiting its lock
        self._started = False
        self._closing = False
        # Set, and replaced, each time telling a fill or adding its position card ends, or
        # an account stops being followed: what `fills_told` waits on between its checks.
        self._told = asyncio.Event()

    def _told_moved(self) -> None:
        self._told.set()
        self._told = asyncio.Event()

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        if self._closing:
            # Shutting down: work started now would outlive close() and run on a closed
            # database (a restart redoes it from the exchange's state and the cursors).
            if inspect.iscoroutine(coro):
                coro.close()
            return
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_tasks(self) -> None:
        """Cancel every task this service started, and any those start while ending."""
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)

    async def _instrument(self, network: str, symbol: str) -> Instrument | None:
        try:
            return await self.market.client(network).instrument(symbol)
        except Exception:  # formatting falls back to plain numbers
            return None

    async def unwatch(self, user_id: int, network: str) -> None:
        w = self._watches.pop((user_id, network), None)
        if w is None:
            return
        self._told_moved()
        # Paper callbacks cannot be removed from the engine: the flag silences them.
        w.closed = True
        # A fill being told right now finishes (and saves its cursor) before we stop, or a
        # restart would tell it again.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(w.lock.acquire(), 5.0)
            w.lock.release()
        if w.stream is not None:
            await w.stream.close()

    # --- plumbing -----------------------------------------------------------------------

    async def _send(self, user_id: int, text: str, kind: str) -> Sent | None:
        if not self.users.is_allowed(user_id):
            # Revoked while running: nothing more is told, and the streams are closed.
            for key in [k for k in self._watches if k[0] == user_id]:
                self._spawn(self.unwatch(*key), f"unwatch-{user_id}-{key[1]}")
            return None
        try:
            return await self.notifier.send(user_id, text, kind=kind)
        except Exception:  # the stream must keep going whatever delivery ran into
            log.exception("could not deliver a %s message to %s", kind, user_id)
            return None

    async def _load_cursor(self, user_id: int, network: str) -> Cursor | None:
        async with self.db.session() as s:
            row = (await s.exec(select(LiveCursor).where(
                LiveCursor.user_id == user_id, LiveCursor.network == network))).first()
        if row is None:
            return None
        return Cursor(row.last_exec_at, list(row.last_exec_ids or []), row.sending_exec_id)

    async def _save_cursor(self, w: Watch) -> None:
        if w.cursor is None:
            return
        async with self.db.session() as s:
            row = (await s.exec(select(LiveCursor).where(
                LiveCursor.user_id == w.user_id, LiveCursor.network == w.network))).first()
            if row is None:
                if await s.get(User, w.user_id) is None:
                    s.add(User(id=w.user_id))
                row = LiveCursor(user_id=w.user_id, network=w.network)
            row.last_exec_at = w.cursor.at
            row.last_exec_ids = list(w.cursor.ids)
            row.sending_exec_id = w.cursor.sending
            row.updated_at = datetime.now(UTC)
            s.add(row)
            await s.commit()

    async def _delete_cursor(self, user_id: int, network: str) -> None:
        async with self.db.session() as s:
            row = (await s.exec(select(LiveCursor).where(
                LiveCursor.user_id == user_id, LiveCursor.network == network))).first()
            if row is not None:
                await s.delete(row)
                await s.commit()
