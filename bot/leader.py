"""Who leads when two or more `python -m bot run` share one database, and which Telegram
updates were already taken.

Exactly one instance, the leader, runs everything with a side effect: polling or the
webhook intake, the market and private streams, alert evaluation, the scheduler, the
delivery queue and the dead-man refresh. The others (standbys) wait in `wait_until_leader`
with nothing running but their health server, whose /readyz says 503.

**PostgreSQL: a lease row, not an advisory lock.** The leader holds the row
`leader_lease(name='bot')`: every `renew` seconds it sets `expires_at = server now + lease`
(one statement that also takes an expired or absent lease, see `_TAKE`). A standby tries the
same statement every `renew` seconds; it succeeds only once `expires_at` has passed on the
server's clock. Fencing, the reason for this choice: the leader times every attempt from the
moment it *sent* it (`sent`, a monotonic clock), and a successful attempt ran on the server
no earlier, so the lease it wrote lasts at least until `sent + lease`. The leader steps
down when no attempt has succeeded for `step_down` seconds since the last good `sent`, and
`step_down < lease` (checked by bot/config.py), so it has stopped at least
`lease - step_down` seconds before any standby can take the row, whatever happened to its
connection: a hung socket, a cut network, a server restart, or a backend killed with
`pg_terminate_backend`. A session advisory lock cannot promise that: a terminated backend
frees the lock at once, while the old leader learns of it only at its next query, and a
silently cut connection frees it only when the server's TCP keepalive gives up, which the
leader cannot observe. The watchdog runs in a thread of its own, so a stalled event loop
(a long GC, a blocking call) cannot delay the step-down either.

**Stepping down is exiting** (`EXIT_STEPPED_DOWN`), as Kubernetes' own leader election
advises: every task of the process stops at once, with no partial shutdown that could
still poll Telegram or send, and the supervisor (systemd, Docker, Kubernetes) starts it
again as a standby. What a killed leader leaves unfinished, the next leader settles: order
cards by clOrdID at start-up (bot/trading/place.py `settle_cards`), fired alerts not yet
sent (bot/alerts), fills after the account's stored cursor (bot/live `LiveCursor`), the
Telegram updates it took but never confirmed (Telegram sends them again; `UpdateLog` skips
those it had begun), and those it confirmed but never began (the update inbox, bot/inbox.py).

Takeover time after a crash: at most `lease` (the old lease runs out) + `renew` (the next
attempt) + the start-up of the services; with the defaults 6 + 1 + 1-2 s, under 10 s. A
leader stopped cleanly (SIGTERM) releases the lease, and a standby leads within `renew`.

**SQLite** has no server to hold a lease: one process only, enforced by an exclusive lock
on a file next to the database (`lock_database_file`); a second one refuses to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col

from bot.config import Settings
from bot.db.engine import Database, is_postgres, migrate
from bot.db.models import HandledUpdate, InboxUpdate
from bot.errors import ConfigError
from bot.metrics import Metrics, MetricsServer, Readiness

log = logging.getLogger(__name__)

# EX_TEMPFAIL: "try again later"; a supervisor restarts the process, which then stands by.
EXIT_STEPPED_DOWN = 75
LEASE_NAME = "bot"
# Held while migrating, so two instances started together do not migrate at once.
_MIGRATION_LOCK = 0x6274_6D78  # "btmx"

_NOW = "(clock_timestamp() AT TIME ZONE 'UTC')"  # the column is naive UTC (bot/db/types.py)
# Take the lease when it is absent, expired or already ours, and push its end forward;
# the epoch counts changes of holder. No row back: someone else holds it.
_TAKE = f"""
INSERT INTO leader_lease AS l (name, holder, epoch, expires_at, renewed_at)
VALUES ($1, $2, 1, {_NOW} + make_interval(secs => $3), {_NOW})
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    epoch = CASE WHEN l.holder = EXCLUDED.holder THEN l.epoch ELSE l.epoch + 1 END,
    expires_at = EXCLUDED.expires_at,
    renewed_at = EXCLUDED.renewed_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at < {_NOW}
RETURNING l.epoch
"""
_RELEASE = f"UPDATE leader_lease SET expires_at = {_NOW} WHERE name = $1 AND holder = $2"


@dataclass(frozen=True)
class LeaseTimes:
    """Seconds: how long a lease lasts, how often it is renewed, when a leader gives up."""

    lease: float = 6.0
    renew: float = 1.0
    step_down: float = 4.0

    def __post_init__(self) -> None:
        if not 0 < self.renew < self.step_down < self.lease:
            raise ValueError("lease times must satisfy 0 < renew < step_down < lease")

    @classmethod
    def of(cls, settings: Settings) -> LeaseTimes:
        return cls(settings.LEADER_LEASE_SECONDS, settings.LEADER_RENEW_SECONDS,
                   settings.LEADER_STEP_DOWN_SECONDS)


def exit_now(reason: str) -> None:
    """Step down by ending the process at once (see the module docstring); thread-safe."""
    log.error("stepping down: %s; exiting so that another instance can lead", reason)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(EXIT_STEPPED_DOWN)


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def holder_id() -> str:
    """Unique per process run: a restarted process is a new holder, never the old one."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"


class Leadership:
    """Always the leader: one instance, nothing to elect (SQLite, tests, the sandbox)."""

    def is_leader(self) -> bool:
        return True

    async def prepare(self) -> None:
        """Bring the schema up to date (the lease table is in it)."""

    async def wait_until_leader(self) -> None:
        return None

    async def release(self) -> None:
        return None


class Lease(Leadership):
    """Leadership through the `leader_lease` row on PostgreSQL (see the module docstring)."""

    def __init__(self, url: str, times: LeaseTimes = LeaseTimes(), *, name: str = LEASE_NAME,
                 holder: str | None = None,
                 on_lost: Callable[[str], None] = exit_now,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.times = times
        self.name = name
        self.holder = holder or holder_id()
        self.on_lost = on_lost
        self.clock = clock
        self.epoch: int | None = None
        self._conn: Any = None  # asyncpg.Connection, its own: never a pooled one
        self._leading = False
        self._lost = False
        self._last_ok = 0.0
        self._renewer: asyncio.Task[None] | None = None
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        self._complained = False

    def is_leader(self) -> bool:
        return self._leading and not self._lost

    async def _connection(self) -> Any:
        import asyncpg

        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(_dsn(self.url), timeout=self._patience,
                                               command_timeout=self._patience)
        return self._conn

    @property
    def _patience(self) -> float:
        # How long one attempt may take: a hung one is abandoned in time for another try
        # before the step-down; a slow start (a loaded machine) is not mistaken for none.
        return self.times.step_down - self.times.renew

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()  # no goodbye on a socket that may hang

    async def prepare(self) -> None:
        """Migrate under an advisory lock: instances started together take turns, and the
        later ones find nothing left to do."""
        import asyncpg

        conn = await asyncpg.connect(_dsn(self.url), timeout=30)
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            try:
                await migrate(self.url)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        finally:
            await conn.close()

    async def try_take(self) -> bool:
        """One attempt to take or renew the lease; True while this instance holds it."""
        sent = self.clock()
        try:
            conn = await self._connection()
            epoch = await asyncio.wait_for(
                conn.fetchval(_TAKE, self.name, self.holder, self.times.lease),
                self._patience)
        except Exception as e:  # any trouble is "not renewed"; the watchdog counts the time
            await self._drop_connection()
            if not self._complained:
                log.warning("leader lease: the database did not answer (%s)",
                            type(e).__name__)
                self._complained = True
            return False
        self._complained = False
        if epoch is None:
            return False
        self.epoch = int(epoch)
        self._last_ok = max(self._last_ok, sent)
        return True

    async def wait_until_leader(self) -> None:
        """Return once this instance leads; then keep renewing, and step down when it
        cannot (`on_lost`)."""
        said = False
        while not await self.try_take():
            if not said:
                log.info("standing by: another instance leads (lease %r)", self.name)
                said = True
            await asyncio.sleep(self.times.renew)
        self._leading = True
        log.info("leading (lease %r, epoch %s, holder %s)", self.name, self.epoch, self.holder)
        self._renewer = asyncio.get_running_loop().create_task(self._renew(), name="lease")
        self._watchdog = threading.Thread(target=self._watch, name="lease-watchdog",
                                          daemon=True)
        self._watchdog.start()

    async def _renew(self) -> None:
        while self._leading and not self._lost:
            await asyncio.sleep(self.times.renew)
            if not await self.try_take() and self._conn is not None:
                # The server answered, and someone else holds the lease: we lost it.
                self._lose("another instance holds the lease")
                return

    def _watch(self) -> None:
        # A thread, not a task: it fires even if the event loop is stuck.
        tick = min(0.1, self.times.renew / 4)
        while not self._stop.wait(tick):
            idle = self.clock() - self._last_ok
            if self._leading and idle > self.times.step_down:
                self._lose(f"the lease was not renewed for {idle:.1f} s "
                           "(database unreachable)")
                return

    def _lose(self, reason: str) -> None:
        if self._lost:
            return
        self._lost = True
        self._stop.set()
        self.on_lost(reason)

    async def release(self) -> None:
        """After every side effect has stopped: hand the lease over at once (SIGTERM)."""
        self._stop.set()
        leading, self._leading = self._leading, False
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewer
        if leading and not self._lost:
            # A fresh connection: the cancelled renewal may have left the old one mid-query.
            await self._drop_connection()
            try:
                conn = await self._connection()
                await asyncio.wait_for(conn.execute(_RELEASE, self.name, self.holder), 2.0)
                log.info("released the leader lease")
            except Exception as e:  # it runs out by itself within the lease time
                log.warning("could not release the leader lease (%s)", type(e).__name__)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)


def leadership_for(settings: Settings) -> Leadership:
    if is_postgres(settings.DATABASE_URL):
        return Lease(settings.DATABASE_URL, LeaseTimes.of(settings))
    return Leadership()


class Standby:
    """The health server of an instance that does not lead yet: /healthz 200, /readyz 503
    ("standby"), /metrics with bot_leader 0. Closed once this instance leads, to give its
    port to the leader's own server (bot/services.py)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Never "leader" here, even in the instant between taking the lease and closing:
        # only the leader's own server, with its streams behind it, may say ready.
        self.readiness = Readiness(leader=lambda: False, started=True)
        self.metrics = Metrics()
        self.metrics.sources.leader = lambda: False
        self.metrics.sources.ready = lambda: False
        self.server: MetricsServer | None = None

    async def start(self) -> None:
        port = self.settings.METRICS_PORT
        if port is not None:
            self.server = MetricsServer(self.metrics, self.readiness,
                                        self.settings.METRICS_HOST, port)
            await self.server.start()

    async def close(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.close()


def lock_database_file(settings: Settings) -> int | None:
    """Hold an exclusive lock on `<database>.lock` for the life of the process, or refuse
    with one line: SQLite serves one instance (two would both poll, both trade)."""
    path = settings.database_path
    if path is None:
        return None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no second-instance check
        return None
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        other = _read_pid(fd)
        os.close(fd)
        who = f" (pid {other})" if other else ""
        raise ConfigError(
            f"another bot is already running on {path}{who}: stop it first. SQLite serves "
            "one instance; two instances (failover) need PostgreSQL, see README "
            "\"Running at scale\".") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return str(int(os.pread(fd, 32, 0).decode().strip()))
    return ""


# Telegram keeps an unconfirmed update for 24 hours; older ids never come back.
HANDLED_KEEP = timedelta(hours=25)
PRUNE_EVERY = 3600.0  # seconds
# Ids per claiming statement: getUpdates hands out at most 100 at once, and 3 bound
# parameters a row stay far below SQLite's and asyncpg's limits.
CLAIM_BATCH = 500


class UpdateLog:
    """Each Telegram update is taken once, across restarts and instances.

    With polling, Telegram forgets an update only when the next getUpdates confirms it; a
    leader killed between taking a batch and that call leaves it to the next leader,
    which receives it again. `claim` inserts (bot, update_id) before the update is
    handled: the first instance to insert handles it, any later delivery is skipped. An
    update whose handling the kill interrupted is not run again: its effects are the ones
    the next leader settles (an order card by its clOrdID); repeating it could place a
    second alert or send a key twice. Webhook re-deliveries are skipped the same way.

    **One statement for many claims.** An update is still claimed only when its own
    handling starts (handlers/repeats.py, the first handler group): an update of the batch
    that was waiting for its chat's earlier one when the leader died has no row, and the
    next leader handles it: from the update inbox (bot/inbox.py) when the batch was already
    confirmed, from Telegram when not. Claiming the whole getUpdates batch on arrival would
    lose those. What is batched is the statement: the claims made while none is being sent go
    out together in one `INSERT ... ON CONFLICT DO NOTHING RETURNING update_id` on the next
    turn of the event loop, and those made while it runs go together in the next one. A
    getUpdates batch hands every chat's first update to the processor at once, so its
    claims share a statement; under load the claims of a statement's round trip do.
    Nobody waits longer than one statement ahead of its own, and each caller learns from
    the rows returned whether its update was the first delivery.
    """

    def __init__(self, db: Database, bot_id: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.bot_id = bot_id
        self.clock = clock
        self.skipped = 0
        self.statements = 0  # claiming statements sent: the batching's measure
        self._pruned = clock()
        # update_id -> the callers waiting for its claim (two: a repeat arriving meanwhile)
        self._pending: dict[int, list[asyncio.Future[bool]]] = {}
        self._sender: asyncio.Task[None] | None = None

    async def claim(self, update_id: int) -> bool:
        """True for the first delivery of this update, False for a repeat."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._pending.setdefault(update_id, []).append(waiter)
        if self._sender is None:
            # Started on the next turn of the loop: the claims of this turn join it.
            self._sender = loop.create_task(self._send_claims(), name="update-claims")
        first = await waiter
        if not first:
            self.skipped += 1
            log.info("update %s was already handled (delivered again): skipped", update_id)
        return first

    async def _send_claims(self) -> None:
        try:
            while self._pending:
                batch: dict[int, list[asyncio.Future[bool]]] = {}
                for update_id in sorted(self._pending):  # one lock order for every instance
                    waiters = [w for w in self._pending.pop(update_id) if not w.done()]
                    if waiters:  # a caller cancelled meanwhile does not claim its update
                        batch[update_id] = waiters
                    if len(batch) == CLAIM_BATCH:
                        break
                if not batch:
                    continue
                try:
                    taken = await self.claim_many(list(batch))
                except Exception as e:  # every caller of this statement sees its failure
                    for waiters in batch.values():
                        for w in waiters:
                            if not w.done():
                                w.set_exception(e)
                    continue
                except asyncio.CancelledError:
                    for waiters in batch.values():
                        for w in waiters:
                            w.cancel()
                    raise
                for update_id, waiters in batch.items():
                    # Two deliveries of one id in one statement: the first caller has it.
                    first = update_id in taken
                    for w in waiters:
                        if not w.done():
                            w.set_result(first)
                            first = False
                if self.clock() - self._pruned > PRUNE_EVERY:
                    self._pruned = self.clock()
                    try:
                        await self.prune(datetime.now(UTC) - HANDLED_KEEP)
                    except Exception as e:  # the next hour's prune takes these rows too
                        log.warning("could not prune handled updates (%s)", type(e).__name__)
        finally:
            self._sender = None
            # Cancelled (the application stopping): nobody is left waiting forever.
            for waiters in self._pending.values():
                for w in waiters:
                    w.cancel()
            self._pending.clear()

    async def claim_many(self, update_ids: list[int]) -> set[int]:
        """Insert the rows of `update_ids` in one statement; the ids inserted now (the
        others were taken before)."""
        now = datetime.now(UTC)
        dialect = self.db.engine.dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(HandledUpdate).values([
            {"bot_id": self.bot_id, "update_id": update_id, "handled_at": now}
            for update_id in update_ids
        ]).on_conflict_do_nothing().returning(col(HandledUpdate.update_id))
        # The inbox's copies go with the claim (bot/inbox.py), repeats' too: a row kept
        # past the claim would replay an update whose handling already began. In the
        # claim's own transaction, so no kill falls between the two, and without a second
        # statement: on PostgreSQL a DELETE in the claim's WITH; on SQLite a trigger on
        # handled_updates (migration 0023) takes the rows of the ids inserted, and only a
        # repeat (an update fetched again after a restart) needs a DELETE of its own.
        postgres = dialect == "postgresql"
        if postgres:
            stmt = stmt.add_cte(self._inbox_rows(update_ids).cte("inbox_gone"))
        self.statements += 1
        async with self.db.session() as s:
            result = await s.exec(stmt)
            taken = {int(u) for u in result.scalars()}
            if not postgres and len(taken) < len(update_ids):
                await s.exec(self._inbox_rows([u for u in update_ids if u not in taken]))
            await s.commit()
        return taken

    def _inbox_rows(self, update_ids: list[int]) -> Any:
        return delete(InboxUpdate).where(col(InboxUpdate.bot_id) == self.bot_id,
                                         col(InboxUpdate.update_id).in_(update_ids))

    async def prune(self, before: datetime) -> None:
        async with self.db.session() as s:
            await s.exec(delete(HandledUpdate).where(
                col(HandledUpdate.bot_id) == self.bot_id, col(HandledUpdate.handled_at) < before))
            # An inbox row outlives its claim only when something dropped its update before
            # the claim; Telegram itself keeps nothing this old.
            await s.exec(delete(InboxUpdate).where(
                col(InboxUpdate.bot_id) == self.bot_id, col(InboxUpdate.received_at) < before))
            await s.commit()


def bot_id_of(token: str) -> int:
    """The bot's numeric id: the part of its token before the colon."""
    head = token.partition(":")[0]
    return int(head) if head.isdigit() else 0

