"""How many contracts a follower's preview is sized at, from their sizing rule."""

from __future__ import annotations

import logging
from decimal import ROUND_DOWN, Decimal

from bot.db.models import Follow
from bot.exchange import contracts
from bot.exchange.types import Instrument

log = logging.getLogger(__name__)

ZERO = Decimal(0)


# --- sizing ---------------------------------------------------------------------------


def size_contracts(inst: Instrument, follow: Follow, entry: Decimal, sl: Decimal,
                   available_units: int, xbt_usd: Decimal | None = None) -> Decimal:
    """Contracts for one signal, by the member's follow settings (unrounded).

    risk: the loss at the stop is `value`% of the available margin, so the size comes
    from the entry-to-stop distance; `max_usd` caps the notional.
    """
    if follow.mode == "contracts":
        return follow.value
    if follow.mode == "usd":
        return contracts.contracts_for_usd(inst, follow.value, entry, xbt_usd=xbt_usd)
    loss_per_contract = abs(contracts.pnl(inst.kind, Decimal(1), entry, sl, inst.multiplier))
    if loss_per_contract == 0 or available_units <= 0:
        return ZERO
    qty = Decimal(available_units) * follow.value / 100 / loss_per_contract
    if follow.max_usd is not None:
        qty = min(qty, contracts.contracts_for_usd(inst, follow.max_usd, entry, xbt_usd=xbt_usd))
    return qty


def whole_lots(inst: Instrument, qty: Decimal) -> Decimal:
    lots = (qty / inst.lot_size).to_integral_value(rounding=ROUND_DOWN)
    return lots * inst.lot_size
