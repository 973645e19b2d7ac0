"""Groups as Telegram really runs them: privacy mode, kicks and re-adds, blocks, forum
topics and linked channels, against the emulator's default (strict) rules."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from sqlmodel import select

from bot.db.models import Alert
from bot.notify import DeliveryQueue
from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
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
    await h.services.feeds.drain()
    assert len(bot_texts(h, group)) == before

    h.promote_bot(group, by=alice)
    await h.settle()
    assert len(bot_texts(h, group)) == before  # an admin with every right: nothing to say
    await alice.send(FREE_TEXT_SIGNAL, chat=group)
    await h.services.feeds.drain()
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
    group = h.group("Traders", [], [alice], bot_admin=True)
    assert h.svc.alerts is not None and h.svc.market_hub is not None
    p0 = h.sim.engine.instrument("XBTUSD").mark
    await alice.send(f"/alert xbtusd above {p0 + 700} first", chat=group)
    await alice.send(f"/alert xbtusd above {p0 + 900} second", chat=group)
    await h.svc.market_hub.wait_ready("mainnet")
    try:
        h.emu.remove_bot_from_group(group, h.bot_username, by=alice.user)
        await h.settle()
        def sends_to_group() -> int:
            return sum(1 for c in h.emu.calls_to("sendMessage") if c.bot == h.bot_username
                       and str(c.params.get("chat_id")) == str(group.id))

        sends = sends_to_group()
        h.sim.engine.set_mark("XBTUSD", p0 + 701)
        await until_state(h, "first", "fired")
        await h.svc.alerts.drain()
        await h.settle()
        # Known to be kicked: nothing sent, and the alert is not recorded as sent.
        assert (await alert_states(h))["first"] == "fired"
        assert sends_to_group() == sends

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
    await h.services.feeds.drain()
    await h.settle()
    card = h.emu.last_bot_message(group, bot=h.bot_username)
    assert card is not None and "LONG XBTUSD" in (card.content or "")
    assert card.thread_id == topic.id


async def test_automatic_forwards_from_the_linked_channel_are_ignored(h: Harness) -> None:
    alice: Person = h.person("Alice")
    group = h.group("Discussion", [], [alice], bot_admin=True)
    await alice.send("/feed on chan", chat=group)
    channel = h.emu.channel("Alpha channel", [alice.user], linked_group=group)
    n = len(bot_texts(h, group))
    h.emu.post_to_channel(alice.user, channel, FREE_TEXT_SIGNAL)
    h.emu.post_to_channel(alice.user, channel, "/feed off")
    await h.settle()
    forwarded = [m for m in h.emu.chat_messages(group) if m.automatic_forward]
    assert len(forwarded) == 2 and not any(m.deleted for m in forwarded)
    assert len(bot_texts(h, group)) == n  # no card, no answer


async def test_restricted_bot_waits_and_delivers_once_the_right_is_back(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import handlers.notifier

    monkeypatch.setattr(handlers.notifier, "NO_RIGHTS_RETRY", 0.2)
    alice = h.person("Alice")
    group = h.group("Traders", [], [alice], bot_admin=True)
    assert h.svc.alerts is not None and h.svc.market_hub is not None
    p0 = h.sim.engine.instrument("XBTUSD").mark
    await alice.send(f"/alert xbtusd above {p0 + 700} patient", chat=group)
    await h.svc.market_hub.wait_ready("mainnet")
    h.emu.restrict(group, bot_user(h), by=alice.user)
    await h.settle()
    try:
        h.sim.engine.set_mark("XBTUSD", p0 + 701)

        def refused() -> list[str]:
            return [c.description or "" for c in h.emu.calls_to("sendMessage", status=400)
                    if c.bot == h.bot_username and str(c.params.get("chat_id")) == str(group.id)]

        await h.emu.wait_for(refused, timeout=10)
        assert "not enough rights" in refused()[-1]
        # "Not enough rights" is temporary: the admins give the right back, it arrives.
        h.emu.promote(group, bot_user(h), by=alice.user)
        await h.emu.wait_for(lambda: any("patient" in t for t in bot_texts(h, group)),
                             timeout=10)
        await until_state(h, "patient", "sent")
    finally:
        h.sim.engine.set_mark("XBTUSD", p0)


async def test_asks_only_for_the_updates_it_handles(h: Harness) -> None:
    await h.emu.wait_for(lambda: h.emu.bot(h.bot_username).allowed_updates)
    assert h.emu.bot(h.bot_username).allowed_updates == [
        "message", "edited_message", "callback_query", "my_chat_member", "chat_member"]
    alice = h.person("Alice")
    group = h.group("Room", [], [alice])
    channel = h.emu.channel("Chan", [alice.user], bots=[h.bot_username])
    before = h.emu.bot(h.bot_username).next_update_id
    h.emu.post_to_channel(alice.user, channel, "not for the bot")
    assert h.emu.bot(h.bot_username).next_update_id == before  # channel_post not sent
    _ = group


async def test_a_member_promoted_to_admin_can_run_the_feed_at_once(h: Harness) -> None:
    # No admin list is cached (issue #16: admin powers are asked of Telegram on every
    # command), so a promotion counts at once, and a member joining changes nothing.
    alice, bob, carol = h.person("Alice"), h.person("Bob"), h.person("Carol")
    group = h.group("Feed", [bob], [alice], bot_admin=True)
    await bob.send("/feed on cached", chat=group)
    assert "Only the group's admins" in bot_texts(h, group)[-1]
    h.emu.join(group, carol.user)
    await h.settle()
    h.emu.promote(group, bob.user, by=alice.user)
    await h.settle()
    await bob.send("/feed on cached", chat=group)
    assert "Only the group's admins" not in bot_texts(h, group)[-1]


async def test_membership_updates_are_followed_whoever_causes_them(
        world_sim: BitmexSimulator, world_emu: TelegramEmulator, tmp_path: Path) -> None:
    # With an allow-list, the admin who kicks and re-adds the bot is a stranger to it:
    # the bot must still follow its own membership (it runs before the access gate).
    h = Harness(world_sim, world_emu, tmp_path, ALLOWED_USER_IDS=[555002])
    await h.start()
    try:
        stranger = h.person("Admin")
        group = h.group("Theirs", [], [stranger])
        h.emu.remove_bot_from_group(group, h.bot_username, by=stranger.user)
        await h.settle()
        notifier = h.svc.notifier
        assert isinstance(notifier, DeliveryQueue)
        assert notifier.undelivered(group.id)
        h.emu.add_bot_to_group(group, h.bot_username, by=stranger.user, admin=True)
        await h.settle()
        assert not notifier.undelivered(group.id)
        assert await notifier.send(group.id, "hello again") is not None
    finally:
        await h.stop()


async def test_writing_again_after_a_block_brings_notices_back_at_once(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await h.svc.live.wait_ready(alice.id)
    mark = Decimal(h.sim.engine.instrument("XBTUSD").mark)
    await alice.send(f"/buy 200 xbtusd limit {mark - 1000}")
    await alice.press("✅ Confirm")
    [order] = h.sim.engine.open_order_rows(h.sim.account(key).id)
    h.emu.block_bot(alice.user, h.bot_username)
    await h.settle()
    await alice.send("/price btc")  # writing to the bot unblocks it, as in the app
    h.sim.engine.fill_order(str(order["orderID"]), 100)
    await h.emu.wait_for(lambda: any("Filled 100/200" in t for t in alice.bot_texts),
                         timeout=5)
