"""The async engine (SQLite in WAL mode, or PostgreSQL) and schema migration on start."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy import util as sa_util
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, UOWTransaction
from sqlalchemy.orm import Session as SyncSession
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.orm.session import Session as SQLModelSession

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
BUSY_TIMEOUT_MS = 5000
# Marks a connection checked out for `Database.read()`: its transaction opens deferred.
READ_ONLY = "bot_read_only"
# The pool, sized for the update processor's 256 concurrent updates: an update holds a
# connection for one short transaction at a time (never across a network call), so a few
# dozen serve them; more would only queue on the server (PostgreSQL's default
# max_connections is 100, shared by every instance) or, on SQLite, behind the one writer.
DEFAULT_POOL_SIZE, DEFAULT_MAX_OVERFLOW = 10, 30


SQLITE_PREFIX = "sqlite+aiosqlite://"
POSTGRES_PREFIX = "postgresql+asyncpg://"


def is_sqlite(url: str) -> bool:
    return url.startswith(SQLITE_PREFIX)


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_PREFIX)


def sync_url(url: str) -> str:
    """The URL Alembic is given: SQLite through the stdlib driver; PostgreSQL stays on asyncpg
    (migrations/env.py drives it through an async engine, so no second driver is needed)."""
    return url.replace(SQLITE_PREFIX, "sqlite://", 1)


def database_file(url: str) -> Path | None:
    """The file behind a SQLite URL (None for in-memory and for a server database)."""
    if not is_sqlite(url):
        return None
    rest = url.split("://", 1)[1]
    if rest in ("", "/", "/:memory:") or ":memory:" in rest:
        return None
    return Path(rest[1:]) if rest.startswith("/") else Path(rest)


def ensure_parent(url: str) -> None:
    """Create the folder of a file database, so a fresh checkout just works."""
    path = database_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def make_owner_only(url: str, *others: Path | None) -> list[Path]:
    """Make the database, its WAL, SHM and journal, and `others` 0600 and their folders 0700;
    the files changed.

    The process umask covers files it creates; this covers files an earlier run, a copy or a
    restore left readable by other local users (encrypted keys, trading history).
    """
    db = database_file(url)
    files = [] if db is None else [db, *(Path(f"{db}{s}") for s in ("-wal", "-shm", "-journal"))]
    files += [p for p in others if p is not None]
    changed: list[Path] = []
    me = os.getuid()
    for folder in {f.parent for f in files}:
        _chmod_if_ours(folder, 0o700, me, changed)
    for f in files:
        _chmod_if_ours(f, 0o600, me, changed)
    return changed


def _chmod_if_ours(path: Path, mode: int, me: int, changed: list[Path]) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    # Someone else's file or folder (a shared /var/lib): not ours to change, and chmod fails.
    if st.st_uid != me or stat.S_IMODE(st.st_mode) & 0o077 == 0:
        return
    path.chmod(mode)
    changed.append(path)


def _on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets the scheduler read while a handler writes; the busy timeout turns
    # brief lock contention into a wait instead of "database is locked".
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _no_driver_begin(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # pysqlite would open a deferred transaction itself; _WriterTurns does it instead.
    dbapi_conn.isolation_level = None


# Runs a coroutine from inside SQLAlchemy's sync event hooks (they run in its greenlet).
_await: Any = getattr(sa_util, "await_", None) or sa_util.await_only


class _WriterTurns:
    """Every SQLite transaction starts as the writer, in turn.

    A deferred transaction that has read cannot become a writer once another connection has
    written since: SQLite answers "database is locked" at once, and the busy timeout does not
    apply. So each transaction opens with BEGIN IMMEDIATE. Within the process, connections
    queue for that lock on a FIFO asyncio lock rather than in SQLite's busy handler, which
    polls with growing sleeps and lets a burst starve one waiter past any timeout. Readers
    outside a transaction are unaffected (WAL). Other processes (`migrate`, `rotate-key`)
    still meet the busy timeout.
    """

    KEY = "bot_writer_turn"

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None

    def begin(self, conn: Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # A read-only transaction never upgrades to a writer, so a deferred BEGIN cannot
            # meet "database is locked"; in WAL mode it reads a snapshot while the writer
            # works, and it does not queue for the writer's turn.
            conn.exec_driver_sql("BEGIN")
            return
        task = asyncio.current_task()
        # The same task opening a second session inside its first cannot wait for itself;
        # it meets SQLite's own lock and busy timeout, as before.
        if task is None or task is not self._holder:
            _await(self._lock.acquire())
            self._holder = task
            conn.info[self.KEY] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self.end(conn)
            raise

    def end(self, conn: Connection) -> None:
        if conn.info.pop(self.KEY, False):
            self._holder = None
            self._lock.release()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """The turn for a whole write session, taken before it checks a connection out of
        the pool: a writer queued for the turn must not sit on a connection meanwhile, or a
        burst of writers empties the pool and the reads behind them wait too."""
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            yield  # a session inside this task's own write session: the turn is ours
            return
        await self._lock.acquire()
        self._holder = task
        try:
            yield
        finally:
            self._holder = None
            self._lock.release()


# Each SQLite engine's writer turns, for `Database.session` to take before a checkout.
_TURNS: weakref.WeakKeyDictionary[Engine, _WriterTurns] = weakref.WeakKeyDictionary()


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if is_postgres(url) or database_file(url) is not None:
        # A file or a server: a queue pool (an in-memory SQLite keeps its one connection).
        kwargs.setdefault("pool_size", DEFAULT_POOL_SIZE)
        kwargs.setdefault("max_overflow", DEFAULT_MAX_OVERFLOW)
    if is_postgres(url):
        # A server restart or a dropped idle connection costs one ping, not a failed update.
        kwargs.setdefault("pool_pre_ping", True)
        return create_async_engine(url, **kwargs)
    ensure_parent(url)
    engine = create_async_engine(url, **kwargs)
    turns = _WriterTurns()
    _TURNS[engine.sync_engine] = turns
    event.listen(engine.sync_engine, "connect", _on_connect)
    event.listen(engine.sync_engine, "connect", _no_driver_begin)
    event.listen(engine.sync_engine, "begin", turns.begin)
    event.listen(engine.sync_engine, "commit", turns.end)
    event.listen(engine.sync_engine, "rollback", turns.end)
    return engine


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolates "%": a percent-encoded password must survive it.
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    ensure_parent(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


async def migrate(url: str) -> None:
    """Upgrade to head without blocking the event loop."""
    await asyncio.to_thread(upgrade, url)


Watcher = Callable[[set[Any] | None], None]
KeyOf = Callable[[Any], Any]


class _CommitWatch:
    """Tells subscribers which rows of a model a committed transaction changed.

    Per-process caches (`bot.users`) drop exactly those rows: collected at each flush (new,
    changed and deleted instances; an ORM bulk UPDATE or DELETE counts as "all rows"), told
    after the commit, so a reader that started before it can never put the old row back
    (the cache compares a generation, see `bot.db.cache.RowCache`). Nothing is told on
    rollback: nothing changed.
    """

    KEY = "bot_written"

    def __init__(self) -> None:
        self.watchers: dict[type, list[tuple[KeyOf, Watcher]]] = {}

    def pending(self, session: SyncSession) -> dict[Watcher, set[Any] | None]:
        written: dict[Watcher, set[Any] | None] = session.info.setdefault(self.KEY, {})
        return written

    def after_flush(self, session: SyncSession, _ctx: UOWTransaction) -> None:
        if not self.watchers:
            return
        written = self.pending(session)
        for obj in (*session.new, *session.dirty, *session.deleted):
            for key, tell in self.watchers.get(type(obj), ()):
                if (keys := written.setdefault(tell, set())) is not None:
                    keys.add(key(obj))

    def on_execute(self, state: ORMExecuteState) -> None:
        if not (state.is_update or state.is_delete) or not self.watchers:
            return
        written = self.pending(state.session)
        for mapper in state.all_mappers:
            for _key, tell in self.watchers.get(mapper.class_, ()):
                written[tell] = None

    def after_commit(self, session: SyncSession) -> None:
        written = session.info.pop(self.KEY, None)
        for tell, keys in (written or {}).items():
            tell(keys)

    def after_rollback(self, session: SyncSession) -> None:
        session.info.pop(self.KEY, None)


class _ReadOnlyViolation(RuntimeError):
    pass


async def _read_ahead(fetch: Callable[[], Awaitable[Any]],
                      chunk: int) -> AsyncIterator[list[Any]]:
    """Chunks from `fetch` until a short one; the next is read (by the server, or
    aiosqlite's thread) while the caller works through this one."""
    ahead = asyncio.ensure_future(fetch())
    try:
        while True:
            rows = list(await ahead)
            if len(rows) == chunk:
                ahead = asyncio.ensure_future(fetch())
            if rows:
                yield rows
            if len(rows) < chunk:
                return
    finally:
        if not ahead.done():
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)


COPY_NULL = b"\\N"  # how COPY's text format writes NULL
_COPY_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t",
                 b"v": b"\v"}
_COPY_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)


def copy_text_value(value: bytes) -> str | None:
    """One value of COPY's text format as the text it stands for (None for NULL)."""
    if value == COPY_NULL:
        return None
    if b"\\" in value:
        # COPY TO writes only these escapes and a doubled backslash (COPY FROM's octal
        # and hex forms never come out of the server); any other escaped byte is itself.
        value = _COPY_ESCAPE.sub(lambda m: _COPY_ESCAPES.get(m[1], m[1]), value)
    return value.decode()


def _text_columns(text: bytes) -> list[list[bytes]]:
    """Whole rows of COPY text (each ending in a newline) as columns of raw values."""
    width = text[:text.find(b"\n")].count(b"\t") + 1
    # Data tabs and newlines are escaped, so every tab and newline is a separator.
    values = text.replace(b"\n", b"\t").split(b"\t")
    values.pop()  # after the last newline
    if len(values) % width:
        raise RuntimeError("COPY text rows of unequal width")
    return [values[i::width] for i in range(width)]


def _refuse_flush(session: SyncSession, *_: Any) -> None:
    # A write in a deferred SQLite transaction could meet "database is locked" (it would
    # upgrade after reading): writes belong in `Database.session()`.
    if session.new or session.dirty or session.deleted:
        raise _ReadOnlyViolation("Database.read() sessions do not write")


class Database:
    """The engine plus a session factory; one per process.

    `session()` is the one for writes (on SQLite it takes the writer's turn); `read()` is
    for transactions that only read, which on SQLite neither wait for the writer nor make
    it wait.
    """

    def __init__(self, url: str, *, pool_size: int | None = None,
                 max_overflow: int | None = None) -> None:
        self.url = url
        pool: dict[str, Any] = {}
        if pool_size is not None:
            pool["pool_size"] = pool_size
        if max_overflow is not None:
            pool["max_overflow"] = max_overflow
        self.engine = make_engine(url, **pool)
        self.watch = _CommitWatch()
        # Classes of our own, so the events below are this database's alone.
        writes: type[SQLModelSession] = type("BotSession", (SQLModelSession,), {})
        reads: type[SQLModelSession] = type("BotReadSession", (SQLModelSession,), {})
        event.listen(writes, "after_flush", self.watch.after_flush)
        event.listen(writes, "do_orm_execute", self.watch.on_execute)
        event.listen(writes, "after_commit", self.watch.after_commit)
        event.listen(writes, "after_rollback", self.watch.after_rollback)
        event.listen(reads, "before_flush", _refuse_flush)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False,
            sync_session_class=writes)
        self._reads = async_sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), class_=AsyncSession,
            expire_on_commit=False, autoflush=False, sync_session_class=reads)

    def on_commit(self, model: type, tell: Watcher, key: KeyOf | None = None) -> None:
        """Call `tell(keys)` after each commit that changed rows of `model`: the `key` of each
        changed row (default: its `id`), or None when a bulk statement changed any."""
        self.watch.watchers.setdefault(model, []).append(
            (key or (lambda obj: getattr(obj, "id", None)), tell))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        turns = _TURNS.get(self.engine.sync_engine)
        if turns is None:  # PostgreSQL: the server orders its writers
            async with self._sessions() as s:
                yield s
            return
        async with turns.held(), self._sessions() as s:
            yield s

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session that only reads: on SQLite a deferred transaction outside the writer's
        turn; its objects are for reading (flushing a change raises)."""
        async with self._reads() as s:
            yield s

    async def bulk_rows(self, sql: str, chunk: int = 50_000) -> AsyncIterator[list[Any]]:
        """The rows of one SELECT in chunks of plain tuples, straight from the driver.

        For start-up loads of a million rows: SQLAlchemy's result layer (a Row and the type
        processors per row) would cost more than the read itself, and one fetch of them all
        would hold the whole table twice in memory. One statement, read through a cursor
        (a server-side one on PostgreSQL, in a read-only transaction), so the rows are one
        snapshot. Values come as the driver gives them: what the column types would
        convert (DecimalText thresholds, UTC times) stays raw. `sql` is code's, never a
        user's.
        """
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            if is_postgres(self.url):
                async with driver.transaction(readonly=True):
                    cursor = await driver.cursor(sql)
                    async for rows in _read_ahead(lambda: cursor.fetch(chunk), chunk):
                        yield rows  # Records index like tuples
                return
            cursor = await driver.execute(sql)
            try:
                async for rows in _read_ahead(lambda: cursor.fetchmany(chunk), chunk):
                    yield rows
            finally:
                await cursor.close()

    async def bulk_text(self, sql: str, chunk_bytes: int = 4 << 20, *,
                        probe: tuple[str, Callable[[list[Any]], str]] | None = None,
                        ) -> AsyncGenerator[list[list[bytes]], None]:
        """PostgreSQL only: the rows of one SELECT as columns of raw text values, in chunks.

        For start-up loads of a million rows faster than `bulk_rows`: the driver building a
        Record and a str or int per value is most of that read, while COPY's text format
        arrives as bytes that split into columns at C speed (one `bytes` per value, no
        row object), for the caller to convert a whole column at a time. A chunk is whole
        rows, about `chunk_bytes` of text (the last one less), every column the same
        length. Values are COPY text: NULL is `COPY_NULL`, and a value holding a backslash,
        tab or newline comes escaped (`copy_text_value` decodes one).

        `probe` = (query, then): the query's rows (asyncpg Records) go to `then` first, and
        what it returns is appended to `sql` (a condition built off them); both statements
        read one snapshot (a repeatable-read transaction). `sql` and the appended text are
        code's, never a user's.
        """
        if not is_postgres(self.url):
            raise NotImplementedError("bulk_text reads PostgreSQL's COPY format")
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            snapshot = driver.transaction(isolation="repeatable_read", readonly=True)
            await snapshot.start()
            read = False
            try:
                if probe is not None:
                    query, then = probe
                    sql += then(await driver.fetch(query))
                # Closed here, not whenever it is collected, if the caller stops early.
                async with aclosing(self._copy_text(driver, sql, chunk_bytes)) as chunks:
                    async for columns in chunks:
                        yield columns
                read = True
            finally:
                if read:
                    await snapshot.commit()
                else:
                    # Left early (the caller stopped, or something failed): the COPY may
                    # be mid-stream, a state the connection cannot be reused from.
                    await conn.invalidate()

    @staticmethod
    async def _copy_text(driver: Any, sql: str,
                         chunk_bytes: int) -> AsyncGenerator[list[list[bytes]], None]:
        """`bulk_text`'s COPY on an asyncpg connection."""
        # Unbounded, yet small: the copy task only runs while this generator waits for a
        # piece, i.e. once the queue is empty (a slow caller leaves the rows in the socket,
        # and the server waits).
        pieces: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def sink(data: bytes) -> None:
            await pieces.put(bytes(data))

        async def copy() -> None:
            try:
                await driver.copy_from_query(sql, output=sink, format="text")
            finally:
                pieces.put_nowait(None)

        # The copy runs as its own task, reading on whenever this generator waits.
        task = asyncio.ensure_future(copy())
        try:
            held: list[bytes] = []
            size = 0
            while True:
                piece = await pieces.get()
                if piece is not None:
                    held.append(piece)
                    size += len(piece)
                    if size < chunk_bytes:
                        continue
                text = b"".join(held)
                start = 0
                while len(text) - start >= chunk_bytes:  # whole rows, chunk_bytes or more
                    cut = text.find(b"\n", start + chunk_bytes - 1) + 1
                    if not cut:
                        break
                    yield _text_columns(text[start:cut])
                    start = cut
                if piece is None:
                    break
                held = [text[start:]]
                size = len(text) - start
            await task  # raises what the copy raised
            if start < len(text):
                if not text.endswith(b"\n"):
                    raise RuntimeError("COPY text ended inside a row")
                yield _text_columns(text[start:])
        finally:
            if not task.done():  # left mid-COPY: bulk_text drops the connection
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def migrate(self) -> None:
        await migrate(self.url)

    async def dispose(self) -> None:
        await self.engine.dispose()
