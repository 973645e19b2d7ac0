"""The sandbox's price feed: a seedable random walk."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from decimal import Decimal

from bot.matching.engine import Engine


class PriceDriver:
    """Seedable random walk of every instrument, with occasional market liquidations.

    `step()` is synchronous for tests; `run()` is the sandbox's background loop.
    Floats are only the random source; prices become Decimal on the tick grid.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        symbols: Iterable[str] | None = None,
        volatility: float = 0.0005,
        interval: float = 1.0,
        seed: int | None = None,
        liquidation_chance: float = 0.05,
    ) -> None:
        self.engine = engine
        self.symbols = list(symbols or engine.instruments)
        self.volatility = volatility
        self.interval = interval
        self.liquidation_chance = liquidation_chance
        self.rng = random.Random(seed)
        self._running = False

    def step(self) -> None:
        for symbol in self.symbols:
            inst = self.engine.instruments[symbol]
            if not inst.tradeable:
                continue  # a settled future's price is final
            move = Decimal(str(round(self.rng.gauss(0.0, self.volatility), 8)))
            price = min(inst.mark * (1 + move), inst.max_price)
            size = self.rng.randint(1, 50) * inst.lot_size
            self.engine.set_mark(symbol, price, trade_size=size)
            # Only margined contracts are liquidated; a spot pair has no positions to lose.
            if inst.settl and self.rng.random() < self.liquidation_chance:
                side = self.rng.choice(("Buy", "Sell"))
                qty = self.rng.randint(1, 200) * inst.lot_size
                self.engine.liquidate_market(symbol, side, qty, inst.mark)

    async def run(self) -> None:
        self._running = True
        while self._running:
            self.step()
            self.engine.tick()
            await asyncio.sleep(self.interval)

    def stop(self) -> None:
        self._running = False
