"""Moving an install from its SQLite file to PostgreSQL (`python -m bot migrate-db`).

Rows are copied as they are stored: API secrets stay sealed under the same MASTER_KEY (their
associated data is the user id and network, both copied unchanged), ids stay the same, and
every table's row count is compared after the copy. The copy is one transaction on the
target, so a failure leaves it empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.db import models
from bot.db.engine import is_postgres, is_sqlite, make_engine, migrate
from bot.errors import ConfigError

BATCH = 1000


@dataclass(frozen=True)
class TableCount:
    table: str
    source: int
    target: int

    @property
    def same(self) -> bool:
        return self.source == self.target


def _tables() -> list[Table]:
    # Every table the models module declares, parents before children, so foreign keys
    # hold row by row.
    return list(models.SQLModel.metadata.sorted_tables)


async def _count(conn: AsyncConnection, table: Table) -> int:
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _reset_sequence(conn: AsyncConnection, table: Table) -> None:
    # Copied rows keep their ids; the next id PostgreSQL hands out must come after them.
    pk = list(table.primary_key.columns)
    if len(pk) != 1 or pk[0].autoincrement is False:
        return
    col = pk[0].name
    seq = (await conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                              {"t": table.name, "c": col})).scalar_one()
    if seq is None:
        return
    await conn.execute(text(
        f'SELECT setval(:s, COALESCE((SELECT MAX("{col}") FROM "{table.name}"), 0) + 1, false)'
    ), {"s": seq})


async def copy_database(source_url: str, target_url: str,
                        progress: Callable[[str], None] = lambda _m: None) -> list[TableCount]:
    """Copy every table from the SQLite database to an empty PostgreSQL one; the counts."""
    if not is_sqlite(source_url):
        raise ConfigError("migrate-db copies from a SQLite DATABASE_URL (sqlite+aiosqlite://...)")
    if not is_postgres(target_url):
        raise ConfigError("--to must be a PostgreSQL URL: postgresql+asyncpg://user@host/dbname")
    # Both at the newest schema, so the tables and columns match one for one; the target
    # first, so an unreachable server leaves the SQLite file untouched.
    await migrate(target_url)
    await migrate(source_url)
    src, dst = make_engine(source_url), make_engine(target_url)
    counts: list[TableCount] = []
    try:
        async with src.connect() as sconn, dst.begin() as dconn:
            tables = _tables()
            busy = [t.name for t in tables if await _count(dconn, t)]
            if busy:
                raise ConfigError(f"the target database already holds data (in {busy[0]}): "
                                  "give migrate-db an empty database")
            for table in tables:
                n = 0
                result = await sconn.stream(select(table))
                async for chunk in result.partitions(BATCH):
                    await dconn.execute(insert(table), [dict(r._mapping) for r in chunk])
                    n += len(chunk)
                await _reset_sequence(dconn, table)
                progress(f"copied {table.name}: {n}")
            for table in tables:
                counts.append(TableCount(table.name, await _count(sconn, table),
                                         await _count(dconn, table)))
            if not all(c.same for c in counts):
                await dconn.rollback()  # nothing half-moved
    finally:
        await src.dispose()
        await dst.dispose()
    return counts
