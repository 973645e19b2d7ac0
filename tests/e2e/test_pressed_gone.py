"""A press whose message is deleted before the bot edits it (the user tapped, then deleted
the message; in a group, an admin cleaned up): Telegram refuses the edit as "message to
edit not found". The press's outcome then comes as a new message instead of an apology
("something went wrong"), for every button that edits the message it sits on."""

from __future__ import annotations

from decimal import Decimal as D

from bot.sandbox.telegram.state import Message
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
