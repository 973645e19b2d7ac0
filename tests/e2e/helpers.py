"""What several conversation tests read or do the same way: the simulator's books for a
key, pressing a card's Confirm, and the check that no traceback reached the chat."""

from __future__ import annotations

from typing import Any

from tests.e2e.harness import Harness, Person


def open_orders(h: Harness, key: str) -> list[dict[str, Any]]:
    """The key's open orders as the simulator holds them."""
    return h.sim.engine.open_order_rows(h.sim.account(key).id)


def all_orders(h: Harness, key: str) -> list[dict[str, Any]]:
    """Every order of the key, open or not."""
    return h.sim.engine.order_rows(h.sim.account(key).id)


def position_qty(h: Harness, key: str, symbol: str = "XBTUSD") -> int:
    """The key's position in `symbol` (0 when flat)."""
    for row in h.sim.engine.position_rows(h.sim.account(key).id):
        if row["symbol"] == symbol:
            return int(row["currentQty"])
    return 0


async def confirm_last_card(p: Person) -> str:
    """Press ✅ Confirm on the newest card that has it; the card's text afterwards."""
    card = p.find_button("✅ Confirm")
    await p.press("✅ Confirm", card)
    if p.key is not None and "Filled" in (card.content or ""):
        # The fill's notice follows over the stream: told before the test reads on.
        await p.h.fills_told(p, p.key)
    return card.content or ""


def no_traceback(p: Person) -> None:
    assert "Traceback" not in p.transcript and "went wrong" not in p.transcript, p.transcript
