"""A card whose row is final is never left showing "⏳ Sending to BitMEX…" (issue #15,
the chaos run's stuck card). `card_stale` is set with every change of the card's state
and cleared only once Telegram confirmed an edit showing the state the row holds now."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from bot.db.models import OrderCard
from bot.trading import repair_cards, settle_cards
from tests.e2e.harness import Harness, Person

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SENDING = "Sending to BitMEX"


async def _card(h: Harness) -> tuple[int, Person]:
    alice, _ = await h.connected("Alice")
    price = int(h.sim.engine.instrument("XBTUSD").mark) - 3000
    card = await alice.send(f"/buy 100 xbtusd limit {price}")
    assert card is not None
    async with h.svc.db.session() as s:
        rows = list((await s.exec(select(OrderCard).where(
            OrderCard.message_id == card.message_id))).all())
    assert len(rows) == 1 and rows[0].id is not None
    return rows[0].id, alice


async def _stale(h: Harness, card_id: int) -> bool:
    async with h.svc.db.session() as s:
        row = await s.get(OrderCard, card_id)
    assert row is not None
    return row.card_stale


async def _sweep(h: Harness) -> int:
    """The repair sweep, run as it runs a few seconds later."""
    trading = h.svc.trading
    real = trading.now
    trading.now = lambda: real() + timedelta(seconds=10)
    try:
        return await repair_cards(trading, h.svc.notifier)
    finally:
        trading.now = real
        await h.settle()


async def test_a_second_press_seeing_sending_then_a_kill_before_the_final_edit(
        h: Harness) -> None:
    """The chaos run's path: Confirm is claimed, a second press (queued while the card
    still had its buttons) is shown "⏳ Sending…", the order is placed, and the process
    dies before the final edit. The row is final; the sweep must still repair the card."""
    card_id, alice = await _card(h)
    uid = alice.user.id
    trading = h.svc.trading
    taken = await trading.take_press(uid, "c", card_id)  # the first press wins the claim
    assert taken.card is None
    await alice.press("✅ Confirm")  # the second press, through the real handler
    await h.settle()
    assert SENDING in alice.last_text
    await trading.execute(card_id)  # placed; killed before the card was edited
    assert await _stale(h, card_id)  # the row left the state the chat shows
    assert await _sweep(h) == 1
    assert "✅ Placed" in alice.last_text and SENDING not in alice.last_text, alice.transcript
    assert not await _stale(h, card_id)


async def test_an_edit_from_an_older_read_landing_last_leaves_the_card_to_the_sweep(
        h: Harness) -> None:
    """The final edit went through, then an edit made from an older read ("Sending…")
    landed after it: Telegram confirmed it, but it shows a state the row has left."""
    card_id, alice = await _card(h)
    uid = alice.user.id
    trading = h.svc.trading
    await trading.take_press(uid, "c", card_id)
    sending = await trading.current(card_id)  # a second press reads the card...
    final = await trading.execute(card_id)
    assert await h.svc.notifier.edit(alice.chat.id, alice.last.message_id, final.text)
    await trading.card_shown(card_id, True, final.text)
    assert not await _stale(h, card_id)
    # ...and its edit lands last: the older text wins in the chat.
    assert await h.svc.notifier.edit(alice.chat.id, alice.last.message_id, sending.text)
    await trading.card_shown(card_id, True, sending.text)
    assert SENDING in alice.last_text
    assert await _stale(h, card_id)
    assert await _sweep(h) == 1
    assert "✅ Placed" in alice.last_text, alice.transcript


async def test_a_card_whose_message_id_a_kill_lost_is_still_repaired(h: Harness) -> None:
    """Killed between sending the card and recording its message id: the settling and
    the sweep edit by that id, so without it a press whose outcome edit fails leaves the
    card on "⏳ Sending…" (or its preview) for good (the chaos run's second stuck card).
    The press itself carries the message: it records the id."""
    card_id, alice = await _card(h)
    async with h.svc.db.session() as s:
        row = await s.get(OrderCard, card_id)
        assert row is not None
        row.message_id = None  # as a kill right after sendMessage leaves it
        s.add(row)
        await s.commit()
    # Telegram refuses the press's edits ("Sending…" and the outcome).
    h.emu.refuse_next("editMessageText", times=2, bot=h.bot_username)
    await alice.press("✅ Confirm")
    await h.settle()
    assert "✅ Placed" not in alice.last_text, alice.transcript
    assert await _stale(h, card_id)
    assert await _sweep(h) == 1
    assert "✅ Placed" in alice.last_text, alice.transcript


LOOKING = "looking it up by its id"


async def test_a_card_in_flight_whose_looking_it_up_edit_was_refused_loses_its_buttons(
        h: Harness) -> None:
    """The chaos run with the update inbox: a press is claimed, the process dies before
    the order goes out, and the start-up's "looking it up" edit is refused. The row says
    confirmed, the chat still shows Confirm / Cancel: the sweep must repair it, not only
    once the lookup settles it minutes later."""
    card_id, alice = await _card(h)
    trading = h.svc.trading
    taken = await trading.take_press(alice.user.id, "c", card_id)  # killed right after
    assert taken.card is None
    assert alice.find_button("✅ Confirm")
    h.emu.refuse_next("editMessageText", times=1, bot=h.bot_username)
    await settle_cards(trading, h.svc.notifier, older_than=None)  # as at start-up
    await h.settle()
    assert LOOKING not in alice.last_text and await _stale(h, card_id)
    assert await _sweep(h) == 1
    assert LOOKING in alice.last_text, alice.transcript
    assert not any(b for row in alice.last.buttons for b in row)
    assert not await _stale(h, card_id)
