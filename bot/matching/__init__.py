"""The BitMEX matching and margin engine: the simulator's exchange and paper trading's.

Pure Python, no I/O: time comes from a `Clock` the caller controls, prices from
`set_mark` (tests, paper trading's market feed) or a `PriceDriver` (sandbox). Every state
change is reported as an `Event(table, action, data, account)`, so the simulator can fan
it out on the WebSocket exactly like BitMEX does and paper trading can turn it into the
private-stream callbacks. It lives outside `bot/sandbox` because the product (paper
accounts) runs it too; it imports nothing else of the bot.

Money follows the exchange: integers in the settlement currency's smallest unit
(XBt = 1e-8 XBT, USDt = 1e-6 USDT). Position cost is kept exact (Decimal) and
only rounded when shown, so an average entry is exactly the harmonic (inverse)
or arithmetic (linear) mean of the fills.

Simplifications, documented because tests rely on them:
- The book is synthetic: a marketable order takes liquidity at ask (buy) or bid
  (sell) and, when `depth` is set for a symbol, walks further levels one tick
  apart with `depth` contracts each. Resting limits fill at their own price when
  the opposite quote reaches them, at most `depth` per price update.
- Cross margin liquidation price: the position is backed by the wallet balance
  minus the margin reserved for open orders and the other positions of the same
  currency (unrealised PnL of other positions is ignored), turned into an
  effective initial-margin rate for the isolated formulas.
- availableMargin = marginBalance - position margin - open-order margin.

`Engine` is built in layers, one module per concern, each class extending the one below
(so every call goes down the stack, never up):

    state        EngineState   the books, the event stream, accounts and lookups
    market       Market        instruments listed, prices and quotes, trades, candles
    margin       Margin        order and position margin, the margin and wallet rows
    positions    Positions     fills applied to positions, entry, liquidation price, leverage
    book         Book          matching against the synthetic book, stops, fills, executions
    orders       Orders        place / amend / cancel as BitMEX validates them, dead-man
    liquidation  Liquidations  bankrupt positions closed, the public liquidation feed
    clockwork    Clockwork     what `set_mark` and the clock's `tick` set off (funding, expiry)
    engine       Engine        all of it started, saved and restored

beside `terms` (fees, order types, units), `clock`, `instruments`, `records` (the
dataclasses), `driver` (the sandbox's random walk) and `snapshot` (loading a saved engine).
"""

from bot.matching.clock import Clock
from bot.matching.driver import PriceDriver
from bot.matching.engine import Engine
from bot.matching.instruments import Instrument, default_instruments, next_funding
from bot.matching.records import Account, Event, Order, Position, PricePoint
from bot.matching.terms import ASSETS, OPEN_STATUSES, EngineError, Row, iso

__all__ = [
    "ASSETS",
    "OPEN_STATUSES",
    "Account",
    "Clock",
    "Engine",
    "EngineError",
    "Event",
    "Instrument",
    "Order",
    "Position",
    "PriceDriver",
    "PricePoint",
    "Row",
    "default_instruments",
    "iso",
    "next_funding",
]
