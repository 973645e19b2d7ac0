"""The update inbox's rows (bot/inbox.py): sealed, bound to their update, taken by the claim
in its own transaction, and the ones left by a dead process read back oldest first. SQLite,
or PostgreSQL with TEST_DATABASE_URL. Through the real application: tests/e2e/test_inbox.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text, update
from sqlmodel import col

from bot.db.engine import Database
from bot.db.models import InboxUpdate
from bot.inbox import UpdateInbox
from bot.leader import UpdateLog
from bot.vault import Vault, generate_key
from tests.dbs import test_database_url

BOT = 4242
SECRET = "Zq8xSecretNeverInTheClear4c2Vb9MnKeep0ut"


def vault() -> Vault:
    import base64

    return Vault(base64.urlsafe_b64decode(generate_key()))


def message(update_id: int, text_: str) -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 1764700000, "text": text_,
        "chat": {"id": 77, "type": "private", "first_name": "Ann"},
        "from": {"id": 77, "is_bot": False, "first_name": "Ann"}}}


def file_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.glob("bot.db*")))


async def test_a_stored_update_is_sealed_and_comes_back_as_telegram_sent_it(
        tmp_path: Path) -> None:
    db = Database(test_database_url(tmp_path))
    await db.migrate()
    try:
        inbox = UpdateInbox(db, vault(), BOT)
        connect = message(10, f"/connect testnet AbCdEfGhIjKlMnOpQrStUvWx {SECRET}")
        await inbox.store([connect, message(11, "/help")])
        async with db.session() as s:
            rows = (await s.exec(text("SELECT update_id, sealed FROM update_inbox "
                                      "ORDER BY update_id"))).all()  # type: ignore[call-overload]
        assert [r[0] for r in rows] == [10, 11]
        assert all(SECRET.encode() not in bytes(r[1]) and b"/help" not in bytes(r[1])
                   for r in rows)
        if db.engine.dialect.name == "sqlite":
            assert SECRET.encode() not in file_bytes(tmp_path)  # the file, its WAL
        assert await inbox.pending() == [connect, message(11, "/help")]
    finally:
        await db.dispose()


async def test_a_sealed_update_moved_to_another_row_does_not_open(tmp_path: Path) -> None:
    db = Database(test_database_url(tmp_path))
    await db.migrate()
    try:
        inbox = UpdateInbox(db, vault(), BOT)
        await inbox.store([message(20, "/help"), message(21, "/price")])
        async with db.session() as s:
            sealed = (await s.get(InboxUpdate, (BOT, 20)))
            assert sealed is not None
            await s.exec(update(InboxUpdate).where(
                col(InboxUpdate.update_id) == 21).values(sealed=sealed.sealed))
            await s.commit()
        # 21 now holds 20's blob: it cannot be passed off as 21, and is dropped.
        assert await inbox.pending() == [message(20, "/help")]
        assert await inbox.count() == 1
        # Another master key opens nothing either.
        assert await UpdateInbox(db, vault(), BOT).pending() == []
    finally:
        await db.dispose()


async def test_the_claim_takes_the_inbox_rows_with_it_repeats_included(tmp_path: Path) -> None:
    db = Database(test_database_url(tmp_path))
    await db.migrate()
    try:
        inbox, log = UpdateInbox(db, vault(), BOT), UpdateLog(db, BOT)
        other = UpdateInbox(db, inbox.vault, BOT + 1)
        await inbox.store([message(i, "/help") for i in (5, 6, 7)])
        await other.store([message(5, "/help")])  # another bot's update 5
        assert await log.claim_many([5, 6]) == {5, 6}
        assert [u["update_id"] for u in await inbox.pending()] == [7]
        assert await other.count() == 1
        # Fetched again after its claim (Telegram never heard it confirmed): kept, then
        # the repeat's claim takes the row as well.
        await inbox.store([message(5, "/help")])
        assert await log.claim(5) is False
        assert await inbox.count() == 1  # 7 only
        # A row whose update was claimed while it was stored again is not replayed.
        await inbox.store([message(6, "/help")])
        assert [u["update_id"] for u in await inbox.pending()] == [7]
        assert await inbox.count() == 1
    finally:
        await db.dispose()


async def test_a_batch_stored_twice_keeps_its_first_copy_and_old_rows_are_pruned(
        tmp_path: Path) -> None:
    db = Database(test_database_url(tmp_path))
    await db.migrate()
    try:
        inbox, log = UpdateInbox(db, vault(), BOT), UpdateLog(db, BOT)
        await inbox.store([message(30, "/help"), message(31, "/price")])
        await inbox.store([message(31, "/price"), message(32, "/start")])
        assert inbox.statements == 2
        assert [u["update_id"] for u in await inbox.pending()] == [30, 31, 32]
        async with db.session() as s:
            await s.exec(update(InboxUpdate).where(
                col(InboxUpdate.update_id) == 30).values(
                received_at=datetime.now(UTC) - timedelta(days=2)))
            await s.commit()
        await log.prune(datetime.now(UTC) - timedelta(hours=25))
        assert [u["update_id"] for u in await inbox.pending()] == [31, 32]
    finally:
        await db.dispose()
