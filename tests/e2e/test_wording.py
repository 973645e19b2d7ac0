"""What a new trader reads: numbers in one precision, no noise, and a next step."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from tests.e2e.harness import Harness


@pytest.fixture(autouse=True)
def steady_market(h: Harness) -> None:
    h.sim.engine.set_spread("XBTUSD", Decimal(0))
    h.sim.engine.set_mark("XBTUSD", Decimal(50000))


async def test_first_words_in_private_get_a_pointer(h: Harness) -> None:
    newbie = h.person("Newbie")
    await newbie.send("hi")
    assert len(newbie.bot_texts) == 1
    assert "/help" in newbie.last_text and "buy 100 btc" in newbie.last_text


async def test_rounding_note_only_when_the_size_really_changed(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    await alice.send("/buy 0.01btc")  # 500.00 USD at 50,000: 500 contracts exactly
    assert "BUY 500 XBTUSD" in alice.last_text
    assert "Rounded" not in alice.last_text, alice.last_text
    await alice.send("/buy $550")  # 550 → 500 (lot 100) is a real change, said once
    assert "Rounded: size 550 → 500 contracts (lot 100)" in alice.last_text


async def test_partial_close_says_how_the_percentage_was_rounded(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    card = await alice.send("/buy 300 btc")
    await alice.press("✅ Confirm", card)
    await alice.send("/close 50%")
    text = alice.last_text
    assert text.startswith("CLOSE 100 of 300 XBTUSD long")
    assert "Rounded: size 150 → 100 contracts (lot 100)" in text
    await alice.send("/close")
    assert "Rounded" not in alice.last_text


async def test_orders_and_cancel_cards_read_like_the_preview(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    for text in ("/sell 100 btc stop 45000", "/sell 200 btc stop 45000 @ 44900",
                 "/buy 100 btc @ 40000 post"):
        card = await alice.send(text)
        await alice.press("✅ Confirm", card)
    await alice.send("/orders")
    listing = alice.last_text
    assert "Sell 100 XBTUSD Stop 45,000.0 ·" in listing
    assert "Sell 200 XBTUSD Stop 45,000.0 → Limit 44,900.0 ·" in listing
    assert "Buy 100 XBTUSD Limit 40,000.0 · post-only ·" in listing
    assert "stop stop" not in listing.lower() and "@ 45,000 " not in listing
    await alice.send("/cancel all")
    assert alice.last_text.startswith("CANCEL all 3 open orders · testnet")
    card = alice.find_button("✅ Confirm")
    await alice.press("✅ Confirm", card)
    assert "Cancelled 3 orders." in (card.content or "")
    assert "(s)" not in (card.content or "")


async def test_reduce_only_without_a_position_warns(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    await alice.send("/buy 100 btc reduce")
    assert "no short XBTUSD position" in alice.last_text
    card = await alice.send("/buy 100 btc")
    await alice.press("✅ Confirm", card)
    await alice.send("/sell 100 btc reduce")
    assert "no long" not in alice.last_text


async def test_alert_echo_uses_the_tick_precision_from_the_first_alert(h: Harness) -> None:
    bob = h.person("Bob")
    await bob.send("/alert btc above 60000 breakout")
    assert "#1 XBTUSD above 60,000.0 · breakout" in bob.last_text
    await bob.send("/alerts")
    assert "#1 XBTUSD above 60,000.0 · breakout" in bob.last_text


async def test_settings_and_tz_words(h: Harness) -> None:
    carol = h.person("Carol")
    await carol.send("/settings")
    quiet = next(line for line in carol.last_text.splitlines() if line.startswith("quiet:"))
    assert quiet == "quiet: off (UTC)"  # nothing "arrives silently" while quiet hours are off
    await carol.send("/settings quiet 23:00-07:00")
    await carol.send("/settings")
    assert "messages arrive silently then" in carol.last_text
    await carol.send("/tz Mars/Base")
    assert "Europe/Berlin" in carol.last_text and "UTC+3" in carol.last_text


async def test_chart_caption_prices_like_price_does(h: Harness) -> None:
    bob = h.person("Bob")
    engine = h.sim.engine
    for i in range(10):
        engine.set_mark("ETHUSD", Decimal("3000.10") + i, trade_size=10)
        engine.clock.advance(60)
    await bob.send("/chart eth 1m 10")
    caption = bob.last.content or ""
    # ETHUSD ticks 0.05: two decimals, as /price shows it; the change signed like the rest
    assert re.search(r"close \d,\d{3}\.\d{2} · [+−]?\d+\.\d{2} % over the chart", caption), caption
