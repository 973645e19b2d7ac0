"""The trading service: every stage of a card, from preview to settlement, on one object."""

from __future__ import annotations

from bot.trading.confirm import Presses
from bot.trading.panic import PanicCards
from bot.trading.preview import Previews
from bot.trading.stops import StopPreviews


class Trading(Previews, StopPreviews, Presses, PanicCards):
    """Preview -> confirm -> place, exactly once (see the package docstring).

    The stages build on each other (cards <- exits <- place <- confirm; cards <- preview),
    each in its own module; this class only puts them together."""
