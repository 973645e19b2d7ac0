"""Who the bot's users are: rows of first contact, operators, ALLOWED_USER_IDS, blocked chats.

The hot paths (the router's symbol book, the delivery queue's audience) read a user's row on
nearly every update and message; `view` serves them from a small per-process cache that
every committed write to the users table invalidates (`Database.on_commit`), so /use and
/settings take effect on the next update.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.db.cache import RowCache
from bot.db.engine import Database, is_postgres
from bot.db.models import User


@dataclass(frozen=True, slots=True)
class UserView:
    """What the gate, the router and the delivery queue read of a user: a frozen copy."""

    id: int
    username: str | None
    first_name: str | None
    active_network: str | None
    default_symbol: str
    notify_prefs: Mapping[str, str]
    blocked: bool
    tz: str
    quiet_start: str | None
    quiet_end: str | None

    @classmethod
    def of(cls, u: User) -> UserView:
        return cls(id=u.id, username=u.username, first_name=u.first_name,
                   active_network=u.active_network, default_symbol=u.default_symbol,
                   notify_prefs=MappingProxyType(dict(u.notify_prefs or {})),
                   blocked=bool(u.blocked), tz=u.tz, quiet_start=u.quiet_start,
                   quiet_end=u.quiet_end)


# User views by id; None: no row (a stranger, or someone not seen in private yet).
UserCache = RowCache[int, "UserView | None"]


class Users:
    def __init__(self, db: Database, *, admin_ids: Collection[int],
                 allowed_ids: Collection[int]) -> None:
        self.db = db
        self.admin_ids = frozenset(admin_ids)
        self.allowed_ids = frozenset(allowed_ids)
        self.cache: UserCache = RowCache()
        db.on_commit(User, self.cache.invalidate)

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.admin_ids

    def is_allowed(self, user_id: int) -> bool:
        allowed = self.allowed_ids
        return not allowed or user_id in allowed or self.is_admin(user_id)

    async def touch_user(
        self, user_id: int, username: str | None, first_name: str | None
    ) -> None:
        """The user's row, created on first contact; marks them reachable again.

        One statement (an upsert) in one write transaction: no read first, so two first
        updates of one user at once cannot both insert (PostgreSQL), and SQLite's writer
        turn is held for one statement. Skipped when the cached row already says this.
        """
        found, view = self.cache.get(user_id)
        if (found and view is not None and not view.blocked and view.username == username
                and view.first_name == first_name):
                # Nothing to change but last_seen_at (/stats' "active" counts), and the row was
            # read within the cache's TTL: that precision is enough, the write is not needed.
            return
        # Every column's default filled in by the model, as a first contact's row has them.
        row = User(id=user_id, username=username, first_name=first_name,
                   last_seen_at=datetime.now(UTC)).model_dump()
        insert = pg_insert if is_postgres(self.db.url) else sqlite_insert
        stmt = insert(User).values(**row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={k: stmt.excluded[k] for k in ("username", "first_name", "blocked",
                                                 "last_seen_at")})
        async with self.db.session() as s:
            await s.exec(stmt)
            await s.commit()
        # A Core statement is not seen by the ORM's flush: drop the row here.
        self.cache.invalidate({user_id})

    async def mark_blocked(self, chat_id: int) -> None:
        """A private chat answered 403: stop writing to that user until they come back."""
        if chat_id <= 0:
            return
        async with self.db.session() as s:
            user = await s.get(User, chat_id)
            if user is not None and not user.blocked:
                user.blocked = True
                s.add(user)
                await s.commit()

    async def mark_reachable(self, chat_id: int) -> None:
        """The user unblocked the bot: write to them again."""
        if chat_id <= 0:
            return
        async with self.db.session() as s:
            user = await s.get(User, chat_id)
            if user is not None and user.blocked:
                user.blocked = False
                s.add(user)
                await s.commit()

    async def get_user(self, user_id: int) -> User | None:
        """The whole row, read afresh (outside the writer's turn on SQLite)."""
        async with self.db.read() as s:
            return await s.get(User, user_id)

    async def view(self, user_id: int) -> UserView | None:
        """What the hot paths need of the row (None: never seen), usually from the cache."""
        found, view = self.cache.get(user_id)
        if found:
            return view
        generation = self.cache.generation
        async with self.db.read() as s:
            user = await s.get(User, user_id)
        view = None if user is None else UserView.of(user)
        self.cache.put(user_id, view, generation)
        return view
