"""The paper account: no key, simulated balances, priced from mainnet's public stream."""

from __future__ import annotations

from decimal import Decimal

from tests.e2e.harness import Harness


async def test_paper_account_trades_at_mainnet_prices(h: Harness) -> None:
    h.sim.engine.set_spread("XBTUSD", Decimal(0))
    h.sim.engine.set_mark("XBTUSD", Decimal(61234))
    alice = h.person("Alice")
    await alice.send("/connect paper")
    assert "Connected paper" in alice.last_text and "1.00000 XBT" in alice.last_text
    hub = h.svc.market_hub
    assert hub is not None
    await hub.wait_ready("mainnet")
    await h.emu.wait_for(lambda: hub.instrument("mainnet", "XBTUSD") is not None, timeout=5)
    paper = await h.svc.accounts.exchange(alice.id, "paper")
    await h.emu.wait_for(
        lambda: paper.engine.instrument("XBTUSD").mark == Decimal(61234), timeout=5)  # type: ignore[attr-defined]

    card = await alice.send("/buy 100 btc")
    assert card is not None
    assert "· paper" in (card.content or "") and "61,234" in (card.content or "")
    await alice.press("✅ Confirm", card)
    assert "Filled" in (card.content or "")

    # mainnet moves, the paper position follows
    h.sim.engine.set_mark("XBTUSD", Decimal(62000))
    await h.emu.wait_for(
        lambda: paper.engine.instrument("XBTUSD").mark == Decimal(62000), timeout=5)  # type: ignore[attr-defined]
    await alice.send("/positions")
    assert "XBTUSD Long 100" in alice.last_text and "mark 62,000" in alice.last_text
    # and nothing reached the real (simulated) exchange's accounts
    await alice.send("/balance")
    assert "Balance · paper" in alice.last_text


async def test_paper_account_survives_a_restart(h: Harness) -> None:
    h.sim.engine.set_mark("XBTUSD", Decimal(61000))
    alice = h.person("Alice")
    await alice.send("/connect paper")
    card = await alice.send("/buy 100 btc @ 50000")  # a resting order too
    assert card is not None
    await alice.press("✅ Confirm", card)
    card = await alice.send("/buy 200 btc")
    assert card is not None
    await alice.press("✅ Confirm", card)
    assert "Filled" in (card.content or "")
    await h.restart()
    await alice.send("/positions")
    assert "XBTUSD Long 200" in alice.last_text
    await alice.send("/orders")
    assert "Buy 100 XBTUSD Limit 50,000.0" in alice.last_text
    await alice.send("/pnl 1d")  # the fill history came back too
    assert "fills 1" in (alice.last.content or "")
