"""Groups as Telegram really runs them: privacy mode, kicks and re-adds, blocks, forum
topics and linked channels, against the emulator's default (strict) rules."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlmodel import select

from bot.db.models import Alert
from bot.feeds import feeds_of
from bot.sandbox.telegram.state import Chat, User
from tests.e2e.harness import Harness, Person

FREE_TEXT_SIGNAL = "BTC/USDT long entry 60000 targets 62000 stop 59000"


def bot_texts(h: Harness, chat: Chat) -> list[str]:
    return [m.content or "" for m in h.emu.bot_messages(chat, bot=h.bot_username)]


def bot_user(h: Harness) -> User:
    """The emulator's User of this test's bot."""
    return h.emu.bot(h.bot_username).user


async def test_member_bot_in_privacy_mode_tells_admins_and_works_once_promoted(
        h: Harness) -> None:
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    alice = h.person("Alice")
    bob, _ = await h.connected("Bob")
    group = h.group("Alpha Calls", [bob], [alice], bot_admin=False)
    await alice.send(f"/feed@{h.bot_username} on alpha", chat=group)
    texts = bot_texts(h, group)
    assert any("now the signal feed alpha" in t for t in texts), texts
    [advice] = [t for t in texts if "not an admin" in t]
    assert "free-text signals won't reach me" in advice
    assert "Add admin" in advice and f"@{h.bot_username}" in advice
    assert f"/signal@{h.bot_username}" in advice

    # Privacy mode: the free-text signal never reaches the bot, so no card.
    before = len(texts)
    await alice.send(FREE_TEXT_SIGNAL, chat=group)
    await feeds_of(h.services).drain()
    assert len(bot_texts(h, group)) == before

    h.emu.promote(group, bot_user(h), by=alice.user)
    await h.settle()
    assert len(bot_texts(h, group)) == before  # an admin with every right: nothing to say
    await alice.send(FREE_TEXT_SIGNAL, chat=group)
    await feeds_of(h.services).drain()
    await h.settle()
    card = bot_texts(h, group)[-1]
    assert "LONG XBTUSD" in card and "signal #1" in card, bot_texts(h, group)


async def test_added_as_member_says_what_it_needs_and_admin_without_delete_too(
        h: Harness) -> None:
    alice = h.person("Alice")
    group = h.emu.group("Desk", [], [alice.user], supergroup=True, bots=[])
    h.emu.add_bot_to_group(group, h.bot_username, by=alice.user)
    await h.settle()
    [advice] = bot_texts(h, group)
    assert "not an admin" in advice and "Delete messages" in advice

    h.emu.promote(group, bot_user(h), by=alice.user, can_delete_messages=False)
    await h.settle()
    assert "without “Delete messages”" in bot_texts(h, group)[-1]

    # /start in the group checks again and stays quiet once nothing is missing.
    h.emu.promote(group, bot_user(h), by=alice.user)
    await h.settle()
    n = len(bot_texts(h, group))
    await alice.send(f"/start@{h.bot_username}", chat=group)
    assert len(bot_texts(h, group)) == n + 1 and "signal feeds" in bot_texts(h, group)[-1]


async def alert_states(h: Harness) -> dict[str | None, str]:
    async with h.svc.db.session() as s:
        return {a.note: a.state for a in (await s.exec(select(Alert))).all()}


async def until_state(h: Harness, note: str, state: str) -> None:
    for _ in range(500):
        if (await alert_states(h)).get(note) == state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"alert {note!r} never became {state!r}: {await alert_states(h)}")


async def test_kicked_group_alert_fails_then_readded_group_gets_the_next(h: Harness) -> None:
    alice = h.person("Alice")
    group = h.group("Traders", [], [alice])
    assert h.svc.alerts is not None and h.svc.market_hub is not None
    p0 = h.sim.engine.instrument("XBTUSD").mark
    await alice.send(f"/alert xbtusd above {p0 + 700} first", chat=group)
    await alice.send(f"/alert xbtusd above {p0 + 900} second", chat=group)
    await h.svc.market_hub.wait_ready("mainnet")
    try:
        h.emu.remove_bot_from_group(group, h.bot_username, by=alice.user)
        await h.settle()
        sends = h.emu.count("sendMessage")
        h.sim.engine.set_mark("XBTUSD", p0 + 701)
        await until_state(h, "first", "fired")
        await h.svc.alerts.drain()
        await h.settle()
        # Known to be kicked: nothing sent, and the alert is not recorded as sent.
        assert (await alert_states(h))["first"] == "fired"
        assert h.emu.count("sendMessage") == sends

        h.emu.add_bot_to_group(group, h.bot_username, by=alice.user, admin=True)
        await h.settle()
        h.sim.engine.set_mark("XBTUSD", p0 + 901)
        await h.emu.wait_for(lambda: any("second" in t for t in bot_texts(h, group)),
                             timeout=5)
        await until_state(h, "second", "sent")
    finally:
        h.sim.engine.set_mark("XBTUSD", p0)


async def test_block_and_unblock_within_a_minute_fills_arrive_after(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    assert h.svc.live is not None
    await h.svc.live.wait_ready(alice.id)
    mark = Decimal(h.sim.engine.instrument("XBTUSD").mark)
    await alice.send(f"/buy 300 xbtusd limit {mark - 1000}")
    await alice.press("✅ Confirm")
    [order] = h.sim.engine.open_order_rows(h.sim.account(key).id)
    h.emu.block_bot(alice.user, h.bot_username)
    await h.settle()
    h.sim.engine.fill_order(str(order["orderID"]), 100)  # while blocked: cannot arrive
    await h.emu.idle(timeout=5, quiet=0.3)
    assert not any("Filled" in t for t in alice.bot_texts)
    h.emu.unblock_bot(alice.user, h.bot_username)  # within the minute, without a word
    await h.settle()
    h.sim.engine.fill_order(str(order["orderID"]), 100)
    await h.emu.wait_for(lambda: any("Filled 200/300" in t for t in alice.bot_texts),
                         timeout=5)


async def test_command_in_a_forum_topic_is_answered_in_that_topic(h: Harness) -> None:
    alice = h.person("Alice")
    bob = h.person("Bob")
    group = h.emu.group("Forum", [bob.user], [alice.user], forum=True,
                        bots=[h.bot_username], bot_admin=True)
    topic = h.emu.create_topic(group, "Signals", by=alice.user)
    await h.settle()
    h.emu.send_text(bob.user, group, "/help", topic=topic)
    await h.settle()
    answer = h.emu.last_bot_message(group, bot=h.bot_username)
    assert answer is not None and answer.thread_id == topic.id, h.emu.transcript(group)

    # A signal posted in the topic gets its card there too.
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    h.emu.send_text(alice.user, group, "/feed on topical", topic=topic)
    await h.settle()
    h.emu.send_text(alice.user, group, FREE_TEXT_SIGNAL, topic=topic)
    await feeds_of(h.services).drain()
    await h.settle()
    card = h.emu.last_bot_message(group, bot=h.bot_username)
    assert card is not None and "LONG XBTUSD" in (card.content or "")
    assert card.thread_id == topic.id


async def test_automatic_forwards_from_the_linked_channel_are_ignored(h: Harness) -> None:
    alice: Person = h.person("Alice")
    group = h.group("Discussion", [], [alice])
    await alice.send("/feed on chan", chat=group)
    channel = h.emu.channel("Alpha channel", [alice.user], linked_group=group)
    n = len(bot_texts(h, group))
    h.emu.post_to_channel(alice.user, channel, FREE_TEXT_SIGNAL)
    h.emu.post_to_channel(alice.user, channel, "/feed off")
    await h.settle()
    forwarded = [m for m in h.emu.chat_messages(group) if m.automatic_forward]
    assert len(forwarded) == 2 and not any(m.deleted for m in forwarded)
    assert len(bot_texts(h, group)) == n  # no card, no answer
