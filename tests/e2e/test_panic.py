"""/panic (issue #14 item 6) as conversations: one card, one Confirm, everything of the
active account closed with qty-less Close orders (so it works while BitMEX sheds load)
and every open order cancelled, reported per symbol; bad and stale presses change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.e2e.harness import Harness, Person
from tests.e2e.helpers import all_orders, confirm_last_card, open_orders, position_qty


@pytest.fixture(autouse=True)
def steady_market(h: Harness) -> Iterator[None]:
    h.sim.engine.set_spread("XBTUSD", Decimal(0))
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    yield
    h.sim.faults.clear()


async def long_with_orders(h: Harness, name: str = "Alice") -> tuple[Person, str]:
    """A long XBTUSD position, a resting limit buy and a reduce-only stop."""
    p, key = await h.connected(name)
    await p.send("/buy 200 xbtusd")
    await p.press("✅ Confirm")
    await p.send("/buy 100 btc @ 50k")
    await p.press("✅ Confirm")
    await p.send("/sell 200 btc stop 55000 reduce")
    await p.press("✅ Confirm")
    assert position_qty(h, key) == 200 and len(open_orders(h, key)) == 2, p.transcript
    return p, key


async def test_panic_closes_and_cancels_while_bitmex_sheds_load(h: Harness) -> None:
    alice, key = await long_with_orders(h)
    h.sim.faults.load_shedding = True
    await alice.send("/panic")
    card = alice.last
    text = card.content or ""
    assert text.startswith("🚨 PANIC · testnet"), text
    assert "Close XBTUSD long 200 at market" in text
    assert "Cancel all 2 open orders (XBTUSD 2)" in text
    assert "Dead-man's switch: left as it is" in text
    # a preview changes nothing
    assert position_qty(h, key) == 200 and len(open_orders(h, key)) == 2
    await alice.press("🚨 Confirm panic", card)
    text = card.content or ""
    assert "Panic done" in text and "XBTUSD: ✅ long 200 closed @ 60,000" in text, text
    assert "2 orders cancelled" in text and card.buttons == []
    assert position_qty(h, key) == 0 and open_orders(h, key) == []
    [close] = [o for o in all_orders(h, key) if "Close" in (o.get("execInst") or "")]
    assert close["ordType"] == "Market" and close["side"] == "Sell"


async def test_a_second_press_does_nothing_twice(h: Harness) -> None:
    alice, key = await long_with_orders(h)
    await alice.send("/panic")
    card = alice.last
    # two presses in flight at once (a double tap): one claim wins, one Close order goes out
    q1 = h.emu.press(alice.user, card, "🚨 Confirm panic", bot=h.bot_username)
    q2 = h.emu.press(alice.user, card, "🚨 Confirm panic", bot=h.bot_username)
    await h.settle()
    answers = [h.emu.answers(q1), h.emu.answers(q2)]
    assert any("Already handled" in str(a) for a in answers), answers
    closes = [o for o in all_orders(h, key) if "Close" in (o.get("execInst") or "")]
    assert len(closes) == 1 and position_qty(h, key) == 0
    # a stale card made before the panic: nothing is open any more, it says so
    await alice.send("/panic")
    assert alice.last_text.startswith("Nothing to close: no open positions"), alice.last_text


async def test_cancel_and_nothing_open_change_nothing(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/panic")
    assert alice.last_text == ("Nothing to close: no open positions and no open orders on "
                               "testnet."), alice.last_text
    assert alice.last.buttons == []
    await alice.send("/panic now")
    assert "Only '/panic' or '/panic deadman off'" in alice.last_text
    await alice.send("/buy 100 xbtusd")
    # The fill's notice comes over the stream: told before the panic card, not after it.
    assert "Filled" in await confirm_last_card(alice)
    await alice.send("/panic")
    await alice.press("✖️ Cancel")
    assert "Cancelled — nothing was sent" in alice.last_text
    assert position_qty(h, key) == 100


async def test_panic_button_under_positions_and_the_deadman(h: Harness) -> None:
    alice, key = await long_with_orders(h)
    account = h.sim.account(key)
    await alice.send("/deadman 60")
    assert account.cancel_at is not None
    await alice.send("/positions")
    await alice.press("🚨 Panic: close all")
    assert alice.last_text.startswith("🚨 PANIC · testnet"), alice.transcript
    await alice.press("🚨 Confirm panic")
    assert position_qty(h, key) == 0 and open_orders(h, key) == []
    assert account.cancel_at is not None  # not asked: the switch stays armed

    await alice.send("/buy 100 btc @ 50k")
    await alice.press("✅ Confirm")
    await alice.send("/panic deadman off")
    card = alice.last
    assert "Dead-man's switch: turned off" in (card.content or "")
    await alice.press("🚨 Confirm panic", card)
    assert "1 order cancelled" in (card.content or ""), card.content
    assert "Dead-man's switch is off" in (card.content or ""), card.content
    assert account.cancel_at is None and open_orders(h, key) == []


async def test_panic_reports_per_symbol(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 100 xbtusd")
    await alice.press("✅ Confirm")
    await alice.send("/sell 10 eth")
    await alice.press("✅ Confirm")
    assert position_qty(h, key, "ETHUSD") == -10, alice.transcript
    await alice.send("/panic")
    card = alice.last
    assert "Close XBTUSD long 100" in (card.content or "")
    assert "Close ETHUSD short 10" in (card.content or "")
    await alice.press("🚨 Confirm panic", card)
    lines = (card.content or "").splitlines()
    assert any(ln.startswith("XBTUSD: ✅ long 100 closed") for ln in lines), lines
    assert any(ln.startswith("ETHUSD: ✅ short 10 closed") for ln in lines), lines
    assert position_qty(h, key) == 0 and position_qty(h, key, "ETHUSD") == 0
    closes = [o for o in all_orders(h, key) if "Close" in (o.get("execInst") or "")]
    assert sorted((o["symbol"], o["side"]) for o in closes) == [("ETHUSD", "Buy"),
                                                                ("XBTUSD", "Sell")]
