"""The update inbox: every Telegram update fetched is kept, sealed, until it is claimed.

With polling, Telegram forgets a batch when the next getUpdates confirms it, and PTB sends
that call as soon as it has queued the batch. An update is claimed (bot/leader.py
`UpdateLog`, a `handled_updates` row) only when its handling starts, and one chat's updates
run one after another (handlers/processor.py). So an update that waits behind its chat's
slow one (an /alert behind a /balance that waits on BitMEX) is confirmed to Telegram long
before anything of ours remembers it: a SIGKILL, or a leader cut off from the database whose
claims fail, loses it, and the user's message or press shows nothing, ever.

The inbox closes that window. The getUpdates connection (handlers/app.py `PollRequest`)
stores each fetched batch here in one INSERT before PTB sees it, and PTB advances its
offset, so confirms the batch, only after that returns: a batch is durable before Telegram
forgets it. When the store fails, PTB's polling loop retries with the same offset and
Telegram sends the batch again (a leader cut off from the database steps down meanwhile,
bot/leader.py). The webhook stores each update before answering 200.

A row goes away in the transaction that claims its update (`UpdateLog.claim_many`): the
claim is the moment its handling starts, and a row kept past that would replay an update
that already had effects. A row whose claim never came (the process died first) is read at
the next start-up (`pending`) and put back on PTB's queue before polling starts; if
Telegram also sends it again, the claim skips the second one.

The update's JSON is sealed by the vault (`Vault.seal`, bound to bot and update id): a
/connect message carries an API secret, and no secret reaches the database in the clear
(rule 9).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select

from bot.db.engine import Database
from bot.db.models import HandledUpdate, InboxUpdate
from bot.errors import VaultError
from bot.vault import Vault

log = logging.getLogger(__name__)


def _context(bot_id: int, update_id: int) -> str:
    return f"telegram-update;bot={bot_id};update={update_id}"


class UpdateInbox:
    """The fetched updates of one bot, kept until claimed (see the module docstring)."""

    def __init__(self, db: Database, vault: Vault, bot_id: int) -> None:
        self.db = db
        self.vault = vault
        self.bot_id = bot_id
        self.stored = 0  # updates stored: the tests' and the bench's measure
        self.statements = 0

    async def store(self, updates: Sequence[dict[str, Any]]) -> None:
        """Keep a fetched batch, in one statement; raises when the database does not take
        it (the caller must then not let the batch be confirmed)."""
        if not updates:
            return
        now = datetime.now(UTC)
        rows = []
        for update in updates:
            update_id = int(update["update_id"])
            raw = json.dumps(update, separators=(",", ":"), ensure_ascii=False).encode()
            rows.append({"bot_id": self.bot_id, "update_id": update_id,
                         "sealed": self.vault.seal(raw, context=_context(self.bot_id,
                                                                         update_id)),
                         "received_at": now})
        self.statements += 1
        async with self.db.session() as s:
            # One INSERT for the batch, its rows as the parameters of one executemany (on
            # PostgreSQL SQLAlchemy sends them as one multi-row statement): building a
            # VALUES clause of a hundred rows costs three times as much in Python.
            await s.exec(self._insert, params=rows)
            await s.commit()
        self.stored += len(rows)

    @property
    def _insert(self) -> Any:
        insert = pg_insert if self.db.engine.dialect.name == "postgresql" else sqlite_insert
        # A batch fetched again (the store before failed, or an instance died before
        # confirming it) is already here: the first copy stands.
        return insert(InboxUpdate).on_conflict_do_nothing()

    async def pending(self) -> list[dict[str, Any]]:
        """The stored updates never claimed, oldest first, as Telegram sent them; rows of
        updates claimed meanwhile (a copy fetched again, then handled) are deleted."""
        handled = (select(col(HandledUpdate.update_id))
                   .where(col(HandledUpdate.bot_id) == self.bot_id,
                          col(HandledUpdate.update_id) == col(InboxUpdate.update_id))
                   .exists())
        async with self.db.session() as s:
            await s.exec(delete(InboxUpdate).where(
                col(InboxUpdate.bot_id) == self.bot_id, handled))
            rows = (await s.exec(
                select(col(InboxUpdate.update_id), col(InboxUpdate.sealed))
                .where(col(InboxUpdate.bot_id) == self.bot_id)
                .order_by(col(InboxUpdate.update_id)))).all()
            await s.commit()
        out: list[dict[str, Any]] = []
        unreadable: list[int] = []
        for update_id, sealed in rows:
            try:
                data = json.loads(self.vault.open(sealed, context=_context(self.bot_id,
                                                                           update_id)))
            except (VaultError, ValueError) as e:
                # Sealed under a master key no longer configured (MASTER_KEY changed
                # without MASTER_KEY_OLD): it cannot be handled, and keeping it helps nobody.
                log.warning("dropped stored update %s: %s", update_id, e)
                unreadable.append(update_id)
                continue
            out.append(data)
        if unreadable:
            await self.forget(unreadable)
        return out

    async def forget(self, update_ids: Sequence[int]) -> None:
        async with self.db.session() as s:
            await s.exec(delete(InboxUpdate).where(
                col(InboxUpdate.bot_id) == self.bot_id,
                col(InboxUpdate.update_id).in_(list(update_ids))))
            await s.commit()

    async def count(self) -> int:
        """Rows kept now (tests, metrics)."""
        async with self.db.session() as s:
            return (await s.exec(
                select(func.count()).select_from(InboxUpdate).where(
                    col(InboxUpdate.bot_id) == self.bot_id))).one()
