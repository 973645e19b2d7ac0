"""The side of an order, one type for the whole bot.

BitMEX's own words ("Buy", "Sell"), so what the parser returns is what the exchange is
sent and what it reports back, with no conversion in between. The chat's words (buy,
sell, long, short) become a `Side` in the parser and nowhere else. A signal's long/short
is another thing (the direction of a position it calls for) and keeps its own words.
A leaf module: the parser may not import the exchange layer, nor the exchange the parser.
"""

from __future__ import annotations

from typing import Literal

Side = Literal["Buy", "Sell"]


def opposite(side: Side) -> Side:
    """The side that closes what `side` opens (a long's exits sell)."""
    return "Sell" if side == "Buy" else "Buy"
