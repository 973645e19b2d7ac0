"""The live-updates cursor: what counts as a fill not yet told after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.exchange.types import Execution
from bot.live import CURSOR_IDS, Cursor

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill(exec_id: str, at: datetime | None) -> Execution:
    return Execution.from_row({"execID": exec_id, "execType": "Trade", "lastQty": 100,
                               "timestamp": at.isoformat() if at else None})


def test_an_empty_cursor_takes_everything() -> None:
    c = Cursor()
    assert c.is_new(fill("a", T0)) and c.is_new(fill("b", None))


def test_same_millisecond_fills_are_told_apart_by_id() -> None:
    c = Cursor()
    assert c.advance(fill("a", T0))
    assert c.advance(fill("b", T0))
    assert not c.advance(fill("a", T0))  # already there
    assert not c.is_new(fill("a", T0)) and not c.is_new(fill("b", T0))
    assert c.is_new(fill("c", T0))
    assert c.is_new(fill("d", T0 + timedelta(milliseconds=1)))
    assert not c.is_new(fill("e", T0 - timedelta(milliseconds=1)))


def test_the_cursor_never_moves_back() -> None:
    c = Cursor()
    c.advance(fill("new", T0 + timedelta(seconds=5)))
    assert not c.advance(fill("old", T0))
    assert c.at == T0 + timedelta(seconds=5) and c.ids == ["new"]
    assert not c.advance(fill("undated", None))


def test_ids_at_one_instant_are_bounded() -> None:
    c = Cursor()
    for i in range(CURSOR_IDS + 10):
        c.advance(fill(str(i), T0))
    assert len(c.ids) == CURSOR_IDS and c.ids[-1] == str(CURSOR_IDS + 9)
