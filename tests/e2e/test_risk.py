"""Risk sizing and size presets in chat (issue #14 items 4 and 5), against the simulator.

The sizes are the hand-computed ones of tests/unit/test_risk_sizing.py: a 1 XBT and a
10,000 USDT account, 1 % of the margin balance lost at the stop, taker fees included.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from bot.scheduler import purge_preset_menus
from tests.e2e.harness import Harness, Person


def all_orders(h: Harness, key: str) -> list[dict[str, Any]]:
    return h.sim.engine.order_rows(h.sim.account(key).id)


def position_qty(h: Harness, key: str, symbol: str) -> int:
    for row in h.sim.engine.position_rows(h.sim.account(key).id):
        if row["symbol"] == symbol:
            return int(row["currentQty"])
    return 0


@pytest.fixture(autouse=True)
def steady_market(h: Harness) -> None:
    for symbol, mark in (("XBTUSD", 60000), ("ETHUSD", 3000), ("XBTUSDT", 60000)):
        h.sim.engine.set_spread(symbol, Decimal(0))
        h.sim.engine.set_mark(symbol, Decimal(mark))


async def confirm(p: Person) -> str:
    card = p.find_button("✅ Confirm")
    await p.press("✅ Confirm", card)
    return card.content or ""


async def test_risk_sizing_for_inverse_quanto_and_linear(h: Harness) -> None:
    alice, key = await h.connected("Alice")

    # XBTUSD: 1,000,000 XBt / 60.0143678 XBt a contract -> 16,600 (lot 100).
    await alice.send("/buy btc risk 1% sl 58k tp 65k")
    card = alice.last_text
    assert card.startswith("BUY 16,600 XBTUSD · Market · testnet"), card
    assert "Sized: 1% risk of 1.00000 XBT margin balance = 0.0100000 XBT at the stop" in card
    # 16,600 * 60.0143678 = 996,239 XBt, at XBTUSD's 60,000: $597.74
    assert "Loss at stop ≈ 0.00996239 XBT ($597.74) incl. fees · 1.00 % of margin balance" in card
    assert "R: TP 65,000.0 = 2.1R" in card
    assert all_orders(h, key) == []  # a preview sends nothing
    assert "Filled" in await confirm(alice)
    assert position_qty(h, key, "XBTUSD") == 16600

    # ETHUSD (quanto), a limit short: 100*(3100-3000) + 0.00075*(300,000 + 310,000)
    # = 10,457.5 XBt a contract; 1,000,000 / 10,457.5 = 95.6 -> 95.
    await alice.send("/sell eth risk 1% sl 3100 @ 3000")
    card = alice.last_text
    assert card.startswith("SELL 95 ETHUSD · Limit 3,000.00 · testnet"), card
    # 95 * 10,457.5 = 993,462.5 XBt (shown to the satoshi), $596.08 at XBTUSD's 60,000
    assert "Loss at stop ≈ 0.00993462 XBT ($596.08) incl. fees" in card
    await confirm(alice)
    [eth] = [o for o in all_orders(h, key)
             if o["symbol"] == "ETHUSD" and o["ordType"] == "Limit"]
    assert (eth["side"], eth["orderQty"], eth["price"]) == ("Sell", 95, 3000)
    [eth_sl] = [o for o in all_orders(h, key) if o["symbol"] == "ETHUSD" and o["ordType"] == "Stop"]
    assert (eth_sl["side"], eth_sl["orderQty"], eth_sl["stopPx"]) == ("Buy", 95, 3100)

    # XBTUSDT (linear): 100 USDT / 2,088.5 USDt a contract -> 47,800 (lot 100).
    await alice.send("/buy xbtusdt risk 1% sl 58k @ 60k")
    card = alice.last_text
    assert card.startswith("BUY 47,800 XBTUSDT · Limit 60,000.0 · testnet"), card
    assert "Loss at stop ≈ 99.83 USDT ($99.83) incl. fees" in card
    await confirm(alice)
    [usdt] = [o for o in all_orders(h, key)
              if o["symbol"] == "XBTUSDT" and o["ordType"] == "Limit"]
    assert usdt["orderQty"] == 47800


async def test_every_order_with_a_stop_shows_its_loss_and_r(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    # 1,000 contracts * 60.0143678 XBt = 60,014 XBt = 0.00060014 XBT, $36.01 at 60,000;
    # TP 70,000: (1e8*(1/60000 - 1/70000) - 0.00075*(1666.667 + 1428.571)) / 60.0144 = 3.93R
    await alice.send("/buy 1000 btc sl 58k tp 65k,70k")
    card = alice.last_text
    assert "Loss at stop ≈ 0.00060014 XBT ($36.01) incl. fees · 0.06 % of margin balance" in card
    assert "R: TP 65,000.0 = 2.1R · TP 70,000.0 = 3.9R" in card
    assert "Sized:" not in card


async def test_risk_refusals_change_nothing(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy btc risk 1%")
    assert "Risk sizing needs a stop-loss: add sl PRICE" in alice.last_text
    await alice.send("/buy btc risk 15% sl 58k")
    assert "Risk 15% is over 10% of your margin balance. If you mean it: risk 15% force" \
        in alice.last_text
    await alice.send("/buy btc risk 1% sl 61k")  # the stop above a long's entry
    assert "stop-loss must be below the entry price" in alice.last_text
    await alice.send("/buy 100 btc risk 1% sl 58k")
    assert "Give a size or risk, not both" in alice.last_text
    # 0.001 % of 1 XBT = 1,000 XBt / 60.0143678 = 16.7 contracts: below one lot of 100.
    await alice.send("/buy btc risk 0.001% sl 58k")
    assert "Sized: 0.001% risk of 1.00000 XBT margin balance" in alice.last_text
    assert "below one lot (100 contracts)" in alice.last_text
    assert all("✅ Confirm" not in b for m in alice.messages for row in m.buttons for b in row)
    assert all_orders(h, key) == []

    # force takes it: 15 % is 15,000,000 XBt / 60.0143678 = 249,940 -> 249,900.
    await alice.send("/buy btc risk 15% force sl 58k")
    assert alice.last_text.startswith("BUY 249,900 XBTUSD"), alice.last_text
    assert all_orders(h, key) == []


async def test_presets_open_the_usual_preview(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy btc")
    menu = alice.last
    assert (menu.content or "").startswith("BUY XBTUSD · how much?")
    assert [b for row in menu.buttons for b in row] == [
        "$100", "$500", "1% risk · needs sl", "5% of margin"]

    await alice.press("$100", menu)
    assert alice.last_text.startswith("BUY 100 XBTUSD · Market · testnet")
    await alice.press("1% risk · needs sl", menu)
    assert alice.last_text == ("1% risk sizes from the stop: send /buy xbtusd sl PRICE, or "
                               "/buy xbtusd risk 1% sl PRICE.")
    assert all_orders(h, key) == []  # nothing placed without Confirm

    # With the stop in the command the risk preset is ready.
    await alice.send("/buy btc sl 58k")
    ready = alice.last
    assert "Stop-loss 58000 goes with it." in (ready.content or "")
    await alice.press("1% risk", ready)
    assert alice.last_text.startswith("BUY 16,600 XBTUSD")
    assert "SL 58,000.0" in alice.last_text
    assert "Filled" in await confirm(alice)
    assert position_qty(h, key, "XBTUSD") == 16600

    # /sell eth: the same presets, on the other side.
    await alice.send("/sell eth")
    await alice.press("$500")
    assert alice.last_text.startswith("SELL ")
    assert "ETHUSD" in alice.last_text.splitlines()[0]


async def test_settings_presets_and_a_stale_press(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy btc")
    old_menu = alice.last

    await alice.send("/settings presets $50 $200 2% risk 10%")
    assert "presets: $50 · $200 · 2% risk · 10% of margin" in alice.last_text
    await alice.send("/buy btc")
    assert [b for row in alice.last.buttons for b in row] == [
        "$50", "$200", "2% risk · needs sl", "10% of margin"]

    # A button from before the change does what its label says (it carries the size):
    # $500 is 500 contracts, and still only a preview.
    await alice.press("$500", old_menu)
    assert alice.last_text.startswith("BUY 500 XBTUSD · Market")
    assert all_orders(h, key) == []

    for bad, reply in (("/settings presets $1 $2 $3 $4 $5", "Give 1 to 4 presets"),
                       ("/settings presets 20% risk", "A risk preset is at most 10%"),
                       ("/settings presets pizza", "pizza is not a size")):
        await alice.send(bad)
        assert reply in alice.last_text
    await alice.send("/settings")
    assert "presets: $50 · $200 · 2% risk · 10% of margin" in alice.last_text  # unchanged

    await alice.send("/settings presets default")
    assert "presets: $100 · $500 · 1% risk · 5% of margin" in alice.last_text
    await alice.send("/buy btc")
    assert [b for row in alice.last.buttons for b in row][:2] == ["$100", "$500"]


async def test_risk_sizing_on_a_paper_account(h: Harness) -> None:
    # The paper account (1 XBT) sizes the same way: 16,600 contracts at 60,000 / 58,000.
    alice = h.person("Alice")
    await alice.send("/connect paper")
    hub = h.svc.market_hub
    assert hub is not None
    await hub.wait_ready("mainnet")
    paper = await h.svc.accounts.exchange(alice.id, "paper")
    await h.emu.wait_for(
        lambda: paper.engine.instrument("XBTUSD").mark == Decimal(60000), timeout=5)  # type: ignore[attr-defined]
    card = await alice.send("/buy btc risk 1% sl 58k")
    assert card is not None
    assert (card.content or "").startswith("BUY 16,600 XBTUSD · Market · paper"), card.content
    await alice.press("✅ Confirm", card)
    assert "Filled" in (card.content or "")
    await alice.send("/positions")
    assert "XBTUSD Long 16,600" in alice.last_text


async def test_a_forged_preset_press_is_refused_in_one_line(h: Harness) -> None:
    # A modified client can send any data: a risk preset over 10 % (no /settings would
    # store one), a size token of no shape of ours, a symbol the exchange lacks.
    alice, key = await h.connected("Alice")
    for data, reply in (("sz:Buy:XBTUSD:50%risk:58000", "Risk 50% is over 10%"),
                        ("sz:Buy:XBTUSD:5.5.5%:-", "That button is out of date"),
                        ("sz:Buy:NOPEUSD:$100:-", "Unknown symbol NOPEUSD")):
        await alice.send("/buy btc")
        menu = alice.last
        assert menu.reply_markup is not None
        menu.reply_markup["inline_keyboard"][0][0]["callback_data"] = data
        await alice.press(data, menu)
        assert reply in alice.last_text, (data, alice.last_text)
        assert not alice.last.buttons
    assert all_orders(h, key) == []


def callback_data(msg: Any, label: str) -> str:
    assert msg.reply_markup is not None
    for row in msg.reply_markup["inline_keyboard"]:
        for b in row:
            if b["text"] == label:
                return str(b["callback_data"])
    raise AssertionError(f"no button {label!r}")


async def test_a_preset_press_keeps_everything_else_typed(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy btc @ 59k sl 58k tp 65k,70k")
    menu = alice.last
    assert (menu.content or "").startswith("BUY XBTUSD · how much?")
    # The button carries the stored menu's id and the size only, however long the command.
    data = callback_data(menu, "$500")
    assert data.startswith("zp:") and data.endswith(":$500") and len(data.encode()) <= 64

    await alice.press("$500", menu)
    card = alice.last_text
    assert card.startswith("BUY 500 XBTUSD · Limit 59,000.0 · testnet"), card
    assert "TP 65,000.0, 70,000.0 · SL 58,000.0" in card
    assert all_orders(h, key) == []  # a press only previews
    await confirm(alice)
    [entry] = [o for o in all_orders(h, key) if o["ordType"] == "Limit"]
    assert (entry["side"], entry["orderQty"], entry["price"]) == ("Buy", 500, 59000)

    # The same menu again: another size, still the typed limit and exits.
    await alice.press("1% risk", menu)
    assert alice.last_text.startswith("BUY ") and "Limit 59,000.0" in alice.last_text

    # Flags and a stop-market entry ride along too; the stop relative to that entry.
    await alice.send("/sell eth stop 2900 sl +2% lev 5")
    await alice.press("$500")
    card = alice.last_text
    assert "ETHUSD · Stop 2,900.00 · testnet" in card.splitlines()[0], card
    assert "5x" in card and "SL 2,958.00 (+2% from 2,900.00)" in card, card


async def test_stale_and_foreign_preset_menus_answer_one_line(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    bob, _ = await h.connected("Bob")
    await bob.send("/buy btc @ 59k")
    bobs = callback_data(bob.last, "$100")

    await alice.send("/buy btc @ 59k")
    menu = alice.last
    assert menu.reply_markup is not None
    buttons = menu.reply_markup["inline_keyboard"]
    buttons[0][0]["callback_data"] = bobs           # Bob's menu: not Alice's to press
    buttons[1][0]["callback_data"] = "zp:2147483647:$100"  # no such menu
    for label in ("$100", "$500"):
        await alice.press(label, menu)
        assert alice.last_text == "That button is out of date; send the order again."

    real_now = h.svc.prefs.now
    h.svc.prefs.now = lambda: real_now() + timedelta(minutes=11)
    try:
        await alice.press("5% of margin", menu)
    finally:
        h.svc.prefs.now = real_now
    assert alice.last_text == "This size menu has expired; send the order again."
    assert all("✅ Confirm" not in b for m in alice.messages for row in m.buttons for b in row)
    assert all_orders(h, key) == []

    # The daily purge deletes expired menus, all but the newest (its id must not be reused).
    assert await purge_preset_menus(h.svc.db, real_now() + timedelta(minutes=11)) == 1
    await bob.press("$100")  # Bob's menu, purged: its press finds nothing
    assert bob.last_text == "That button is out of date; send the order again."


async def test_risk_with_a_stop_relative_to_the_entry(h: Harness) -> None:
    alice, key = await h.connected("Alice")

    # XBTUSD at 60,000, sl -2% = 58,800: 1e8*(1/58800 - 1/60000) = 34.0136054 XBt plus
    # 0.00075*(1,666.667 + 1,700.680) = 2.5255102 in fees: 36.5391156 a contract;
    # 1,000,000 / 36.5391156 = 27,367.9 -> 27,300 (lot 100).
    await alice.send("/buy btc risk 1% sl -2%")
    card = alice.last_text
    assert card.startswith("BUY 27,300 XBTUSD · Market · testnet"), card
    assert "SL 58,800.0 (-2% from 60,000.0)" in card, card
    # 27,300 * 36.5391156 = 997,517.9 XBt
    assert "Loss at stop ≈ 0.009975" in card and "1.00 % of margin balance" in card, card
    await confirm(alice)
    assert position_qty(h, key, "XBTUSD") == 27300
    [sl] = [o for o in all_orders(h, key) if o["symbol"] == "XBTUSD" and o["ordType"] == "Stop"]
    assert (sl["side"], sl["orderQty"], sl["stopPx"]) == ("Sell", 27300, 58800)

    # ETHUSD (quanto), a limit short at 3,000, sl +2% = 3,060: 100*60 + 0.00075*(300,000
    # + 306,000) = 6,454.5 XBt a contract; 1,000,000 / 6,454.5 = 154.9 -> 154.
    await alice.send("/sell eth risk 1% sl +2% @ 3000")
    card = alice.last_text
    assert card.startswith("SELL 154 ETHUSD · Limit 3,000.00 · testnet"), card
    assert "SL 3,060.00 (+2% from 3,000.00)" in card, card

    # XBTUSDT (linear), a limit long at 60,000, sl -2% = 58,800: 1,200 + 0.00075*(60,000
    # + 58,800) = 1,289.1 USDt a contract; 100 USDT = 1e8 USDt / 1,289.1 = 77,573 -> 77,500.
    await alice.send("/buy xbtusdt risk 1% sl -2% @ 60k")
    card = alice.last_text
    assert card.startswith("BUY 77,500 XBTUSDT · Limit 60,000.0 · testnet"), card
    # 77,500 * 1,289.1 = 99,905,250 USDt
    assert "Loss at stop ≈ 99.91 USDT ($99.91) incl. fees" in card, card

    # The relative stop readies the risk preset too.
    await alice.send("/buy btc sl -2%")
    assert "Stop-loss -2% from entry goes with it." in alice.last_text
    await alice.press("1% risk")
    assert alice.last_text.startswith("BUY 27,300 XBTUSD · Market"), alice.last_text

    for bad, reply in (("/buy btc risk 1% sl +2%", "must be below entry for a long: sl -2%"),
                       ("/sell btc risk 1% sl -2%", "must be above entry for a short: sl +2%"),
                       ("/buy btc risk 1% sl 2%", "needs a sign")):
        await alice.send(bad)
        assert reply in alice.last_text, (bad, alice.last_text)


async def test_a_cancel_press_with_someone_elses_order_id_does_not_echo_it(h: Harness) -> None:
    # Found by the stateful fuzz: a Cancel button's data pressed by another user showed
    # that user the order id ("No open order matches <id>").
    bob, bob_key = await h.connected("Bob")
    await bob.send("/buy 100 btc @ 50k")
    await confirm(bob)
    [order] = all_orders(h, bob_key)
    alice, _ = await h.connected("Alice")
    await alice.send("/buy btc")
    menu = alice.last
    assert menu.reply_markup is not None
    menu.reply_markup["inline_keyboard"][0][0]["callback_data"] = f"oc:{order['orderID']}"
    await alice.press("$100", menu)
    assert alice.last_text == "That order is not open on your account (any more). See /orders."
    assert order["orderID"] not in alice.transcript
    assert [o["ordStatus"] for o in all_orders(h, bob_key)] == ["New"]
