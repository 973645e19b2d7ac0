"""The red team's second pass on issue #16: attacks on the merged fixes that broke, each
kept as the conversation that showed it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import update

from bot.db.models import OrderCard
from bot.scheduler import purge_cards
from tests.e2e.harness import Harness
from tests.e2e.test_feed_access import previews
from tests.e2e.test_feeds import SIG, feed_group, post
from tests.e2e.test_secrets import CHATTER, debug_log, live, pasted_secret


async def test_the_purge_keeps_the_entry_of_a_signal_that_is_still_open(h: Harness) -> None:
    """A swing signal stays open for months: the member's entry card is what the feed's
    close and stop moves are built from, so the daily purge must not take it while the
    signal is open (it did: the member then got no close card at all)."""
    admin, [(bob, bkey)], group = await feed_group(h, 1)
    await bob.send("/follow alpha size 100")
    await post(h, admin, group, SIG)
    await bob.press("✅ Confirm")
    pos = [p for p in h.sim.engine.position_rows(h.sim.account(bkey).id) if p["currentQty"]]
    assert [(p["symbol"], p["currentQty"]) for p in pos] == [("XBTUSD", 100)]

    month_ago = datetime.now(UTC) - timedelta(days=31)
    async with h.svc.db.session() as s:
        await s.exec(update(OrderCard).values(updated_at=month_ago, created_at=month_ago))
        await s.commit()
    await bob.send("/buy 100 btc")
    await bob.press("✖️ Cancel")  # a newer card, so the entry is not kept as the newest id
    await purge_cards(h.svc.db)

    await post(h, admin, group, "/signal close 1")
    card = bob.find_button("✅ Confirm")
    assert "Signal #1 update" in (card.content or "") and "CLOSE" in (card.content or ""), \
        bob.transcript


async def test_a_split_secret_the_chat_guard_deletes_is_masked_in_the_debug_log(
        h: Harness) -> None:
    """The guard deletes a secret split across two words or lines; PTB's DEBUG dump of the
    update printed both halves (each too short for the long-run mask)."""
    alice, bob = h.person("Alice"), h.person("Bob")
    group = h.group("Traders", [alice, bob], admins=[bob], bot_admin=True)
    secret = pasted_secret()
    for glue in (" ", "\n"):
        first, second = secret[:24], secret[24:]
        with debug_log() as stream:
            await alice.send(f"here: {first}{glue}{second} {CHATTER}", chat=group)
        text = stream.getvalue()
        assert "Processing update" in text  # PTB did log the update
        assert live(h, group, second) == []  # the chat guard deleted it
        assert first not in text and second not in text, (glue, text)
    # ordinary chat still shows in the log
    with debug_log() as stream:
        await alice.send(f"Internationalization Counterrevolutionaries {CHATTER}", chat=group)
    assert "Counterrevolutionaries" in stream.getvalue()


async def test_a_message_edited_into_a_connect_line_is_deleted_and_explained(
        h: Harness) -> None:
    """Edits are not commands (only new messages run), so an edit that adds a key was
    deleted without a word: the user saw their message vanish and nothing connected."""
    alice = h.person("Alice")
    key, secret = h.exchange_account()
    m = h.emu.send_text(alice.user, None, "hi", bot=h.bot_username)
    await h.settle()
    h.emu.edit_text(alice.user, m, f"/connect testnet {key} {secret}")
    await h.settle()
    assert live(h, alice.chat, secret) == []
    assert "I deleted that message: it looks like an API key" in alice.last_text
    assert "/connect testnet" in alice.last_text
    assert await h.svc.accounts.list(alice.id) == []


async def test_a_feed_whose_group_was_upgraded_while_the_bot_was_away_still_checks_members(
        h: Harness) -> None:
    """getChatMember on the old id answers 400 with migrate_to_chat_id (PTB: ChatMigrated,
    not a BadRequest): every /follow failed with 'something went wrong'. Now the check
    follows the group to its new id, members may follow, outsiders are still refused, and
    the feed's signals come from the supergroup."""
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    admin = h.person("Alice")
    bob, _ = await h.connected("Bob")
    eve, _ = await h.connected("Eve")
    group = h.group("Alpha Calls", [bob], [admin], bot_admin=True)
    await admin.send("/feed on alpha", chat=group)
    new = h.emu.group("Alpha Calls", [bob.user], [admin.user], supergroup=True,
                      bots=[h.bot_username], bot_admin=True)
    group.migrated_to = new.id  # no service message reached the bot
    await eve.send("/follow alpha size 100")
    assert "Only members of the group behind alpha" in eve.last_text, eve.transcript
    await bob.send("/follow alpha size 100")
    assert "Following alpha" in bob.last_text, bob.transcript
    await post(h, admin, new, SIG)
    assert previews(bob, 1) == 1 and previews(eve, 1) == 0


async def test_a_secret_with_invisible_characters_inside_is_deleted_and_masked(
        h: Harness) -> None:
    """A zero-width space, joiner, soft hyphen or BOM inside a secret shows nothing, so
    readers see the whole secret; the guard read the pieces as short words and kept it."""
    alice, bob = h.person("Alice"), h.person("Bob")
    group = h.group("Traders", [alice, bob], admins=[bob], bot_admin=True)
    for mark in ("\u200b", "\u200d", "\u00ad", "\u2060", "\ufeff"):
        secret = pasted_secret()
        hidden = mark.join(secret[i:i + 8] for i in range(0, len(secret), 8))
        with debug_log() as stream:
            sent = h.emu.send_text(alice.user, group, f"mine: {hidden} {CHATTER}",
                                   bot=h.bot_username)
            await h.settle()
        assert sent.deleted, repr(mark)
        assert secret[:8] not in stream.getvalue() and secret[-8:] not in stream.getvalue()
    # emoji built with joiners are no secret
    await alice.send(f"👨\u200d👩\u200d👧 back from the trip, {CHATTER}", chat=group)
    assert live(h, group, "back from the trip")


async def test_follow_of_a_feed_whose_group_removed_the_bot_is_answered(h: Harness) -> None:
    """getChatMember in a group the bot was removed from answers 403; the error handler takes
    a Forbidden for 'the user blocked us' and stayed silent, so /follow got no answer."""
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    admin = h.person("Alice")
    bob, _ = await h.connected("Bob")
    group = h.group("Alpha Calls", [bob], [admin], bot_admin=True)
    await admin.send("/feed on alpha", chat=group)
    h.emu.remove_bot_from_group(group, h.bot_username, by=admin.user)
    await h.settle()
    await bob.send("/follow alpha size 100")
    assert bob.last_text.startswith("Only members of the group behind alpha"), bob.transcript
