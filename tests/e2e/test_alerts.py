"""Alerts end to end: a user types /alert, the simulated market moves, the chat shows it once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlmodel import select

from bot.alerts.service import AlertService
from bot.db.models import Alert
from bot.liqfeed import LiqFeed
from bot.sandbox.telegram.state import Chat
from tests.e2e.harness import Harness, Person

SYM = "XBTUSD"


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:  # noqa: ASYNC109
    """Wait for state outside the emulator (the bot's own counters)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := predicate()):
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.005)
    return value


@pytest_asyncio.fixture
async def market(h: Harness) -> AsyncIterator[Harness]:
    """Restore XBTUSD's price and funding afterwards: the simulator serves the whole session."""
    inst = h.sim.engine.instrument(SYM)
    mark, rate = inst.mark, inst.funding_rate
    yield h
    h.sim.engine.set_mark(SYM, mark)
    h.sim.engine.set_funding_rate(SYM, rate)


def alerts_of(h: Harness) -> AlertService:
    return h.svc.alerts


async def ready(h: Harness) -> None:
    """The shared socket has its snapshot: from here on every tick reaches the bot."""
    await h.svc.market_hub.wait_ready("mainnet")


def bot_count(h: Harness, chat: Chat) -> int:
    return len(h.emu.bot_messages(chat, bot=h.bot_username))


async def wait_alert(h: Harness, p: Person, chat: Chat | None = None) -> str:
    where = chat or p.chat
    last = h.emu.bot_messages(where, bot=h.bot_username)[-1]
    msg = await h.emu.wait_bot_message(where, last, bot=h.bot_username)
    await alerts_of(h).drain()  # the row turns 'sent' once the notifier returned
    return msg.content or ""


async def rows(h: Harness) -> list[Alert]:
    async with h.svc.db.session() as s:
        return list((await s.exec(select(Alert).order_by(Alert.id))).all())  # type: ignore[arg-type]


def price(h: Harness) -> Decimal:
    return h.sim.engine.instrument(SYM).mark


async def test_price_alert_fires_once_across_restart(market: Harness) -> None:
    h = market
    alice = h.person("Alice")
    p0 = price(h)
    await alice.send(f"/alert xbtusd above {p0 + 1000} take profit")
    assert "Alert set" in alice.last_text, alice.transcript
    await ready(h)

    h.sim.engine.set_mark(SYM, p0 + 500)  # not yet
    h.sim.engine.set_mark(SYM, p0 + Decimal('1000.5'))
    text = await wait_alert(h, alice)
    assert f"XBTUSD above {p0 + 1000:,.1f} — now {p0 + Decimal('1000.5'):,.1f}" in text
    assert "(take profit)" in text and text.startswith("🔔")
    assert [r.state for r in await rows(h)] == ["sent"]

    # crossing again, before and after a restart, says nothing more; a sentinel alert
    # set after the restart proves the ticks arrive (so silence is not a dead socket)
    h.sim.engine.set_mark(SYM, p0)
    h.sim.engine.set_mark(SYM, p0 + 1200)
    await h.restart()
    await alice.send(f"/alert xbtusd above {p0 + 1500} sentinel")
    await ready(h)
    before = bot_count(h, alice.chat)
    h.sim.engine.set_mark(SYM, p0)
    h.sim.engine.set_mark(SYM, p0 + 1600)
    text = await wait_alert(h, alice)
    assert "sentinel" in text
    await alerts_of(h).drain()
    await h.emu.idle(timeout=2, quiet=0.05)
    assert bot_count(h, alice.chat) == before + 1, alice.transcript
    assert sum(t.startswith("🔔") and "take profit" in t for t in alice.bot_texts) == 1


async def test_alert_set_before_a_restart_fires_after_it(market: Harness) -> None:
    h = market
    alice = h.person("Alice")
    p0 = price(h)
    await alice.send(f"/alert xbtusd below {p0 - 800}")
    await h.restart()
    assert len(alerts_of(h).index) == 1
    await ready(h)
    h.sim.engine.set_mark(SYM, p0 - 900)
    text = await wait_alert(h, alice)
    assert f"XBTUSD below {p0 - 800:,.1f} — now {p0 - 900:,.1f}" in text
    assert [r.state for r in await rows(h)] == ["sent"]


async def test_move_alert_window_and_rearm(market: Harness) -> None:
    h = market
    engine = h.sim.engine
    alice = h.person("Alice")
    p0 = Decimal(50000)
    engine.set_mark(SYM, p0)
    await alice.send("/alert xbtusd move 2% in 15m")
    assert "moves 2 % within 15m" in alice.last_text, alice.transcript
    await ready(h)
    # Whatever price earlier tests left on the shared simulator (it reaches the bot in the
    # socket's snapshot) must fall out of the window before the scripted path starts.
    engine.clock.advance(16 * 60)
    engine.set_mark(SYM, p0)
    # +3 % climbed over 32 minutes, 0.75 % every 8: no 15 minutes hold 2 % of it, nothing
    # fires. BitMEX also sends instrument updates that change no price (funding every 8
    # hours, on the live market many other fields), each with the mark as it stands and
    # its own timestamp: one comes right before every step here. A path that is quiet only
    # while none comes (one 3 % jump after 16 silent minutes) fired "+3.0 %" whenever the
    # shared simulator's next funding time fell inside it.
    rate = engine.instrument(SYM).funding_rate
    for step in range(1, 5):
        engine.clock.advance(8 * 60)
        engine.set_funding_rate(SYM, rate)  # the unchanged mark, stamped now
        engine.set_mark(SYM, p0 + 375 * step)
    assert engine.instrument(SYM).mark == p0 * Decimal("1.03")
    # then -2.5 % within 10 minutes fires, downwards
    engine.clock.advance(10 * 60)
    engine.set_mark(SYM, p0 * Decimal("1.03") * Decimal("0.975"))
    text = await wait_alert(h, alice)
    assert "moved −2.5 % within 15m" in text, alice.transcript
    assert sum("moved" in t for t in alice.bot_texts) == 1
    # recurring: after the window rolled past, the next 2 % move is reported again
    engine.clock.advance(16 * 60)
    engine.set_funding_rate(SYM, rate)
    engine.set_mark(SYM, p0)
    engine.clock.advance(60)
    engine.set_funding_rate(SYM, rate)
    engine.set_mark(SYM, p0 * Decimal("1.021"))
    text = await wait_alert(h, alice)
    assert "moved +2.1 % within 15m" in text
    assert [r.state for r in await rows(h)] == ["active"]


async def test_funding_alert(market: Harness) -> None:
    h = market
    engine = h.sim.engine
    engine.set_funding_rate(SYM, Decimal("0.0001"))
    alice = h.person("Alice")
    await alice.send("/alert xbtusd funding below 0.02%")
    assert "already below" in alice.last_text  # 0.01 % is below 0.02 % now
    await alice.send("/alert xbtusd funding above 0.05%")
    assert "funding above 0.0500 %" in alice.last_text, alice.transcript
    await ready(h)
    engine.set_funding_rate(SYM, Decimal("0.0004"))
    engine.set_funding_rate(SYM, Decimal("0.0006"))
    text = await wait_alert(h, alice)
    assert "funding above 0.0500 % — now 0.0600 %" in text
    assert [r.state for r in await rows(h)] == ["sent"]


async def test_group_alerts_admins_only_posted_in_group(market: Harness) -> None:
    h = market
    alice, bob = h.person("Alice"), h.person("Bob")
    group = h.group("Traders", [alice, bob], admins=[alice], bot_admin=True)
    p0 = price(h)
    await bob.send(f"/alert xbtusd above {p0 + 700}", chat=group)
    refusal = h.emu.last_bot_message(group, bot=h.bot_username)
    assert refusal is not None and "Only group admins" in (refusal.content or "")
    assert await rows(h) == []
    await alice.send(f"/alert xbtusd above {p0 + 700} breakout", chat=group)
    assert [(r.chat_id, r.user_id) for r in await rows(h)] == [(group.id, alice.id)]
    # anyone may list them; only admins may press Delete
    await bob.send("/alerts", chat=group)
    listing = h.emu.last_bot_message(group, bot=h.bot_username)
    assert listing is not None and "breakout" in (listing.content or "")
    answer = await bob.press(listing.buttons[0][0], listing)
    assert "Only group admins" in str(answer)
    assert [r.state for r in await rows(h)] == ["active"]
    await ready(h)
    h.sim.engine.set_mark(SYM, p0 + 701)
    text = await wait_alert(h, alice, group)
    assert "breakout" in text
    assert not alice.bot_texts  # nothing in Alice's private chat


async def test_alerts_list_delete_button_unalert_and_bad_input(
        market: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h = market
    alice = h.person("Alice")
    p0 = price(h)
    await alice.send(f"/alert xbtusd below {p0 + 100}")
    assert "already below" in alice.last_text and "Did you mean above?" in alice.last_text
    await alice.send("/alert xbtusd above")
    assert "needs a price" in alice.last_text
    await alice.send("/alert xbtusd move 5% in 2h")
    assert "Use 15m, 1h, 4h or 24h" in alice.last_text
    assert await rows(h) == []

    await alice.send(f"/alert xbtusd above {p0 + 2000}")
    await alice.send("/alert eth move 5% in 4h")
    await alice.send(f"/alert xbtusd below {p0 - 2000} dip")
    ids = [r.id for r in await rows(h)]
    await alice.send("/alerts")
    listing = alice.last
    assert listing.buttons == [[f"🗑 Delete #{i}"] for i in ids]
    assert "ETHUSD moves 5 % within 4h" in (listing.content or "")

    await alice.press(f"🗑 Delete #{ids[0]}", listing)
    assert listing.buttons == [[f"🗑 Delete #{i}"] for i in ids[1:]]
    assert ids[0] not in alerts_of(h).index
    await alice.send(f"/unalert {ids[1]}")
    assert f"Deleted #{ids[1]}" in alice.last_text
    await alice.send(f"/unalert {ids[1]}")
    assert f"No active alert #{ids[1]}" in alice.last_text
    await alice.send("/unalert all")
    assert alice.last_text == "Deleted 1 alert."
    assert [r.state for r in await rows(h)] == ["deleted"] * 3
    assert len(alerts_of(h).index) == 0
    await alice.send("/alerts")
    assert "No active alerts" in alice.last_text

    # A double tap on Delete: the second press finds the list already up to date.
    await alice.send(f"/alert xbtusd above {p0 + 2500}")
    await alice.send(f"/alert xbtusd above {p0 + 2600}")
    await alice.send("/alerts")
    listing = alice.last
    label = listing.buttons[0][0]
    first = h.emu.press(alice.user, listing, label, bot=h.bot_username)
    second = h.emu.press(alice.user, listing, label, bot=h.bot_username)
    await h.settle()
    assert "Deleted alert" in str(h.emu.answers(first))
    # Already gone when read, or (PostgreSQL, read committed) read before the first press
    # committed and then found gone by the conditional UPDATE: either way, one line.
    assert any(w in str(h.emu.answers(second))
               for w in ("No active alert", "has just fired or was deleted")), \
        h.emu.answers(second)
    assert "went wrong" not in "\n".join(alice.bot_texts), alice.transcript
    assert not [r for r in caplog.records if r.name == "bot.errors"], caplog.text
    assert len(listing.buttons) == 1
    await alice.send("/unalert all")

    # someone else's alert cannot be deleted from another chat
    await alice.send(f"/alert xbtusd above {p0 + 3000}")
    bob = h.person("Bob")
    other = (await rows(h))[-1].id
    await bob.send(f"/unalert {other}")
    assert "No active alert" in bob.last_text
    assert (await rows(h))[-1].state == "active"


# ------------------------------------------------------------------ liquidation feed


async def feed_ready(h: Harness) -> LiqFeed:
    feed = h.svc.liqfeed
    assert feed is not None
    # The window is closed by the test (flush), not by a timer: no sleeping.
    feed.autoflush = False
    await ready(h)
    return feed


async def test_liqfeed_thresholds_private_and_group(market: Harness) -> None:
    h = market
    engine = h.sim.engine
    alice, bob = h.person("Alice"), h.person("Bob")
    group = h.group("Whales", [alice, bob], admins=[alice], bot_admin=True)
    await bob.send("/liqfeed min $100k", chat=group)
    refusal = h.emu.last_bot_message(group, bot=h.bot_username)
    assert refusal is not None and "Only group admins" in (refusal.content or "")
    await alice.send("/liqfeed xbtusd min $1m")
    assert "Liquidation feed on: XBTUSD, orders of $1M or more" in alice.last_text
    await alice.send("/liqfeed min 500k", chat=group)
    feed = await feed_ready(h)

    async def liquidate(side: str, qty: int, px: int) -> int:
        seen = feed.received
        engine.liquidate_market(SYM, side, qty, px)
        await until(lambda: feed.received > seen)
        return await feed.flush(force=True)

    private_before, group_before = bot_count(h, alice.chat), bot_count(h, group)
    assert await liquidate("Sell", 1_200_000, 60120) == 2  # both chats
    assert await liquidate("Buy", 700_000, 60200) == 1  # the group only
    assert await liquidate("Sell", 100_000, 60000) == 0  # nobody
    await h.emu.idle(timeout=2, quiet=0.02)
    private = alice.bot_texts[private_before:]
    in_group = [m.content for m in h.emu.bot_messages(group, bot=h.bot_username)][group_before:]
    assert private == ["🔥 Long liquidated: $1.2M XBTUSD @ 60,120.0"]
    assert in_group == ["🔥 Long liquidated: $1.2M XBTUSD @ 60,120.0",
                        "🔥 Short liquidated: $700K XBTUSD @ 60,200.0"]

    await alice.send("/liqfeed off")
    assert "Liquidation feed off" in alice.last_text
    assert feed.for_chat(alice.chat.id) == [] and len(feed.for_chat(group.id)) == 1


async def test_liqfeed_burst_is_one_message(market: Harness) -> None:
    h = market
    alice = h.person("Alice")
    await alice.send("/liqfeed min $10k")
    feed = await feed_ready(h)
    before = bot_count(h, alice.chat)
    for i in range(6):
        h.sim.engine.liquidate_market(SYM, "Sell", 200_000, 60000 - 5 * i)
    h.sim.engine.liquidate_market("ETHUSD", "Buy", 100, 3000)
    await until(lambda: feed.received >= 7)
    # the window closes on the feed's clock: 2 s after the first one
    assert await feed.flush(now=feed.clock() + feed.window) == 1
    await h.emu.idle(timeout=2, quiet=0.02)
    texts = alice.bot_texts[before:]
    assert len(texts) == 1
    assert texts[0].startswith("🔥 Long liquidated: $1.2M XBTUSD (6 orders) @ 59,975.0–60,000.0")
    assert "Short liquidated: $" in texts[0] and "ETHUSD @ 3,000" in texts[0]


async def test_liqfeed_timer_flushes_by_itself(market: Harness) -> None:
    h = market
    alice = h.person("Alice")
    await alice.send("/liqfeed xbtusd min 1k")
    feed = h.svc.liqfeed
    assert feed is not None
    feed.window = 0.05  # the production timer path, with a short window
    await ready(h)
    h.sim.engine.liquidate_market(SYM, "Buy", 3000, 61000)
    text = await wait_alert(h, alice)
    assert text == "🔥 Short liquidated: $3K XBTUSD @ 61,000.0"
