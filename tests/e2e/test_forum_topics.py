"""Forum groups: what the bot posts later (alerts, the liquidation feed, signal updates)
goes to the topic it was set up in, and to General when that topic was closed meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlmodel import select

from bot.db.models import Alert, LiqFeedSubscription, Schedule, Signal
from bot.sandbox.telegram.state import Chat, Message, Topic
from tests.e2e.harness import Harness, Person

SYM = "XBTUSD"


@pytest_asyncio.fixture
async def market(h: Harness) -> AsyncIterator[Harness]:
    """Restore XBTUSD's price afterwards: the simulator serves the whole session."""
    mark = h.sim.engine.instrument(SYM).mark
    yield h
    h.sim.engine.set_mark(SYM, mark)


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:  # noqa: ASYNC109
    """Wait for state outside the emulator (the bot's own counters)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := predicate()):
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.005)
    return value


def forum(h: Harness, admin: Person, members: list[Person] | None = None) -> Chat:
    return h.emu.group("Desk", [p.user for p in members or []], [admin.user], forum=True,
                       bots=[h.bot_username], bot_admin=True)


async def say(h: Harness, who: Person, chat: Chat, text: str, topic: Topic | None) -> Message:
    """`who` types `text` in `topic` (None: General); the bot's answer, checked to be there."""
    h.emu.send_text(who.user, chat, text, topic=topic)
    await h.settle()
    answer = h.emu.last_bot_message(chat, bot=h.bot_username)
    assert answer is not None, h.emu.transcript(chat)
    assert answer.thread_id == (topic.id if topic else None), h.emu.transcript(chat)
    return answer


def bot_posts(h: Harness, chat: Chat) -> list[Message]:
    return h.emu.bot_messages(chat, bot=h.bot_username)


async def alert_rows(h: Harness) -> list[Alert]:
    async with h.svc.db.session() as s:
        return list((await s.exec(select(Alert).order_by(Alert.id))).all())  # type: ignore[arg-type]


async def fire(h: Harness, chat: Chat, to: Decimal) -> Message:
    """Move the price past an alert; the bot's next post in `chat`."""
    assert h.svc.market_hub is not None and h.svc.alerts is not None
    await h.svc.market_hub.wait_ready("mainnet")
    last = bot_posts(h, chat)[-1]
    h.sim.engine.set_mark(SYM, to)
    msg = await h.emu.wait_bot_message(chat, last, bot=h.bot_username)
    await h.svc.alerts.drain()  # the row turns 'sent' once the notifier returned
    return msg


async def test_group_alert_set_in_a_topic_fires_in_that_topic(market: Harness) -> None:
    h = market
    alice = h.person("Alice")
    group = forum(h, alice)
    alerts = h.emu.create_topic(group, "Alerts", by=alice.user)
    h.emu.create_topic(group, "Chatter", by=alice.user)
    await h.settle()
    p0 = h.sim.engine.instrument(SYM).mark
    confirm = await say(h, alice, group, f"/alert xbtusd above {p0 + 700} breakout", alerts)
    assert "Alert set" in (confirm.content or "")
    [row] = await alert_rows(h)
    assert row.thread_id == alerts.id
    await h.restart()  # the topic is kept with the alert, not only in memory

    msg = await fire(h, group, p0 + 701)
    assert "breakout" in (msg.content or "") and msg.thread_id == alerts.id
    assert [r.state for r in await alert_rows(h)] == ["sent"]


async def test_alert_whose_topic_was_closed_lands_in_general_once(market: Harness) -> None:
    h = market
    alice = h.person("Alice")
    group = forum(h, alice)
    alerts = h.emu.create_topic(group, "Alerts", by=alice.user)
    await h.settle()
    p0 = h.sim.engine.instrument(SYM).mark
    await say(h, alice, group, f"/alert xbtusd above {p0 + 700} closed topic", alerts)
    await say(h, alice, group, f"/alert xbtusd above {p0 + 1400} all closed", alerts)
    h.emu.close_topic(group, alerts)

    msg = await fire(h, group, p0 + 701)
    assert "closed topic" in (msg.content or "") and msg.thread_id is None
    await h.emu.idle(timeout=2, quiet=0.02)
    fired = [m for m in bot_posts(h, group)
             if "closed topic" in (m.content or "") and "Alert set" not in (m.content or "")]
    assert fired == [msg]
    assert [r.state for r in await alert_rows(h)] == ["sent", "active"]

    # General closed as well: nothing reaches the group, so the alert is not recorded
    # as sent (it stays 'fired' for the next start) and the bot keeps going.
    h.emu.close_topic(group, None)
    before = len(bot_posts(h, group))
    count = h.svc.alerts.fired
    h.sim.engine.set_mark(SYM, p0 + 1401)
    await until(lambda: h.svc.alerts is not None and h.svc.alerts.fired > count)
    await h.svc.alerts.drain()
    assert len(bot_posts(h, group)) == before
    assert [r.state for r in await alert_rows(h)] == ["sent", "fired"]


async def test_liquidation_feed_set_in_a_topic_posts_there(market: Harness) -> None:
    h = market
    alice = h.person("Alice")
    group = forum(h, alice)
    whales = h.emu.create_topic(group, "Whales", by=alice.user)
    await h.settle()
    await say(h, alice, group, "/liqfeed min 500k", whales)
    async with h.svc.db.session() as s:
        [sub] = (await s.exec(select(LiqFeedSubscription).where(
            LiqFeedSubscription.chat_id == group.id))).all()
    assert sub.thread_id == whales.id

    feed = h.svc.liqfeed
    assert feed is not None and h.svc.market_hub is not None
    feed.autoflush = False  # the test closes the window (flush), not a timer
    await h.svc.market_hub.wait_ready("mainnet")
    seen = feed.received
    h.sim.engine.liquidate_market(SYM, "Sell", 1_200_000, 60120)
    await until(lambda: feed.received > seen)
    assert await feed.flush(force=True) == 1
    await h.emu.idle(timeout=2, quiet=0.02)
    post = bot_posts(h, group)[-1]
    assert post.content == "🔥 Long liquidated: $1.2M XBTUSD @ 60,120.0"
    assert post.thread_id == whales.id

    # One chat, two feeds set in two topics: one window, each line to its own topic.
    ether = h.emu.create_topic(group, "Ether", by=alice.user)
    await h.settle()
    await say(h, alice, group, "/liqfeed ethusd min 1k", ether)
    n, seen = len(bot_posts(h, group)), feed.received
    h.sim.engine.liquidate_market("ETHUSD", "Buy", 500_000, 3000)
    h.sim.engine.liquidate_market(SYM, "Buy", 700_000, 60200)
    await until(lambda: feed.received >= seen + 2)
    assert await feed.flush(force=True) == 2
    await h.emu.idle(timeout=2, quiet=0.02)
    posts = {m.thread_id: m.content or "" for m in bot_posts(h, group)[n:]}
    assert set(posts) == {whales.id, ether.id}, h.emu.transcript(group)
    assert "XBTUSD" in posts[whales.id] and "ETHUSD" not in posts[whales.id]
    assert "ETHUSD" in posts[ether.id] and "XBTUSD" not in posts[ether.id]


async def test_signal_card_and_updates_stay_in_their_topic(h: Harness) -> None:
    h.sim.engine.set_mark(SYM, Decimal(60000))
    alice = h.person("Alice")
    bob, _ = await h.connected("Bob")
    group = forum(h, alice, [bob])
    calls = h.emu.create_topic(group, "Calls", by=alice.user)
    await h.settle()
    await say(h, alice, group, "/feed on topicals", calls)
    await bob.send("/follow topicals size 100")
    assert "Following topicals" in bob.last_text

    h.emu.send_text(alice.user, group, "/signal long XBTUSD entry 60000 tp 62000 sl 59000",
                    topic=calls)
    await h.settle()
    await h.services.feeds.drain()
    await h.settle()
    card = bot_posts(h, group)[-1]
    assert "LONG XBTUSD" in (card.content or "") and card.thread_id == calls.id
    assert card.buttons == [["📥 Follow"]]
    # The fan-out writes to followers in private, never to the group's General.
    assert "signal #1" in bob.last_text, (bob.transcript, h.emu.transcript(group))
    assert all(m.thread_id == calls.id for m in bot_posts(h, group)[1:]), \
        h.emu.transcript(group)
    async with h.svc.db.session() as s:
        [sig] = (await s.exec(select(Signal))).all()
    assert sig.thread_id == calls.id

    h.emu.send_text(alice.user, group, "/signal move-sl 1 59500", topic=calls)
    await h.settle()
    await h.services.feeds.drain()
    await h.settle()
    moved = bot_posts(h, group)[-1]
    assert "59,500" in (moved.content or "") and moved.thread_id == calls.id
    assert all(m.thread_id == calls.id for m in bot_posts(h, group)[1:]), \
        h.emu.transcript(group)



async def test_charts_and_refusals_are_answered_in_the_topic(h: Harness) -> None:
    dave, _ = await h.connected("Dave")
    group = forum(h, dave)
    reports = h.emu.create_topic(group, "Reports", by=dave.user)
    await h.settle()
    engine = h.sim.engine
    base = engine.instrument("ETHUSD").mark
    for i in range(30):
        engine.set_mark("ETHUSD", base + i % 7, trade_size=10)
        engine.clock.advance(60)
    chart = await say(h, dave, group, "/chart eth 1m 20", reports)
    assert chart.file is not None  # the photo itself, not only a text, is in the topic
    refusal = await say(h, dave, group, "/summary daily 09:30", reports)
    assert "private chat" in (refusal.content or "")
    async with h.svc.db.session() as s:
        assert (await s.exec(select(Schedule))).all() == []


async def test_an_apology_for_a_failed_command_lands_in_its_topic(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = h.person("Alice")
    group = forum(h, alice)
    alerts = h.emu.create_topic(group, "Alerts", by=alice.user)
    await h.settle()

    async def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("database exploded")

    monkeypatch.setattr(h.svc.alerts, "create", boom)
    apology = await say(h, alice, group, "/alert xbtusd above 999999", alerts)
    assert "Sorry, something went wrong on our side (ref " in (apology.content or "")
