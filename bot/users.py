"""Who the bot's users are: rows of first contact, operators, ALLOWED_USER_IDS, blocked chats."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from bot.db.engine import Database
from bot.db.models import User


class Users:
    def __init__(self, db: Database, *, admin_ids: Collection[int],
                 allowed_ids: Collection[int]) -> None:
        self.db = db
        self.admin_ids = frozenset(admin_ids)
        self.allowed_ids = frozenset(allowed_ids)

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.admin_ids

    def is_allowed(self, user_id: int) -> bool:
        allowed = self.allowed_ids
        return not allowed or user_id in allowed or self.is_admin(user_id)

    async def touch_user(
        self, user_id: int, username: str | None, first_name: str | None
    ) -> User:
        """The user's row, created on first contact; marks them reachable again."""
        for attempt in (1, 2):
            async with self.db.session() as s:
                user = await s.get(User, user_id)
                if user is None:
                    user = User(id=user_id, username=username, first_name=first_name)
                else:
                    user.username, user.first_name = username, first_name
                    user.blocked = False
                user.last_seen_at = datetime.now(UTC)
                s.add(user)
                try:
                    await s.commit()
                except IntegrityError:
                    # On PostgreSQL two first updates of one user (private chat and a group at
                    # once) can both find no row; the loser updates the winner's row.
                    if attempt == 2:
                        raise
                    continue
                return user
        raise AssertionError("unreachable")

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
        async with self.db.session() as s:
            return await s.get(User, user_id)
