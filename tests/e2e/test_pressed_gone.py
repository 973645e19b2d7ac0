"""A press whose message is deleted before the bot edits it (the user tapped, then deleted
the message; in a group, an admin cleaned up): Telegram refuses the edit as "message to
edit not found". The press's outcome then comes as a new message instead of an apology
("something went wrong"), for every button that edits the message it sits on."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from sqlmodel import select

from bot.db.models import MonitorMessage, OrderCard
from bot.sandbox.telegram.state import Message
from bot.scheduler import expire_cards
from bot.trading import repair_cards
from tests.e2e.harness import Harness, Person
from tests.e2e.helpers import confirm_last_card, no_traceback
from tests.e2e.test_feeds import feed_group


async def press_then_delete(p: Person, label: str, msg: Message) -> None:
    """Tap `label`, then delete the message before the bot has handled the tap."""
    p.h.emu.press(p.user, msg, label, bot=p.h.bot_username)
    p.h.emu.delete_for_all(p.user, msg)
    await p.h.settle()


def new_since(p: Person, before: int) -> list[str]:
    """The bot's messages in `p`'s chat newer than message id `before`."""
    return [m.content or "" for m in p.messages if m.message_id > before and m.from_bot]


async def test_deleting_the_alert_list_after_a_delete_tap_gets_the_list_anew(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("/start")
    await alice.send("/alert xbtusd above 1000000")
    await alice.send("/alert xbtusd below 1000")
    await alice.send("/alerts")
    listing = alice.last
    first = listing.buttons[0][0]
    before = alice.last.message_id
    await press_then_delete(alice, first, listing)
    [shown] = new_since(alice, before)
    assert "below 1,000" in shown or "below 1000" in shown, shown
    assert "above" not in shown  # the tapped alert is gone from the list sent anew
    assert alice.last.buttons == [[b for b in row] for row in listing.buttons[1:]]
    no_traceback(alice)


async def test_a_refresh_of_a_deleted_position_card_sends_the_card_anew(h: Harness) -> None:
    h.sim.engine.set_spread("XBTUSD", D(0))
    h.sim.engine.set_mark("XBTUSD", D(60000))
    alice, _ = await h.connected("Alice")
    await alice.send("/buy 300 xbtusd")
    assert "Filled" in await confirm_last_card(alice)
    await alice.send("/positions")
    card = alice.last
    before = alice.last.message_id
    await press_then_delete(alice, "🔄 Refresh", card)
    [shown] = new_since(alice, before)
    assert "XBTUSD Long 300" in shown, shown
    assert "Close 100 %" in str(alice.last.buttons)
    no_traceback(alice)


async def test_auto_mode_tap_on_a_deleted_follow_message_says_it_anew(h: Harness) -> None:
    _, [(bob, _), *_], _ = await feed_group(h)
    await bob.send("/follow alpha size 200")
    msg = bob.find_button("🤖 Apply risk-reducing updates automatically")
    before = bob.last.message_id
    await press_then_delete(bob, "🤖 Apply risk-reducing updates automatically", msg)
    shown = new_since(bob, before)
    assert len(shown) == 1 and "Auto mode is on" in shown[0], shown
    no_traceback(bob)


# --- messages the bot edits later, deleted meanwhile ------------------------------------

async def _card_row(h: Harness, card_id: int) -> OrderCard:
    async with h.svc.db.session() as s:
        row = await s.get(OrderCard, card_id)
    assert row is not None
    return row


async def _sweep(h: Harness) -> int:
    """The repair sweep as it runs a few seconds later (see test_card_stale)."""
    trading = h.svc.trading
    real = trading.now
    trading.now = lambda: real() + timedelta(seconds=10)  # type: ignore[method-assign]
    try:
        return await repair_cards(trading, h.svc.notifier)
    finally:
        trading.now = real  # type: ignore[method-assign]
        await h.settle()


async def _limit_card(h: Harness, p: Person) -> tuple[Message, int]:
    """A limit buy far under the market (it rests: "Placed", no fill notice after it)."""
    price = int(h.sim.engine.instrument("XBTUSD").mark) - 3000
    card = await p.send(f"/buy 100 xbtusd limit {price}")
    assert card is not None
    async with h.svc.db.session() as s:
        [row] = (await s.exec(select(OrderCard).where(
            OrderCard.message_id == card.message_id))).all()
    assert row.id is not None
    return card, row.id


async def _outcome_sent_once(h: Harness, p: Person, card_id: int, before: int) -> None:
    """The card's outcome is one new message, the card's message from now on, and no
    sweep sends or edits anything more."""
    [shown] = new_since(p, before)
    assert "✅ Placed" in shown, p.transcript
    row = await _card_row(h, card_id)
    assert not row.card_stale and row.message_id == p.last.message_id
    calls = h.emu.count("editMessageText"), h.emu.count("sendMessage")
    assert await _sweep(h) == 0
    assert (h.emu.count("editMessageText"), h.emu.count("sendMessage")) == calls
    assert new_since(p, before) == [shown]
    no_traceback(p)


async def test_a_card_deleted_right_after_confirm_gets_its_outcome_at_once_and_once(
        h: Harness) -> None:
    alice, key = await h.connected("Alice")
    card, card_id = await _limit_card(h, alice)
    before = alice.last.message_id
    await press_then_delete(alice, "✅ Confirm", card)
    assert len([o for o in h.sim.engine.order_rows(h.sim.account(key).id)]) == 1
    # Sent by the press itself, when its edit found the message gone: no sweep needed.
    await _outcome_sent_once(h, alice, card_id, before)


async def test_a_card_deleted_while_its_order_is_in_flight_gets_its_outcome_at_once_and_once(
        h: Harness) -> None:
    alice, key = await h.connected("Alice")
    card, card_id = await _limit_card(h, alice)
    before = alice.last.message_id
    h.sim.faults.engine_lag(1, seconds=2)
    h.emu.press(alice.user, card, "✅ Confirm", bot=h.bot_username)
    await h.emu.wait_for(lambda: h.sim.faults.held == 1)  # BitMEX has it, no answer yet
    h.emu.delete_for_all(alice.user, card)
    h.sim.engine.clock.advance(2)  # the engine takes it; the answer comes back
    await h.settle()
    assert len([o for o in h.sim.engine.order_rows(h.sim.account(key).id)]) == 1
    # Before, the outcome waited for the repair sweep (every 5 s, cards 3 s old).
    await _outcome_sent_once(h, alice, card_id, before)


async def test_a_double_tap_on_a_card_deleted_mid_flight_sends_one_outcome(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    card, card_id = await _limit_card(h, alice)
    before = alice.last.message_id
    h.sim.faults.engine_lag(1, seconds=2)
    h.emu.press(alice.user, card, "✅ Confirm", bot=h.bot_username)
    await h.emu.wait_for(lambda: h.sim.faults.held == 1)
    # The second tap finds the order on its way ("Sending…") and the message gone: it
    # sends nothing anew; the first one sends the outcome when BitMEX answers.
    refused = h.emu.count("editMessageText", status=400)
    h.emu.press(alice.user, card, "✅ Confirm", bot=h.bot_username)
    h.emu.delete_for_all(alice.user, card)
    await h.emu.wait_for(lambda: h.emu.count("editMessageText", status=400) > refused)
    await h.emu.idle(timeout=5, quiet=0.2)
    assert new_since(alice, before) == []
    h.sim.engine.clock.advance(2)
    await h.settle()
    assert len([o for o in h.sim.engine.order_rows(h.sim.account(key).id)]) == 1
    await _outcome_sent_once(h, alice, card_id, before)


async def test_a_card_whose_outcome_edit_was_refused_then_deleted_gets_it_from_the_sweep(
        h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    card, card_id = await _limit_card(h, alice)
    before = alice.last.message_id
    # "Sending…" and the outcome both refused, as Telegram sometimes does for a while:
    # the message is still there, so the press sends nothing anew.
    h.emu.refuse_next("editMessageText", times=2, bot=h.bot_username)
    await alice.press("✅ Confirm", card)
    assert new_since(alice, before) == [] and (await _card_row(h, card_id)).card_stale
    h.emu.delete_for_all(alice.user, card)  # and then the user cleans up the chat
    assert await _sweep(h) == 1
    [shown] = new_since(alice, before)
    assert "✅ Placed" in shown, alice.transcript
    after = await _card_row(h, card_id)
    assert not after.card_stale and after.message_id == alice.last.message_id
    # Repaired for good: later sweeps knock on nothing (before, every 5 s for ever).
    edits = h.emu.count("editMessageText")
    assert await _sweep(h) == 0 and h.emu.count("editMessageText") == edits
    assert new_since(alice, before) == [shown]
    no_traceback(alice)


async def test_an_expiring_card_that_was_deleted_is_not_sent_again(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    card = await alice.send("/buy 100 xbtusd")
    assert card is not None
    before = alice.last.message_id
    h.emu.delete_for_all(alice.user, card)
    trading = h.svc.trading
    real = trading.now
    trading.now = lambda: real() + timedelta(minutes=10)  # type: ignore[method-assign]
    try:
        assert await expire_cards(trading, h.svc.notifier) == 1
        await h.settle()
        assert new_since(alice, before) == []  # nobody waits for an expiry: no new message
        assert await trading.stale_cards() == []  # and nothing left for the sweep
    finally:
        trading.now = real  # type: ignore[method-assign]


async def test_deleting_a_monitor_message_stops_that_monitor(h: Harness) -> None:
    h.sim.engine.set_spread("XBTUSD", D(0))
    h.sim.engine.set_mark("XBTUSD", D(60000))
    alice, _ = await h.connected("Alice")
    await h.svc.live.wait_ready(alice.id)
    await alice.send("/buy 100 xbtusd")
    assert "Filled" in await confirm_last_card(alice)
    live = h.svc.live
    live.monitor_interval = 0.0  # every position update edits at once
    await alice.send("/monitor")
    [msg] = [m for m in alice.messages if (m.content or "").startswith("📡 XBTUSD")]
    h.emu.delete_for_all(alice.user, msg)
    failed = h.emu.count("editMessageText", status=400)
    h.sim.engine.set_mark("XBTUSD", D(61000))
    await h.emu.wait_for(lambda: h.emu.count("editMessageText", status=400) > failed, timeout=5)
    await h.settle()
    async with h.svc.db.session() as s:
        assert (await s.exec(select(MonitorMessage))).all() == []
    h.sim.engine.set_mark("XBTUSD", D(62000))
    await h.emu.idle(timeout=5, quiet=0.2)
    assert h.emu.count("editMessageText", status=400) == failed + 1  # no knocking on it
    await alice.send("/monitor off")
    assert alice.last_text == "The monitor is not running."
