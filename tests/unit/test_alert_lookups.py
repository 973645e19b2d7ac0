"""A chat's alerts are found through an index, not by walking every alert.

bench/capacity.py (100,000 alerts) found /alerts reading every active alert of every chat
to list one chat's ten. The statement the alert service really sends for /alerts is captured
and its SQLite query plan checked: it must search the index on the chat.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

from bot.alerts.service import AlertService
from bot.db.engine import Database
from bot.db.models import Alert, User


async def test_a_chats_alerts_are_searched_by_chat(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.migrate()
    async with db.session() as s:
        await s.exec(insert(User), params=[{"id": uid} for uid in (1, 2)])  # type: ignore[call-overload]
        await s.exec(insert(Alert), params=[  # type: ignore[call-overload]
            {"user_id": 1 + i % 2, "chat_id": 1 + i % 2, "kind": "price", "symbol": "XBTUSD",
             "direction": "above", "threshold": Decimal(70000 + i)} for i in range(200)])
        await s.commit()
    sent: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        if "FROM alerts" in statement and "chat_id" in statement:
            sent.append((statement, params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)

    svc = AlertService(db, lambda: None)
    listed = await svc.for_chat(2)
    assert len(listed) == 100 and {a.chat_id for a in listed} == {2}
    await db.dispose()

    assert sent, "the alert service sent no per-chat query"
    conn = sqlite3.connect(path)
    for statement, params in sent:
        plan = " ".join(str(row[3]) for row in conn.execute(
            "EXPLAIN QUERY PLAN " + statement, params))
        assert "ix_alerts_chat_state" in plan, (statement, plan)
    conn.close()
