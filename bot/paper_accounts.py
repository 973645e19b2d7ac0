"""Paper accounts: every user's paper exchange on one shared engine, priced from mainnet's
shared socket and kept on disk between runs."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.exchange.paper import PaperExchange
from bot.exchange.types import Exchange, Instrument
from bot.market import MarketHub
from bot.matching.snapshot import load_engine

log = logging.getLogger(__name__)


def paper_path(settings: Settings) -> Path | None:
    """Where paper accounts are kept between runs: PAPER_STATE_FILE, else beside the SQLite
    file, else (a server database has no folder of ours) ./data/bot-paper.pickle."""
    if settings.PAPER_STATE_FILE:
        return Path(settings.PAPER_STATE_FILE)
    db = settings.database_path
    if db is not None:
        return db.with_name(db.stem + "-paper.pickle")
    if settings.DATABASE_URL.startswith("postgresql"):
        return Path("data") / "bot-paper.pickle"
    return None


def load_paper_engine(path: Path | None) -> Any:
    """The paper engine saved by the last run, or None (a fresh one is made)."""
    if path is None or not path.exists():
        return None
    try:
        # Unpickling runs code, so only a file this process's user wrote and nobody else can
        # change is loaded (written 0600 below); anything else is ignored, not trusted.
        st = path.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            log.warning("paper accounts not restored: %s is writable by others or not ours "
                        "(chmod 600 it, or delete it); starting fresh", path)
            return None
        with path.open("rb") as f:
            return load_engine(f)  # also a snapshot older versions wrote
    except Exception:  # a corrupt or incompatible snapshot must not stop the bot
        log.exception("paper accounts could not be restored from %s; starting fresh", path)
        return None


async def save_paper_engine(engine: Any, path: Path | None) -> bool:
    """Write the paper accounts to disk (atomically); False when there are none."""
    if engine is None or path is None:
        return False
    # Snapshot on the event loop (nothing mutates it meanwhile), write in a thread.
    data = pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL)

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)  # ./data on a PostgreSQL install
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # an older tmp file may have been created wider
            f.write(data)
        os.replace(tmp, path)

    await asyncio.to_thread(write)
    return True


class PaperAccounts:
    """Makes each user's paper exchange. The engine is loaded (or made) on first use, so a
    bot nobody paper-trades on reads no snapshot and watches no extra symbols."""

    def __init__(self, path: Path | None, hub: MarketHub) -> None:
        self.path = path
        self.hub = hub
        self.engine: Any = None  # the shared engine, once a paper account was made
        self._watch: asyncio.Task[None] | None = None

    def exchange(self, user_id: int) -> Exchange:
        if self.engine is None:
            ex = PaperExchange(load_paper_engine(self.path), name=f"paper-{user_id}")
            self.engine = ex.engine  # every paper account shares one engine (one price feed)
            self._price_from_mainnet()
            return ex
        return PaperExchange(self.engine, name=f"paper-{user_id}")

    async def save(self) -> bool:
        """Write the paper accounts to disk; False when there are none."""
        return await save_paper_engine(self.engine, self.path)

    def _price_from_mainnet(self) -> None:
        """Paper accounts trade at mainnet's prices: the shared socket's ticks move the engine."""
        hub, engine = self.hub, self.engine
        symbols = [s for s in engine.instruments]

        async def tick(network: str, inst: Instrument) -> None:
            price = inst.mark_price or inst.last_price
            if network == "mainnet" and inst.symbol in engine.instruments and price:
                engine.set_mark(inst.symbol, price)

        hub.on_tick(tick)
        for symbol in symbols:  # start from today's price, not the engine's default
            live = hub.instrument("mainnet", symbol)
            if live is not None and (live.mark_price or live.last_price):
                engine.set_mark(symbol, live.mark_price or live.last_price)
        # Keep a reference so the task is not collected.
        self._watch = asyncio.get_running_loop().create_task(hub.watch("mainnet", *symbols))
