"""/monitor (issue #14 item 7) as conversations: one message per position that edits
itself when the simulated mark moves, not when nothing shown changed, not more often than
its interval, stops at /monitor off, says "closed", and goes on after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import select

from bot.db.models import MonitorMessage
from bot.live import LiveUpdates
from bot.live.monitor import _until
from bot.sandbox.telegram.state import Message
from tests.e2e.harness import Harness, Person

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)  # funding at 12:00: "2h 30m"


class Clock:
    """The monitor's clock and its waits, driven by the test (no real seconds pass)."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.waits: list[float] = []
        self.go = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await self.go.wait()
        self.t += seconds


def drive(live: LiveUpdates) -> Clock:
    clock = Clock()
    live.monitor_clock = lambda: clock.t  # type: ignore[method-assign]
    live.monitor_sleep = clock.sleep  # type: ignore[method-assign]
    live.monitor_now = lambda: NOW  # type: ignore[method-assign]
    return clock


@pytest.fixture(autouse=True)
def steady_market(h: Harness) -> Iterator[None]:
    engine = h.sim.engine
    saved = {s: (i.mark, i.last) for s, i in engine.instruments.items()}
    engine.set_spread("XBTUSD", Decimal(0))
    engine.set_mark("XBTUSD", Decimal(60000))
    yield
    for symbol, (mark, last) in saved.items():
        engine.set_mark(symbol, mark, last=last)


async def long_position(h: Harness) -> tuple[Person, str]:
    alice, key = await h.connected("Alice")
    await h.svc.live.wait_ready(alice.id)
    await alice.send("/buy 100 xbtusd")
    await alice.press("✅ Confirm")
    await alice.send("/sell 100 btc stop 55000 reduce")
    await alice.press("✅ Confirm")
    return alice, key


def monitor_message(p: Person) -> Message:
    [m] = [m for m in p.messages if (m.content or "").startswith("📡 XBTUSD")]
    return m


async def until(h: Harness, check: object, what: str) -> None:
    try:
        await h.emu.wait_for(check, timeout=5)  # type: ignore[arg-type]
    except TimeoutError:
        raise AssertionError(f"never: {what}") from None


async def test_monitor_edits_itself_only_when_shown_values_change(h: Harness) -> None:
    alice, _ = await long_position(h)
    clock = drive(h.svc.live)
    await alice.send("/monitor")
    assert "Monitoring 1 position on testnet" in alice.last_text, alice.transcript
    msg = monitor_message(alice)
    text = msg.content or ""
    assert "XBTUSD long 100" in text and "mark 60,000.0" in text, text
    # The next funding as BitMEX announces it (fundingTimestamp), not a schedule of ours
    funding = h.sim.engine.instrument("XBTUSD").funding_ts
    assert funding > NOW + timedelta(hours=3)  # so the 12:00 of the schedule would differ
    assert f"funding in {_until(funding - NOW)} · rate" in text, text
    assert "exits: SL 55,000.0" in text, text
    assert "liquidation" in text and "uPnL" in text and "$" in text

    clock.t += 5
    h.sim.engine.set_mark("XBTUSD", Decimal(61000))
    await until(h, lambda: "mark 61,000.0" in (msg.content or ""), "edited to 61,000")
    assert len(msg.history) == 1 and "ROE +" in (msg.content or "")

    clock.t += 5  # the same numbers again: nothing visible changed, no edit
    h.sim.engine.set_mark("XBTUSD", Decimal(61000))
    await h.emu.idle(timeout=5, quiet=0.2)
    assert len(msg.history) == 1

    h.sim.engine.set_mark("XBTUSD", Decimal(61200))  # the interval is over: at once
    await until(h, lambda: "mark 61,200.0" in (msg.content or ""),
                f"edited to 61,200 {clock.waits} {msg.content}")
    assert len(msg.history) == 2

    # within the interval: kept back, then shown once the interval is over
    h.sim.engine.set_mark("XBTUSD", Decimal(61500))
    h.sim.engine.set_mark("XBTUSD", Decimal(62000))
    # Wait for the monitor to hold the edit back (its wait starts), not for a quiet moment:
    # on PostgreSQL the position update takes longer to reach it than 0.2 s of quiet.
    await until(h, lambda: bool(clock.waits), "the edit held back")
    assert len(msg.history) == 2 and clock.waits, clock.waits
    assert all(0 < w <= 3 for w in clock.waits), clock.waits  # never sooner than 3 s
    clock.go.set()
    await until(h, lambda: "mark 62,000.0" in (msg.content or ""), "the kept-back edit")
    shown = [t.split("\n")[1] for t in msg.history if t]
    assert len(shown) == 3 and not any("61,500" in t for t in shown), shown

    await alice.send("/monitor off")
    assert "Monitor off" in alice.last_text
    clock.t += 5
    h.sim.engine.set_mark("XBTUSD", Decimal(63000))
    await h.emu.idle(timeout=5, quiet=0.2)
    assert len(msg.history) == 3 and "62,000.0" in (msg.content or "")
    await alice.send("/monitor off")
    assert alice.last_text == "The monitor is not running."


async def test_monitor_survives_a_restart_and_says_closed(h: Harness) -> None:
    alice, _ = await long_position(h)
    await alice.send("/monitor")
    msg = monitor_message(alice)
    await h.restart()
    clock = drive(h.svc.live)
    await h.svc.live.wait_ready(alice.id)
    clock.t += 5
    h.sim.engine.set_mark("XBTUSD", Decimal(60500))
    await until(h, lambda: "mark 60,500.0" in (msg.content or ""), "edited after restart")
    assert len([m for m in alice.messages if (m.content or "").startswith("📡 XBTUSD")]) == 1

    await alice.send("/close")
    await alice.press("✅ Confirm")
    await until(h, lambda: "Position closed" in (msg.content or ""), "closed")
    assert msg.reply_markup is None or not msg.reply_markup.get("inline_keyboard")
    async with h.svc.db.session() as s:
        assert (await s.exec(select(MonitorMessage))).all() == []


async def test_monitor_without_positions_and_bad_words(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    await alice.send("/monitor")
    assert alice.last_text == "No open positions to monitor (testnet)."
    await alice.send("/monitor sideways")
    assert "Only '/monitor', '/monitor off' or '/monitor pin'" in alice.last_text
    await alice.send("/monitor pin")
    assert alice.last_text == "The monitor is not running: /monitor starts it."


async def test_monitor_has_the_position_card_buttons(h: Harness) -> None:
    alice, _ = await long_position(h)
    h.sim.engine.set_mark("XBTUSD", Decimal(61000))  # past break-even: its button shows
    await alice.send("/monitor")
    msg = monitor_message(alice)
    await alice.send("/positions")
    card = alice.last
    assert msg.buttons == card.buttons[:-1], msg.buttons  # all but /positions' Panic row
    assert ["SL → break-even", "Trail SL 1 %"] in msg.buttons
    await alice.press("Close 100 %", msg)  # the same preview as on the card
    assert alice.last_text.startswith("CLOSE all XBTUSD long"), alice.last_text
    await alice.press("✖️ Cancel")
    await alice.press("SL → break-even", msg)
    assert "break-even" in alice.last_text and "✅ Confirm" in str(alice.last.buttons)
    await alice.press("✖️ Cancel")
    # Refresh re-reads BitMEX and shows the monitor's own text, not the card's
    h.sim.engine.set_mark("XBTUSD", Decimal(61500))
    await alice.press("🔄 Refresh", msg)
    await until(h, lambda: "mark 61,500.0" in (msg.content or ""), "refreshed")
    assert (msg.content or "").startswith("📡 XBTUSD") and msg.buttons == card.buttons[:-1]


async def test_monitor_pin_and_off_unpins(h: Harness) -> None:
    alice, _ = await long_position(h)
    await alice.send("/monitor")
    msg = monitor_message(alice)
    await alice.send("/monitor pin")
    assert alice.last_text.startswith("📌 Pinned"), alice.transcript
    assert h.emu.pinned(alice.chat, bot=h.bot_username) == [msg]
    await h.restart()  # the bot remembers what it pinned
    await h.svc.live.wait_ready(alice.id)
    await alice.send("/monitor off")
    assert "Monitor off" in alice.last_text
    assert h.emu.pinned(alice.chat, bot=h.bot_username) == []


async def test_a_new_monitor_unpins_the_old_messages(h: Harness) -> None:
    alice, _ = await long_position(h)
    await alice.send("/monitor")
    old = monitor_message(alice)
    await alice.send("/monitor pin")
    await alice.send("/monitor")  # a new set of messages: the old one is no longer pinned
    assert "Monitoring 1 position" in alice.last_text
    assert h.emu.pinned(alice.chat, bot=h.bot_username) == []
    assert old in alice.messages


async def test_a_pinned_monitor_is_unpinned_when_its_position_closes(h: Harness) -> None:
    alice, _ = await long_position(h)
    await alice.send("/monitor")
    msg = monitor_message(alice)
    await alice.send("/monitor pin")
    assert h.emu.pinned(alice.chat, bot=h.bot_username) == [msg]
    await alice.send("/close")
    await alice.press("✅ Confirm")
    await until(h, lambda: "Position closed" in (msg.content or ""), "closed")
    await h.settle()
    # "no longer updated" does not stay on top of the chat
    assert h.emu.pinned(alice.chat, bot=h.bot_username) == []
