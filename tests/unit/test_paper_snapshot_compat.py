"""Paper accounts saved before the engine moved out of the simulator still load (issue #12).

`tests/fixtures/paper-engine-before-12.pickle` was written by the old code
(`bot/sandbox/bitmex/engine.py`, pickled as `save_paper_engine` does): one paper account
with a long XBTUSD (1000 at 60000.1), a short XBTUSDT at 10x (1000 at 49999.9) and a
resting XBTUSD limit sell (clOrdID `tg-resting`).
"""

from __future__ import annotations

import pickle
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import Settings
from bot.exchange.paper import PaperExchange
from bot.matching import Engine
from bot.paper_accounts import load_paper_engine, paper_path

OLD = Path(__file__).parent.parent / "fixtures" / "paper-engine-before-12.pickle"


def restored(tmp_path: Path) -> Engine:
    path = tmp_path / "paper.pickle"
    shutil.copy(OLD, path)
    path.chmod(0o600)
    settings = Settings(_env_file=None, DATABASE_URL="sqlite+aiosqlite:///:memory:",
                        PAPER_STATE_FILE=str(path))
    engine = load_paper_engine(paper_path(settings))
    assert isinstance(engine, Engine)
    return engine


def test_the_fixture_names_the_old_module() -> None:
    # Without the mapping in bot.matching.snapshot this file cannot be loaded at all.
    with pytest.raises(ModuleNotFoundError, match=r"bot\.sandbox\.bitmex\.engine"):
        pickle.loads(OLD.read_bytes())


def test_an_old_snapshot_keeps_its_accounts_positions_and_orders(tmp_path: Path) -> None:
    engine = restored(tmp_path)
    acct = engine.account_by_key("paper-42")
    assert acct is not None
    assert acct.wallet == {"XBt": 99998750, "USDt": 9999962500, "BMEx": 0}
    positions = {r["symbol"]: r for r in engine.position_rows(acct.id) if r["currentQty"]}
    assert {s: (r["currentQty"], r["avgEntryPrice"]) for s, r in positions.items()} == {
        "XBTUSD": (1000, Decimal("60000.1")), "XBTUSDT": (-1000, Decimal("49999.9")),
    }
    assert positions["XBTUSDT"]["leverage"] == 10
    assert [o["clOrdID"] for o in engine.open_order_rows(acct.id)] == ["tg-resting"]


def test_an_old_snapshot_trades_on(tmp_path: Path) -> None:
    engine = restored(tmp_path)
    paper = PaperExchange(engine, name="paper-42")  # the user's account, not a new one
    acct = engine.account_by_key("paper-42")
    assert acct is not None and paper.account.id == acct.id
    engine.set_mark("XBTUSD", Decimal(70001))  # the bid reaches the resting sell
    xbtusd = [r for r in engine.position_rows(acct.id) if r["symbol"] == "XBTUSD"]
    assert xbtusd[0]["currentQty"] == 500
    assert engine.open_order_rows(acct.id) == []
    engine.clock.advance(8 * 3600)  # the restored clock ticks: funding is charged
    assert engine.fundings
