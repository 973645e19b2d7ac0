"""A getUpdates batch is claimed in one statement (bot/leader.py `UpdateLog`), through the
real PTB application and its update processor, and every update of it is still answered.

`python -m bot run` attaches the log in handlers/app.py's post_init; the sandbox runner does
not, so this test attaches one itself before the batch arrives.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlmodel import col, select

from bot.db.models import HandledUpdate
from bot.leader import UpdateLog, bot_id_of
from tests.e2e.harness import Harness


async def test_a_batch_of_updates_from_many_chats_is_claimed_in_one_statement(
        h: Harness) -> None:
    log = UpdateLog(h.svc.db, bot_id_of(h.token))
    h.app.bot_data.update_log = log
    claims: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "INSERT INTO HANDLED_UPDATES" in statement.upper():  # on PostgreSQL after a WITH
            claims.append(statement)

    event.listen(h.svc.db.engine.sync_engine, "before_cursor_execute", count)
    people = [h.person(f"Batch{i}") for i in range(8)]
    queued = []
    for p in people:  # all queued before the bot polls: they arrive as one batch
        h.emu.send_text(p.user, p.chat, "/help", bot=h.bot_username)
        queued.append(h.emu.pending_updates(h.bot_username)[-1]["update_id"])
    await h.settle()
    for p in people:
        assert "/price" in p.last_text, p.transcript  # /help answered, in every chat
    assert len(claims) == 1 and log.skipped == 0
    async with h.svc.db.session() as s:
        rows = (await s.exec(select(HandledUpdate.update_id).where(
            col(HandledUpdate.bot_id) == bot_id_of(h.token)))).all()
    assert sorted(rows) == sorted(queued)

    # One chat's next update waits for nothing: alone, it is claimed at once.
    await people[0].send("/help")
    assert len(claims) == 2 and "/price" in people[0].last_text
