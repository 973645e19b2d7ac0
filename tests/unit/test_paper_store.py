"""Paper accounts on disk: a snapshot round-trips; a broken one is ignored, not fatal."""

from __future__ import annotations

import pickle
from decimal import Decimal
from pathlib import Path

from bot.config import Settings
from bot.paper_accounts import load_paper_engine, paper_path
from bot.sandbox.bitmex import Clock, Engine


def settings(tmp: Path) -> Settings:
    return Settings(_env_file=None, DATABASE_URL=f"sqlite+aiosqlite:///{tmp / 'bot.db'}")


def test_snapshot_round_trip_keeps_accounts_and_drops_history(tmp_path: Path) -> None:
    engine = Engine(Clock(follow_wall=True))
    acc = engine.add_account("paper-7", "s", xbt=1)
    engine.set_mark("XBTUSD", Decimal(60000))
    engine.place_order(acc.id, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                "ordType": "Market"})
    path = paper_path(settings(tmp_path))
    assert path is not None and path.name == "bot-paper.pickle"
    path.write_bytes(pickle.dumps(engine))
    back = load_paper_engine(paper_path(settings(tmp_path)))
    assert back is not None
    restored = back.account_by_key("paper-7")
    assert restored is not None and restored.id == acc.id
    assert [r["currentQty"] for r in back.position_rows(acc.id)] == [100]
    assert all(len(h) == 0 for h in back.history.values())
    # ticking still works after a restore (the clock listener was re-registered)
    back.clock.advance(1)


def test_corrupt_snapshot_starts_fresh(tmp_path: Path) -> None:
    path = paper_path(settings(tmp_path))
    assert path is not None
    path.write_bytes(b"not a pickle")
    assert load_paper_engine(paper_path(settings(tmp_path))) is None


def test_paper_accounts_have_a_home_on_postgresql_too(tmp_path: Path) -> None:
    pg = "postgresql+asyncpg://bot@127.0.0.1:5432/bot"
    assert paper_path(Settings(_env_file=None, DATABASE_URL=pg)) == Path("data/bot-paper.pickle")
    chosen = tmp_path / "keep" / "paper.pickle"
    assert paper_path(Settings(_env_file=None, DATABASE_URL=pg,
                               PAPER_STATE_FILE=str(chosen))) == chosen
    assert paper_path(Settings(_env_file=None, DATABASE_URL="sqlite+aiosqlite:///:memory:")) is None
