"""The service container: every domain service, built once by a composition root.

Handlers receive this object and make one call on it per update; tests build it
against the simulator and a temporary database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import select

from bot.config import Settings
from bot.db.engine import Database
from bot.db.models import AuditLog, User
from bot.ratelimit import UserRateLimiter
from bot.vault import Vault

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    vault: Vault
    ratelimit: UserRateLimiter = field(default_factory=UserRateLimiter)

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.settings.ADMIN_IDS

    def is_allowed(self, user_id: int) -> bool:
        allowed = self.settings.ALLOWED_USER_IDS
        return not allowed or user_id in allowed or self.is_admin(user_id)

    async def touch_user(
        self, user_id: int, username: str | None, first_name: str | None
    ) -> User:
        """The user's row, created on first contact; marks them reachable again."""
        async with self.db.session() as s:
            user = await s.get(User, user_id)
            if user is None:
                user = User(id=user_id, username=username, first_name=first_name)
            else:
                user.username, user.first_name = username, first_name
                user.blocked = False
            user.last_seen_at = datetime.now(UTC)
            s.add(user)
            await s.commit()
            return user

    async def get_user(self, user_id: int) -> User | None:
        async with self.db.session() as s:
            return await s.get(User, user_id)

    async def audit(self, action: str, *, user_id: int | None = None,
                    chat_id: int | None = None, **detail: object) -> None:
        """Append to the audit log. Callers pass only safe fields, never secrets."""
        async with self.db.session() as s:
            s.add(AuditLog(user_id=user_id, chat_id=chat_id, action=action,
                           detail={k: str(v) for k, v in detail.items()}))
            await s.commit()

    async def count_users(self) -> int:
        async with self.db.session() as s:
            return len((await s.exec(select(User.id))).all())
