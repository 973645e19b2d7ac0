"""A PostgreSQL server for tests that need one whatever TEST_DATABASE_URL says (failover),
and a TCP proxy in front of it whose connection can be cut."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
from collections.abc import AsyncIterator
from itertools import count
from urllib.parse import urlsplit

import pytest

from tests.dbs import server_url, with_database

DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
_names = count()


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def reachable(url: str) -> bool:
    try:
        import asyncpg
    except ImportError:
        return False
    try:
        conn = await asyncpg.connect(_dsn(url), timeout=3)
    except Exception:  # any refusal (no server, no such user, a timeout): none to use
        return False
    await conn.close()
    return True


async def admin(url: str, *sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_dsn(url), timeout=10)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def throwaway_database() -> AsyncIterator[str]:
    """A new, empty database on the server (TEST_DATABASE_URL's, else the local one);
    skips the test with a clear reason when no server answers."""
    base = server_url() or DEFAULT
    if not await reachable(base):
        pytest.skip(f"no PostgreSQL server answers at {urlsplit(base).netloc}: set "
                    "TEST_DATABASE_URL=postgresql+asyncpg://user@host:5432/db to run the "
                    "failover tests")
    template = await _migrated_template(base)
    name = f"failover_{os.getpid()}_{next(_names)}"
    await admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield with_database(base, name)
    finally:
        await admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_template: str | None = None


async def _migrated_template(base: str) -> str:
    """A database migrated to head once per session: copying it is far faster than
    migrating each new one (a bot still runs its migrations, and finds nothing to do)."""
    global _template
    if _template is None:
        from bot.db.engine import upgrade

        name = f"failover_template_{os.getpid()}"
        await admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                    f'CREATE DATABASE "{name}"')
        await asyncio.to_thread(upgrade, with_database(base, name))
        atexit.register(_drop_template, base, name)
        _template = name
    return _template


def _drop_template(base: str, name: str) -> None:
    with contextlib.suppress(Exception):
        asyncio.run(admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class CutProxy:
    """Forwards TCP to the database until `cut()`: from then on nothing gets through in
    either direction and new connections hang, as when a network link dies silently (no
    reset: the harder case, where a client learns nothing until its own timeouts)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listen_port = 0
        self.cut_off = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def url(self, url: str) -> str:
        """`url` (a server URL) through this proxy."""
        parts = urlsplit(url)
        user = f"{parts.username}@" if parts.username else ""
        return url.replace(f"{user}{parts.netloc.split('@')[-1]}",
                           f"{user}127.0.0.1:{self.listen_port}", 1)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.listen_port = int(self._server.sockets[0].getsockname()[1])

    def cut(self) -> None:
        self.cut_off.set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        if self.cut_off.is_set():
            await asyncio.Event().wait()  # accepted, never answered
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self._writers.append(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                if self.cut_off.is_set():
                    continue  # swallowed: the link is dead
                dst.write(data)
                await dst.drain()
        if not self.cut_off.is_set():
            with contextlib.suppress(Exception):
                dst.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for w in self._writers:
            with contextlib.suppress(Exception):
                w.close()
