"""Trading in chat: previews, confirmation exactly once, bad input, keys and secrets."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.e2e.harness import Harness
from tests.e2e.helpers import all_orders, confirm_last_card, open_orders, position_qty
from tests.e2e.timing import client_of, drive_time


@pytest.fixture(autouse=True)
def steady_market(h: Harness) -> None:
    h.sim.engine.set_spread("XBTUSD", Decimal(0))
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))


async def test_the_whole_journey(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("/start")
    assert "No account connected yet" in alice.last_text
    key, secret = h.exchange_account()
    await alice.send(f"/connect testnet {key} {secret}")
    assert "Connected testnet" in alice.last_text
    assert secret not in alice.transcript

    # market order
    await alice.send("/buy 200 xbtusd")
    card = alice.last
    assert (card.content or "").startswith("BUY 200 XBTUSD · Market · testnet")
    assert "Est. liquidation" in (card.content or "")
    assert all_orders(h, key) == []  # a preview sends nothing
    text = await confirm_last_card(alice)
    assert "Filled" in text and card.buttons == []
    assert position_qty(h, key) == 200

    # limit order, then its cancel through /orders
    await alice.send("/buy 100 btc @ 55k")
    assert "Limit 55,000.0" in alice.last_text
    text = await confirm_last_card(alice)
    assert "Placed" in text and "New" in text
    [resting] = open_orders(h, key)
    assert (resting["ordType"], resting["price"], resting["orderQty"]) == ("Limit", 55000, 100)
    await alice.send("/orders")
    assert "Buy 100 XBTUSD Limit 55,000.0" in alice.last_text
    await alice.press("Cancel 1")
    assert alice.last_text.startswith("CANCEL order")
    text = await confirm_last_card(alice)
    assert "Cancelled 1 order" in text
    assert open_orders(h, key) == []

    # a stop order
    await alice.send("/sell 100 btc stop 58000")
    assert "Stop 58,000.0" in alice.last_text
    await confirm_last_card(alice)
    assert len(open_orders(h, key)) == 1, alice.transcript + str(all_orders(h, key)[-1])
    [stop] = open_orders(h, key)
    assert (stop["ordType"], stop["stopPx"], stop["side"]) == ("Stop", 58000, "Sell")

    # partial close, then full close from the /positions button
    await alice.send("/close 50%")
    assert alice.last_text.startswith("CLOSE 100 of 200 XBTUSD long")
    await confirm_last_card(alice)
    assert position_qty(h, key) == 100
    await alice.send("/positions")
    assert "XBTUSD Long 100" in alice.last_text
    await alice.press("Close 100 %")
    assert alice.last_text.startswith("CLOSE all XBTUSD long")
    await confirm_last_card(alice)
    assert position_qty(h, key) == 0
    await alice.send("/cancel all")
    await confirm_last_card(alice)
    assert open_orders(h, key) == []
    await alice.send("/balance")
    assert "Balance · testnet" in alice.last_text and "available" in alice.last_text


BAD = [
    ("/buy 100 foo", "Unknown symbol"),
    ("/buy 0 btc", None),
    ("/buy -5 btc", None),
    ("/buy 100000000000 btc", None),
    ("/buy 100 btc limit", None),
    ("/buy banana", None),
    ("/sell 100 btc @ 60k sl 59k", "stop-loss"),
    ("/buy 50 btc", "below one lot"),
    ("/buy 20000000 btc", "maximum order"),
    ("/close", "No open position"),
    ("/cancel 7", "no order #7"),
    ("/leverage btc 500", None),
    ("@#$%^", None),
]


async def test_bad_input_is_answered_and_nothing_is_placed(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    for text, fragment in BAD:
        before = len(alice.bot_texts)
        await alice.send(text)
        answers = alice.bot_texts[before:]
        if text == "@#$%^":
            # not a command: a pointer to /help, not an error, nothing to confirm
            assert len(answers) == 1 and "/help" in answers[0]
            assert not any("✅ Confirm" in row for row in alice.last.buttons)
            continue
        assert answers, f"no answer to {text!r}"
        reply = answers[-1]
        assert "Traceback" not in reply and "went wrong" not in reply, reply
        if fragment:
            assert fragment.lower() in reply.lower(), (text, reply)
        # nothing that could be confirmed was offered
        last = alice.last
        assert not any("✅ Confirm" in row for row in last.buttons), (text, reply)
    assert all_orders(h, key) == []


async def test_price_off_tick_is_rounded_and_said(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 100 btc @ 55000.07")
    assert "Limit 55,000.1" in alice.last_text
    assert "Rounded: price 55,000.07 → 55,000.1" in alice.last_text
    await alice.send("/buy 150 btc @ 55000")
    assert "size 150 → 100 contracts (lot 100)" in alice.last_text
    assert all_orders(h, key) == []


async def test_only_the_asker_can_press(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    mallory, _ = await h.connected("Mallory")
    group = h.group("Room", [mallory], [alice])
    await alice.send("/buy 100 btc")
    card = alice.last
    # Mallory forwards nothing: she presses the very same message's button.
    answer = await mallory.press("✅ Confirm", card)
    assert answer is not None and "Not your order" in answer.text
    assert all_orders(h, key) == []
    assert "BUY 100" in (card.content or "") and card.buttons  # card unchanged
    await alice.press("✅ Confirm", card)
    assert position_qty(h, key) == 100
    assert group is not None


async def test_double_and_concurrent_presses_place_once(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 100 btc")
    card = alice.last
    for _ in range(3):  # three presses queued before the bot handles the first
        h.emu.press(alice.user, card, "✅ Confirm", bot=h.bot_username)
    await h.settle()
    assert "Filled" in (card.content or "") and card.buttons == []
    assert len(all_orders(h, key)) == 1
    assert position_qty(h, key) == 100

    # Two services racing on one card (as two bot processes would): one wins.
    await alice.send("/buy 100 btc")
    card_id = int(alice.last.reply_markup["inline_keyboard"][0][0]["callback_data"]  # type: ignore[index]
                    .split(":")[2])
    results = await asyncio.gather(*[h.svc.trading.press(alice.id, "c", card_id)
                                     for _ in range(5)])
    assert sum("Filled" in r.text for r in results) >= 1
    assert len(all_orders(h, key)) == 2
    assert position_qty(h, key) == 200


async def test_press_after_restart_places_once(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 100 btc")
    card = alice.last
    card_id = int(card.reply_markup["inline_keyboard"][0][0]["callback_data"]  # type: ignore[index]
                    .split(":")[2])
    await h.restart()  # the card was shown by the old process
    await alice.press("✅ Confirm", card)
    assert "Filled" in (card.content or "")
    await h.restart()
    # A stale client still showing the buttons presses again after another restart.
    again = await h.svc.trading.press(alice.id, "c", card_id)
    assert again.alert == "Already handled." and "Filled" in again.text
    assert len(all_orders(h, key)) == 1
    assert position_qty(h, key) == 100


async def test_press_after_expiry_places_nothing_and_sweep_edits_card(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 100 btc")
    card = alice.last
    assert "expires in 60 s" in (card.content or "")
    real_now = h.svc.trading.now
    h.svc.trading.now = lambda: real_now() + timedelta(seconds=61)
    try:
        answer = await alice.press("✅ Confirm", card)
    finally:
        h.svc.trading.now = real_now
    assert answer is not None and "expired" in answer.text.lower()
    assert "Expired" in (card.content or "") and card.buttons == []
    assert all_orders(h, key) == []

    await alice.send("/buy 100 btc")
    card2 = alice.last
    h.svc.trading.now = lambda: real_now() + timedelta(seconds=61)
    try:
        expired = await h.svc.trading.expire_due()
    finally:
        h.svc.trading.now = real_now
    assert [r.message_id for r in expired] == [card2.message_id]
    await alice.press("✅ Confirm", card2)
    assert all_orders(h, key) == []


async def test_cancel_button_cancels_the_card(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 100 btc")
    card = alice.last
    await alice.press("✖️ Cancel", card)
    assert "Cancelled — nothing was sent" in (card.content or "")
    assert all_orders(h, key) == []


async def test_rejection_is_explained_in_plain_words(h: Harness) -> None:
    alice, key = await h.connected("Alice", xbt=0.0001)
    await alice.send("/buy 10000 btc")
    assert "BitMEX would reject it" in alice.last_text  # margin warning on the card
    await confirm_last_card(alice)
    text = alice.last.content or ""
    assert "Rejected" in text and "not enough available margin" in text
    assert all_orders(h, key) == [] or all(o["ordStatus"] == "Rejected"
                                           for o in all_orders(h, key))


async def test_mainnet_large_order_needs_a_second_confirmation(h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account(xbt=10)
    await alice.send(f"/connect mainnet {key} {secret}")
    assert "Connected mainnet" in alice.last_text
    await alice.send("/buy 20000 btc")
    card = alice.last
    assert "mainnet" in (card.content or "")
    await alice.press("✅ Confirm", card)
    assert "safety threshold" in (card.content or "")
    assert all_orders(h, key) == []
    await alice.press("✅ Place it", card)
    assert "Filled" in (card.content or "")
    assert position_qty(h, key) == 20000


async def test_connect_two_steps_deletes_every_secret_message(h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account()
    await alice.send("/connect testnet")
    assert "API key id" in alice.last_text
    await alice.send(key)
    assert "API secret" in alice.last_text
    await alice.send(secret)
    assert "Connected testnet" in alice.last_text
    visible = [m.content for m in alice.messages if not m.from_bot]
    assert key not in " ".join(str(v) for v in visible)
    assert secret not in alice.transcript
    deleted = [m for m in h.emu.chat_messages(alice.chat, bot=h.bot_username,
                                              include_deleted=True) if m.deleted]
    assert {m.content for m in deleted} >= {key, secret}


async def test_connect_flow_timeout_deletes_the_late_secret(h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account()
    await alice.send("/connect testnet")
    await alice.send(key)
    flow = h.app.user_data[alice.id]["connect"]
    flow["deadline"] -= 10_000  # the user wandered off; drive the clock instead of waiting
    await alice.send(secret)
    assert "took too long" in alice.last_text
    assert secret not in alice.transcript and key not in alice.transcript
    assert await h.svc.accounts.list(alice.id) == []


async def test_malformed_secret_and_cancelled_flow_still_delete(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("/connect testnet shortkey")
    assert "key id and the secret" in alice.last_text
    assert "shortkey" not in alice.transcript
    await alice.send("/connect testnet shortkey shortsecret")
    assert "does not look like a BitMEX API key" in alice.last_text
    assert "shortsecret" not in alice.transcript
    await alice.send("/connect")
    await alice.send("AAAAAAAAAAAAAAAAAAAAAAAA")
    await alice.send("/cancel")
    assert "cancelled" in alice.last_text.lower()
    assert "AAAAAAAAAAAAAAAAAAAAAAAA" not in alice.transcript
    rows = await h.svc.accounts.list(alice.id)
    assert rows == []


async def test_withdraw_key_refused_and_read_only_key_explained(h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account(permissions=("order", "orderCancel", "withdraw"))
    await alice.send(f"/connect testnet {key} {secret}")
    assert "withdraw" in alice.last_text.lower() and "won't store" in alice.last_text
    assert await h.svc.accounts.list(alice.id) == []

    key, secret = h.exchange_account(permissions=())
    await alice.send(f"/connect testnet {key} {secret}")
    assert "read" in alice.last_text.lower()
    await alice.send("/balance")
    assert "Balance · testnet" in alice.last_text
    await alice.send("/buy 100 btc")
    assert "read-only" in alice.last_text and "Order permission" in alice.last_text
    assert all_orders(h, key) == []


async def test_secret_in_group_is_deleted_with_a_pointer(h: Harness) -> None:
    alice = h.person("Alice")
    bob = h.person("Bob")
    group = h.group("Traders", [bob], [alice], bot_admin=True)
    key, secret = h.exchange_account()
    await bob.send(f"/connect testnet {key} {secret}", chat=group)
    msgs = h.emu.chat_messages(group, bot=h.bot_username)
    assert all(secret not in (m.content or "") for m in msgs)
    assert any("private chat" in (m.content or "") for m in msgs if m.from_bot)
    await bob.send(secret, chat=group)  # a bare secret pasted by mistake
    assert all(secret not in (m.content or "") for m in h.emu.chat_messages(
        group, bot=h.bot_username))


async def test_accounts_use_and_disconnect(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/connect paper")
    await alice.send("/accounts")
    assert "testnet" in alice.last_text and "paper" in alice.last_text
    assert key not in alice.last_text and key[:4] in alice.last_text
    await alice.send("/use testnet")
    assert "testnet" in alice.last_text
    await alice.send("/disconnect testnet")
    await alice.press("🗑 Forget it")
    assert "deleted" in alice.last_text
    rows = await h.svc.accounts.list(alice.id)
    assert [a.network for a in rows] == ["paper"] and rows[0].active


async def test_secret_in_group_where_bot_cannot_delete_says_so(h: Harness) -> None:
    alice = h.person("Alice")
    bob = h.person("Bob")
    group = h.group("Plain", [bob], [alice], bot_admin=False)
    _, secret = h.exchange_account()
    # In privacy mode a member bot sees only commands addressed to it, so Bob names it.
    last = await bob.send(f"/connect@{h.bot_username} testnet somekeyid1234567890abc {secret}",
                          chat=group)
    assert last is not None and "can't delete it" in (last.content or "")
    assert "revoke the key" in (last.content or "")


async def test_settings_unit_and_btc_contract_change_what_words_mean(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/settings unit usd")
    await alice.send("/buy 1000 btc")
    assert "BUY 1,000 XBTUSD" in alice.last_text  # $1000 of an inverse contract = 1000
    assert "read as USD" in alice.last_text
    await alice.send("/settings unit contracts")
    await alice.send("/settings btc XBTUSDT")
    await alice.send("/buy 1000 btc")
    assert "XBTUSDT" in alice.last_text
    assert all_orders(h, key) == []


async def test_the_expiry_job_edits_a_forgotten_card(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/settings confirm 30")
    card = await alice.send("/buy 100 btc")
    assert card is not None and "expires in 30 s" in (card.content or "")
    [job] = h.app.job_queue.get_jobs_by_name("expire-cards")
    real_now = h.svc.trading.now
    h.svc.trading.now = lambda: real_now() + timedelta(seconds=31)
    try:
        await job.run(h.app)  # what the JobQueue does every few seconds
        await h.emu.wait_edit(card, since=0)
    finally:
        h.svc.trading.now = real_now
    assert "Expired — nothing was sent" in (card.content or "") and card.buttons == []
    assert all_orders(h, key) == []


async def test_preview_tells_cross_from_isolated_like_the_exchange_will(h: Harness) -> None:
    alice, key = await h.connected("Alice")  # 1 XBT, XBTUSD never traded: BitMEX uses cross
    card = await alice.send("/buy 1000 btc")
    text = card.content if card else ""
    assert "· cross ·" in (text or "")
    # 1000 USD of XBTUSD backed by 1 XBT: effectively 0.02x, no liquidation in sight
    assert "Est. liquidation" in (text or "") and "whole balance" in (text or "")
    card = await alice.send("/buy 1000 btc lev 10")
    text = (card.content if card else "") or ""
    assert "· 10x ·" in text and "Est. liquidation 54,794.5 (−8.7 %)" in text
    # 10% on cross is 10 % of the balance as notional: 0.1 XBT at 60,000 ≈ 6,000 contracts
    # (rounded down to the 100 lot), never 100x of it
    card = await alice.send("/buy 10% btc")
    assert card is not None
    head = (card.content or "").splitlines()[0]
    qty = int(head.split()[1].replace(",", ""))
    assert 5900 <= qty <= 6000, head
    await alice.press("✅ Confirm", card)
    [pos] = [p for p in h.sim.engine.position_rows(h.sim.account(key).id) if p["currentQty"]]
    assert pos["crossMargin"] is True and pos["currentQty"] == qty


async def test_card_says_where_the_exits_stand(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    card = await alice.send("/buy 100 btc sl 55k tp 65k")
    assert card is not None
    await alice.press("✅ Confirm", card)
    assert "TP 65,000.0 · SL 55,000.0 placed (reduce-only)" in (card.content or "")
    exits = sorted((o["ordType"], "ReduceOnly" in o["execInst"]) for o in open_orders(h, key))
    assert exits == [("Limit", True), ("Stop", True)]
    card = await alice.send("/buy 100 btc @ 50k sl 45k")
    assert card is not None
    await alice.press("✅ Confirm", card)
    assert "SL 45,000.0 go in when it fills" in (card.content or "")


async def test_typing_shows_while_the_exchange_answers(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    card = await alice.send("/buy 100 btc")
    assert card is not None
    await alice.press("✅ Confirm", card)
    await h.emu.wait_for(lambda: "typing" in h.emu.chat_actions(alice.chat, bot=h.bot_username))


def _card_id(card: Any) -> int:
    return int(card.reply_markup["inline_keyboard"][0][0]["callback_data"].split(":")[2])


async def _crash_after_claim(h: Harness, user_id: int, card_id: int) -> None:
    """What a crash between the winning press and BitMEX's answer leaves behind."""
    from bot.trading import CONFIRMED, PENDING

    assert await h.svc.trading._claim(card_id, user_id, (PENDING,), CONFIRMED)


async def test_restart_settles_a_card_the_crash_left_in_flight(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    # 1) crashed before the POST: the restart says nothing was placed, and a press stays dead
    lost = await alice.send("/buy 100 btc")
    assert lost is not None
    lost_id = _card_id(lost)
    await _crash_after_claim(h, alice.id, lost_id)
    # 2) crashed after BitMEX took the order, before the answer was stored
    taken = await alice.send("/buy 100 btc sl 55k")
    assert taken is not None
    card_id = _card_id(taken)
    await _crash_after_claim(h, alice.id, card_id)
    from bot.db.models import OrderCard

    async with h.svc.db.session() as s:
        row = await s.get(OrderCard, card_id)
    assert row is not None
    ex = await h.svc.accounts.exchange(alice.id, "testnet")
    await ex.place_order("XBTUSD", "Buy", Decimal(100), "Market", cl_ord_id=row.cl_ord_id)
    v_lost, v_taken = lost.version, taken.version

    await h.restart()
    await h.emu.wait_edit(lost, since=v_lost)
    await h.emu.wait_edit(taken, since=v_taken)
    # not on BitMEX yet, but a request sent just before the crash could still arrive
    assert "may or may not be on the exchange" in (lost.content or "") and lost.buttons == []
    assert "Filled" in (taken.content or "") and "SL 55,000.0 placed" in (taken.content or "")
    # once its api-expires is long past, the sweep settles it as never placed
    from bot.trading import settle_cards

    v_lost = lost.version
    real_now = h.svc.trading.now
    h.svc.trading.now = lambda: real_now() + timedelta(minutes=3)
    try:
        assert await settle_cards(h.svc.trading, h.svc.notifier) == 1
    finally:
        h.svc.trading.now = real_now
    await h.emu.wait_edit(lost, since=v_lost)
    assert "Not placed: it never reached BitMEX" in (lost.content or "")
    assert len([o for o in all_orders(h, key) if o["ordType"] == "Market"]) == 1
    assert [(o["ordType"], o["stopPx"]) for o in open_orders(h, key)] == [("Stop", 55000)]
    again = await h.svc.trading.press(alice.id, "c", lost_id)
    assert again.alert == "Already handled." and "never reached" in again.text
    assert position_qty(h, key) == 100


async def test_no_answer_from_bitmex_is_not_called_rejected(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    drive_time(h, await client_of(h, alice.id))
    # every POST answers 502 (it may have reached the engine): nothing is sent again, the
    # order is looked up until it could no longer arrive - and it is not there
    h.sim.faults.fail_next(50, status=502, route="order", method="POST")
    card = await alice.send("/buy 100 btc")
    assert card is not None
    await alice.press("✅ Confirm", card)
    text = card.content or ""
    assert "Rejected" not in text and "Not placed: it never reached BitMEX" in text, text
    assert "Nothing is on the exchange" in text and card.buttons == []
    h.sim.faults.clear()
    assert all_orders(h, key) == []


async def test_unanswered_order_that_did_go_through_settles_as_filled(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    card = await alice.send("/buy 100 btc")
    assert card is not None
    iid = _card_id(card)
    drive_time(h, await client_of(h, alice.id))
    h.sim.faults.drop_after_accept(1)  # the engine takes it, the answer is lost
    # and every lookup fails until the client must stop waiting
    h.sim.faults.fail_next(10**6, status=503, route="order", method="GET")
    await alice.press("✅ Confirm", card)
    assert "may or may not be on the exchange" in (card.content or "")
    # a fresh press never sends a second order
    again = await h.svc.trading.press(alice.id, "c", iid)
    assert again.alert == "Already handled."
    h.sim.faults.clear()
    from bot.trading import settle_cards

    assert await settle_cards(h.svc.trading, h.svc.notifier, older_than=None) == 1
    await h.emu.wait_edit(card, since=0)
    assert "Filled" in (card.content or "")
    assert len(all_orders(h, key)) == 1 and position_qty(h, key) == 100


async def test_exit_refused_after_fill_keeps_the_fill_on_the_card(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    card = await alice.send("/buy 100 btc sl 55k")
    assert card is not None
    # the entry fills; BitMEX then refuses the stop (any 400 will do)
    original = h.svc.trading.place_exits

    async def refuse(card_id: int) -> Any:
        from bot.errors import Rejected

        raise Rejected("Invalid stopPx")

    h.svc.trading.place_exits = refuse  # type: ignore[method-assign]
    try:
        await alice.press("✅ Confirm", card)
    finally:
        h.svc.trading.place_exits = original  # type: ignore[method-assign]
    text = card.content or ""
    assert "Filled" in text and "Rejected" not in text, text
    assert "SL 55,000.0 could not be placed" in text and "set them yourself" in text
    assert position_qty(h, key) == 100


async def test_mainnet_quanto_order_is_priced_in_usd_for_the_second_confirmation(
        h: Harness) -> None:
    h.sim.engine.set_mark("ETHUSD", Decimal(3000))
    alice = h.person("Alice")
    key, secret = h.exchange_account(xbt=10)
    await alice.send(f"/connect mainnet {key} {secret}")
    # ETHUSD is quanto: 1 contract = 100 XBt per USD of ETH price. 100 contracts at ~3,000
    # = 0.3 XBT, about $18,000 at XBT 60,000: above the $10,000 threshold.
    card = await alice.send("/buy 100 ETHUSD")
    assert card is not None
    m = __import__("re").search(r"\$([\d,]+)", card.content or "")
    assert m is not None and 17_000 < int(m.group(1).replace(",", "")) < 19_000, card.content
    await alice.press("✅ Confirm", card)
    assert "safety threshold" in (card.content or "")
    assert all_orders(h, key) == []
    small = await alice.send("/buy 10 ETHUSD")  # ~$1,800: one press is enough
    assert small is not None
    await alice.press("✅ Confirm", small)
    assert "Filled" in (small.content or "")
    assert position_qty(h, key, "ETHUSD") == 10


async def test_liquidation_estimate_averages_into_the_open_position(h: Harness) -> None:
    from bot.exchange import contracts

    alice, key = await h.connected("Alice")
    card = await alice.send("/buy 1000 btc lev 2")
    assert card is not None
    await alice.press("✅ Confirm", card)
    assert position_qty(h, key) == 1000
    h.sim.engine.set_mark("XBTUSD", Decimal(50000))
    [pos] = [p for p in h.sim.engine.position_rows(h.sim.account(key).id) if p["currentQty"]]
    assert pos["crossMargin"] is False
    card = await alice.send("/buy 1000 btc")  # adds at 50,000 to 1,000 bought at 60,000
    text = card.content if card else ""
    ask = Decimal(str(h.sim.engine.instrument("XBTUSD").ask))
    avg = contracts.average_entry("inverse", [(Decimal(1000), Decimal(str(pos["avgEntryPrice"]))),
                                             (Decimal(1000), ask)])
    assert avg is not None and 54_000 < avg < 55_000
    liq = contracts.liquidation_price("inverse", Decimal(2000), avg, Decimal(2), Decimal("0.005"))
    shown = f"Est. liquidation {liq.quantize(Decimal('0.1')):,}"
    assert shown in (text or ""), text
    assert "· 2x ·" in (text or "")


async def test_odd_characters_in_a_reference_are_shown_as_typed(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    await alice.send("/cancel a<b&c")
    assert "a<b&c is not an order id" in alice.last_text  # shown as typed, once escaped


async def test_connect_flow_times_out_by_itself_and_says_so(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("/connect testnet")
    [job] = h.app.job_queue.get_jobs_by_name(f"connect:{alice.id}")
    h.app.user_data[alice.id]["connect"]["deadline"] -= 10_000  # time passes
    sent = h.svc.notifier.stats["sent"]
    await job.run(h.app)
    await h.settle()
    assert "Connecting timed out" in alice.last_text
    # Not a reply any more (the person wrote minutes ago): it passed the delivery queue's
    # overall pace with its other bulk messages, instead of going around it.
    assert h.svc.notifier.stats["sent"] == sent + 1
    before = len(alice.bot_texts)
    await alice.send("hello")  # no longer taken as the key id: small talk gets a pointer
    assert len(alice.bot_texts) == before + 1 and "/help" in alice.last_text
    assert "hello" in alice.transcript


async def test_far_liquidation_is_called_none_and_flags_stay_on_the_card(h: Harness) -> None:
    alice, _ = await h.connected("Alice")  # 10,000 USDT against a 0.01 BTC short
    card = await alice.send("/sell 0.01btc xbtusdt")
    assert card is not None
    assert "Est. liquidation: none in sight — your whole balance backs it (cross)" in (
        card.content or "")
    card = await alice.send("/buy 100 btc @ 50000 post")
    assert card is not None and "· post-only" in (card.content or "")
    await alice.press("✅ Confirm", card)
    assert "post-only" in (card.content or "").splitlines()[0]
