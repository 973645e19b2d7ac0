"""Preview -> confirm -> place, exactly once.

A typed command becomes an `OrderCard` row (a *card*) holding exactly what will
be sent. Only the owner's Confirm press moves it, by one atomic UPDATE, from
`pending` to `confirmed`; whoever wins that UPDATE places the order, everyone else
(double press, concurrent press, a press after a restart or after expiry) sees the
current state. The clOrdID is stored with the card before anything is sent, and
with it `send_by`, the last moment any attempt can still reach BitMEX. BitMEX frees a
clOrdID once its order filled, so an order whose answer was lost is never sent again:
it is looked up by its clOrdID - by the client, or after a crash by the sweep - and
only called "not placed" once `send_by` (plus a margin) is behind us.

The stages live in their own modules: `cards` (the row, its states, its look, the atomic
claim), `preview` (sizing and checks), `confirm` (presses), `place` (sending and settling
what was left in flight), `exits` (a filled entry's TP/SL); `service.Trading` puts them
together.
"""

from bot.trading.cards import (
    ARMED,
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    FAILED,
    PENDING,
    PLACED,
    SETTLED,
    WAITING,
    Card,
    Plan,
    Press,
    plain_reason,
)
from bot.trading.exits import exit_cl_ord_id, split_qty
from bot.trading.place import (
    ARRIVAL_MARGIN,
    NOT_PLACED_NOTE,
    SEND_WINDOW,
    SETTLE_AFTER,
    UNKNOWN_DONE,
    UNKNOWN_NOTE,
    repair_cards,
    settle_cards,
)
from bot.trading.preview import DEFAULT_LEVERAGE
from bot.trading.service import Trading

__all__ = [
    "ARMED", "ARRIVAL_MARGIN", "CANCELLED", "CONFIRMED", "DEFAULT_LEVERAGE",
    "EXPIRED", "FAILED", "NOT_PLACED_NOTE", "PENDING", "PLACED", "SEND_WINDOW", "SETTLED",
    "SETTLE_AFTER", "UNKNOWN_DONE", "UNKNOWN_NOTE", "WAITING", "Card", "Plan", "Press",
    "Trading", "exit_cl_ord_id", "plain_reason", "repair_cards",
    "settle_cards", "split_qty",
]
