"""Failures injected into every user flow: BitMEX answering 503, 429, 400 or nothing,
sockets dropping, Telegram's 429s and blocked users, and the bot restarting mid-order.

For each flow the test checks what a user would notice: a clear message (never a
traceback, never a bare apology for expected exchange trouble), the exchange holding
exactly one order or none, the card ending in a truthful state, and no message lost
or doubled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from bot.exchange.client import BitmexClient
from tests.e2e.harness import Harness, Person
from tests.e2e.helpers import all_orders, open_orders, position_qty
from tests.e2e.timing import drive_time

APOLOGY = "Sorry, something went wrong"

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


def no_traceback(p: Person) -> None:
    t = p.transcript
    assert "Traceback" not in t and "Error(" not in t and "aiohttp" not in t, t


@pytest.fixture(autouse=True)
def steady_market(h: Harness) -> Iterator[None]:
    engine = h.sim.engine
    saved = {s: (i.mark, i.last) for s, i in engine.instruments.items()}
    engine.set_spread("XBTUSD", Decimal(0))
    engine.set_mark("XBTUSD", Decimal(60000))
    yield
    h.sim.faults.clear()
    for symbol, (mark, last) in saved.items():
        engine.set_mark(symbol, mark, last=last)


async def client_of(h: Harness, p: Person) -> BitmexClient:
    ex = await h.svc.accounts.exchange(p.id, "testnet")
    assert isinstance(ex, BitmexClient)
    return ex


def card_id(card: Any) -> int:
    """The id of a card that still shows its buttons."""
    return int(card.reply_markup["inline_keyboard"][0][0]["callback_data"].split(":")[2])


def short_timeout(ex: BitmexClient, seconds: float = 0.3) -> None:
    ex.timeout = aiohttp.ClientTimeout(total=seconds)


# --- previews --------------------------------------------------------------------------


async def test_preview_while_bitmex_answers_503(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    h.sim.faults.fail_next(1000, status=503, route="instrument", method="GET")
    await alice.send("/buy 100 xbtusd")
    h.sim.faults.clear()
    assert "BitMEX is not answering" in alice.last_text and "ref" not in alice.last_text
    assert alice.last.buttons == []
    assert all_orders(h, key) == []
    no_traceback(alice)


async def test_preview_while_every_bitmex_call_answers_503_after_restart(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    await h.restart()  # cold caches
    for route in ("instrument/active", "instrument", "position", "user/margin"):
        h.sim.faults.fail_next(1000, status=503, route=route, method="GET")
    await alice.send("/buy 100 xbtusd")
    assert "BitMEX is not answering" in alice.last_text
    await alice.send("/help")  # needs nothing from BitMEX
    assert "/buy SIZE" in alice.last_text
    h.sim.faults.clear()
    no_traceback(alice)


async def test_preview_times_out(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    short_timeout(await client_of(h, alice))
    h.sim.faults.latency = 1.0
    await alice.send("/buy 100 xbtusd")
    h.sim.faults.latency = 0
    # Not "Unknown symbol XBTUSD" (the instrument list timed out, the symbol is fine).
    assert "BitMEX is not answering" in alice.last_text, alice.transcript
    assert all_orders(h, key) == []
    no_traceback(alice)


# --- confirm ---------------------------------------------------------------------------


async def test_confirm_through_two_503s_places_exactly_one(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    card = await alice.send("/buy 100 xbtusd")
    h.sim.faults.fail_next(2, status=503)
    assert card is not None
    await alice.press("✅ Confirm", card)
    assert "Filled" in (card.content or "") and card.buttons == []
    assert len(all_orders(h, key)) == 1 and position_qty(h, key) == 100


async def test_confirm_while_bitmex_stays_overloaded(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    card = await alice.send("/buy 100 xbtusd")
    assert card is not None
    iid = card_id(card)
    h.sim.faults.fail_next(100, status=503)
    answer = await alice.press("✅ Confirm", card)
    text = card.content or ""
    # Not "rejected" (BitMEX refused nothing) and not "may or may not" (503 is certain).
    assert "Not sent: BitMEX is overloaded" in text and "Nothing reached the exchange" in text
    # The press was answered at once ("Sending…"); the card tells the outcome.
    assert card.buttons == [] and answer is not None and "Sending" in (answer.text or "")
    assert all_orders(h, key) == []
    h.sim.faults.clear()
    # the dead card stays dead; a new preview goes through
    again = await h.svc.trading.press(alice.id, "c", iid)
    assert again.alert == "Already handled." and all_orders(h, key) == []
    await alice.send("/buy 100 xbtusd")
    await alice.press("✅ Confirm")
    assert len(all_orders(h, key)) == 1 and position_qty(h, key) == 100
    no_traceback(alice)


async def test_confirm_with_dropped_answer(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    card = await alice.send("/buy 100 xbtusd")
    assert card is not None
    h.sim.faults.drop_after_accept(1)
    await alice.press("✅ Confirm", card)
    assert "Filled" in (card.content or "")
    assert len(all_orders(h, key)) == 1 and position_qty(h, key) == 100


async def test_confirm_with_hanging_answer(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    short_timeout(await client_of(h, alice))
    card = await alice.send("/buy 100 xbtusd")
    assert card is not None
    h.sim.faults.drop_after_accept(1, mode="hang")
    await alice.press("✅ Confirm", card)
    assert "Filled" in (card.content or "")
    assert len(all_orders(h, key)) == 1 and position_qty(h, key) == 100


async def test_confirm_meets_429(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    card = await alice.send("/buy 100 xbtusd")
    assert card is not None
    h.sim.faults.fail_next(1, status=429)  # Retry-After: 1 -> waited out, then sent once
    await alice.press("✅ Confirm", card)
    assert "Filled" in (card.content or "")
    assert len(all_orders(h, key)) == 1 and position_qty(h, key) == 100


async def test_confirm_meets_400(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    card = await alice.send("/buy 100 xbtusd")
    assert card is not None
    h.sim.faults.fail_next(1, status=400)
    await alice.press("✅ Confirm", card)
    assert "❌ Rejected: Injected failure" in (card.content or "") and card.buttons == []
    assert all_orders(h, key) == []


async def test_engine_lag_on_a_confirmed_market_order_fills_once(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    ex = await client_of(h, alice)
    short_timeout(ex)  # the client gives up waiting for the answer long before BitMEX acts
    waited = drive_time(h, ex)
    card = await alice.send("/buy 100 xbtusd")
    assert card is not None
    h.sim.faults.engine_lag(1, seconds=12)
    await alice.press("✅ Confirm", card)
    text = card.content or ""
    assert "Filled" in text and card.buttons == [], text
    assert waited[0] >= 12  # it was looked up until BitMEX had taken it, not re-sent
    h.sim.engine.clock.advance(60)  # anything still on its way would arrive now
    assert len(all_orders(h, key)) == 1 and position_qty(h, key) == 100  # not 200
    no_traceback(alice)


async def test_order_lost_on_the_way_is_told_not_placed(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    ex = await client_of(h, alice)
    short_timeout(ex)
    drive_time(h, ex)
    card = await alice.send("/buy 100 xbtusd")
    assert card is not None
    h.sim.faults.engine_lag(1, seconds=300)  # reaches the engine after its api-expires
    await alice.press("✅ Confirm", card)
    text = card.content or ""
    assert "Not placed: it never reached BitMEX" in text and "send it again" in text, text
    h.sim.engine.clock.advance(300)
    assert all_orders(h, key) == [] and position_qty(h, key) == 0
    no_traceback(alice)


# --- cancel and close ------------------------------------------------------------------


async def test_cancel_through_503s_and_while_bitmex_stays_down(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 100 xbtusd limit 50000")
    await alice.press("✅ Confirm")
    [order] = open_orders(h, key)

    # BitMEX overloaded throughout: the card says nothing happened, and the order is there
    await alice.send("/cancel 1")
    card = alice.last
    h.sim.faults.fail_next(100, status=503, route="order", method="DELETE")
    await alice.press("✅ Confirm", card)
    h.sim.faults.clear()
    assert "Not sent: BitMEX is overloaded" in (card.content or ""), card.content
    assert [o["orderID"] for o in open_orders(h, key)] == [order["orderID"]]

    # two 503s, then through: cancelled once
    await alice.send("/cancel 1")
    card = alice.last
    h.sim.faults.fail_next(2, status=503, route="order", method="DELETE")
    await alice.press("✅ Confirm", card)
    assert "Cancelled 1 order" in (card.content or ""), card.content
    assert open_orders(h, key) == []
    no_traceback(alice)


async def test_cancel_whose_answers_are_lost_is_not_called_rejected(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 100 xbtusd limit 50000")
    await alice.press("✅ Confirm")
    await alice.send("/cancel 1")
    card = alice.last
    # 502s: the gateway may have passed it on; the bot cannot know whether it happened
    h.sim.faults.fail_next(100, status=502, route="order", method="DELETE")
    await alice.press("✅ Confirm", card)
    h.sim.faults.clear()
    text = card.content or ""
    assert "Rejected" not in text and "can't tell whether it happened" in text, text
    assert "/orders" in text
    assert len(open_orders(h, key)) == 1  # (this 502 never reached the engine)
    no_traceback(alice)


async def test_close_while_bitmex_is_overloaded_then_after(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 200 xbtusd")
    await alice.press("✅ Confirm")
    assert position_qty(h, key) == 200
    await alice.send("/close")
    card = alice.last
    h.sim.faults.fail_next(100, status=503)
    await alice.press("✅ Confirm", card)
    h.sim.faults.clear()
    assert "Not sent" in (card.content or "") and position_qty(h, key) == 200
    # the Close button under /positions works once BitMEX is back
    await alice.send("/positions")
    await alice.press("Close 100 %")
    await alice.press("✅ Confirm")
    assert position_qty(h, key) == 0
    assert len([o for o in all_orders(h, key) if o["ordType"] == "Market"]) == 2
    no_traceback(alice)


async def test_close_while_bitmex_sheds_load(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 300 xbtusd")
    await alice.press("✅ Confirm")
    assert position_qty(h, key) == 300
    h.sim.faults.load_shedding = True
    # a partial close needs a size: its card warns, and BitMEX refuses it
    await alice.send("/close 100")
    card = alice.last
    assert "refuses those while it sheds load" in (card.content or ""), card.content
    await alice.press("✅ Confirm", card)
    assert "Not sent: BitMEX is overloaded" in (card.content or "") and position_qty(h, key) == 300
    # a new order is refused too
    await alice.send("/buy 100 xbtusd")
    await alice.press("✅ Confirm")
    assert "Not sent: BitMEX is overloaded" in alice.last_text and position_qty(h, key) == 300
    # the full close is execInst Close with no quantity: it gets through
    await alice.send("/close")
    card = alice.last
    assert "CLOSE all XBTUSD long" in (card.content or "")
    assert "sheds load" not in (card.content or "")
    await alice.press("✅ Confirm", card)
    assert "Filled" in (card.content or ""), card.content
    assert position_qty(h, key) == 0
    [close] = [o for o in all_orders(h, key) if o["ordStatus"] == "Filled" and o["side"] == "Sell"]
    assert close["execInst"] == "Close" and close["cumQty"] == 300
    # and the Close button under /positions does the same
    h.sim.faults.load_shedding = False
    await alice.send("/buy 200 xbtusd")
    await alice.press("✅ Confirm")
    h.sim.faults.load_shedding = True
    await alice.send("/positions")
    await alice.press("Close 100 %")
    await alice.press("✅ Confirm")
    assert position_qty(h, key) == 0
    no_traceback(alice)


# --- reading commands ------------------------------------------------------------------


@pytest.mark.parametrize(("command", "route"), [
    ("/positions", "position"),
    ("/balance", "user/margin"),
    ("/orders", "order"),
    ("/pnl 7d", "execution/tradeHistory"),
    ("/chart XBTUSD 1h 24", "trade/bucketed"),
])
async def test_reading_commands_while_bitmex_answers_503(h: Harness, command: str,
                                                         route: str) -> None:
    alice, _ = await h.connected("Alice")
    h.sim.faults.fail_next(1000, status=503, route=route, method="GET")
    await alice.send(command)
    h.sim.faults.clear()
    text = alice.last_text
    assert "BitMEX is not answering right now" in text or (
        command.startswith("/chart") and "No chart for XBTUSD right now" in text
        and "overloaded" in text), alice.transcript
    assert "ref " not in text and APOLOGY not in alice.transcript
    no_traceback(alice)
    await alice.send(command)  # and it works again once BitMEX is back
    assert "not answering" not in alice.last_text


@pytest.mark.parametrize("command", ["/positions", "/balance", "/orders", "/pnl 7d",
                                     "/chart XBTUSD 1h 24"])
async def test_reading_commands_when_bitmex_times_out(h: Harness, command: str) -> None:
    alice, _ = await h.connected("Alice")
    short_timeout(await client_of(h, alice))
    h.svc.market("testnet").timeout = aiohttp.ClientTimeout(total=0.3)  # type: ignore[attr-defined]
    h.sim.faults.latency = 1.0
    await alice.send(command)
    h.sim.faults.latency = 0
    assert "BitMEX is not answering right now" in alice.last_text, alice.transcript
    assert APOLOGY not in alice.transcript
    no_traceback(alice)


async def test_price_while_bitmex_rest_answers_503(h: Harness) -> None:
    alice = h.person("Alice")
    h.sim.faults.fail_next(1000, status=503, route="instrument", method="GET")
    await alice.send("/price XBTUSD")
    h.sim.faults.clear()
    text = alice.last_text
    assert "XBTUSD" in text or "BitMEX is not answering" in text, alice.transcript
    assert APOLOGY not in alice.transcript
    no_traceback(alice)


# --- a restart between Confirm and the order's answer ------------------------------------


async def test_restart_while_the_order_post_hangs_settles_once(h: Harness) -> None:
    from tests.e2e.test_live import count, quiet, wait_text

    alice, key = await h.connected("Alice")
    await h.svc.live.wait_ready(alice.id)
    ex = await client_of(h, alice)
    short_timeout(ex, 1.0)
    drive_time(h, ex)  # the lookups' waits pass in simulated time
    card = await alice.send("/buy 100 xbtusd")
    assert card is not None
    iid = card_id(card)
    # BitMEX takes the order and never answers; lookups by clOrdID fail too
    h.sim.faults.drop_after_accept(1, mode="hang")
    h.sim.faults.fail_next(1000, status=503, route="order", method="GET")
    h.emu.press(alice.user, card, "✅ Confirm", bot=h.bot_username)
    await h.emu.wait_for(lambda: len(all_orders(h, key)) == 1)
    # the bot goes down (a redeploy) while the press is in flight: the press ends
    # without an answer, so the card says so instead of guessing
    await h.stop()
    assert "may or may not be on the exchange" in (card.content or ""), card.content
    h.sim.faults.clear()  # BitMEX recovers; the new process settles the card at start
    await h._boot()
    await h.emu.wait_for(lambda: "Filled" in (card.content or ""), timeout=10)
    assert card.buttons == []
    again = await h.svc.trading.press(alice.id, "c", iid)
    assert again.alert == "Already handled." and "Filled" in again.text
    assert len(all_orders(h, key)) == 1 and position_qty(h, key) == 100
    await wait_text(h, alice, "Order filled")
    await quiet(h)
    assert count(alice, "Order filled") == 1, alice.transcript  # told once, across the restart
    no_traceback(alice)


def _crash_pending_presses() -> None:
    """The process dies mid-press: the press's work stops where it is (no answer, no
    lookup, no edit), as a kill would leave it."""
    for task in asyncio.all_tasks():
        coro: object = task.get_coro()
        while coro is not None:
            code = getattr(coro, "cr_code", None)
            if code is not None and code.co_name == "_execute":
                task.cancel()
                break
            coro = getattr(coro, "cr_await", None)


async def test_restart_while_bitmex_lags_is_not_told_not_placed_too_early(h: Harness) -> None:
    from bot.trading import settle_cards

    alice, key = await h.connected("Alice")
    short_timeout(await client_of(h, alice), 1.0)
    card = await alice.send("/buy 100 xbtusd")
    assert card is not None
    # BitMEX accepts the POST but its engine takes 12 s; the bot is redeployed meanwhile
    h.sim.faults.engine_lag(1, seconds=12)
    h.emu.press(alice.user, card, "✅ Confirm", bot=h.bot_username)
    await h.emu.wait_for(lambda: h.sim.faults.held == 1)
    _crash_pending_presses()
    await h.stop()
    await h._boot()
    # at start the order is not on BitMEX yet - but it may still arrive: no verdict
    await h.emu.wait_for(lambda: "may or may not be on the exchange" in (card.content or ""))
    assert "never reached" not in (card.content or "") and all_orders(h, key) == []
    h.sim.engine.clock.advance(12)  # the engine takes it now
    await h.emu.wait_for(lambda: position_qty(h, key) == 100)
    real_now = h.svc.trading.now
    h.svc.trading.now = lambda: real_now() + timedelta(minutes=3)
    try:
        assert await settle_cards(h.svc.trading, h.svc.notifier) == 1
    finally:
        h.svc.trading.now = real_now
    await h.emu.wait_for(lambda: "Filled" in (card.content or ""))
    assert len(all_orders(h, key)) == 1 and position_qty(h, key) == 100
    no_traceback(alice)


# --- sockets dropping: alerts and fills ----------------------------------------------------


@pytest.fixture
def telegram_limits(h: Harness) -> Iterator[None]:
    """The emulator serves the whole session: flood limits off again afterwards."""
    from bot.sandbox.telegram import FloodLimits

    yield
    h.emu.limits = FloodLimits.off()


async def test_alert_across_market_socket_drops_fires_exactly_once(h: Harness) -> None:
    from tests.e2e.test_alerts import ready, rows
    from tests.e2e.test_live import count, quiet, wait_text

    alice = h.person("Alice")
    p0 = h.sim.engine.instrument("XBTUSD").mark
    await alice.send(f"/alert xbtusd above {p0 + 1000}")
    assert "Alert set" in alice.last_text
    await ready(h)
    await h.sim.faults.close_sockets()
    h.sim.engine.set_mark("XBTUSD", p0 + 1100)  # crossed while the socket is down
    await wait_text(h, alice, "🔔")  # the snapshot after the reconnect carries it
    await h.sim.faults.close_sockets()  # and the next snapshot repeats the same price
    h.sim.engine.set_mark("XBTUSD", p0 + 1200)
    await ready(h)
    await quiet(h)
    assert count(alice, "🔔") == 1, alice.transcript
    assert [r.state for r in await rows(h)] == ["sent"]


async def test_fills_while_sockets_drop_and_telegram_throttles_arrive_once_in_order(
        h: Harness, telegram_limits: None) -> None:
    from bot.sandbox.telegram import FloodLimits
    from tests.e2e.test_live import count, quiet, wait_text

    alice, key = await h.connected("Alice")
    await h.svc.live.wait_ready(alice.id)
    for px in (50000, 50100, 50200, 50300):
        await alice.send(f"/buy 100 xbtusd limit {px}")
        await alice.press("✅ Confirm")
    ids = {int(o["price"]): str(o["orderID"]) for o in open_orders(h, key)}
    assert len(ids) == 4
    # Telegram is stricter than the bot's own pacing: some sends meet 429s
    h.emu.limits = FloodLimits(per_chat_per_sec=2, burst=1, time_scale=1)
    before_429 = h.emu.count("sendMessage", status=429)
    h.sim.engine.fill_order(ids[50000], 100)
    await h.sim.faults.close_sockets()
    h.sim.engine.fill_order(ids[50100], 100)  # while the private socket is down
    h.sim.engine.fill_order(ids[50200], 100)
    await h.sim.faults.close_sockets()
    h.sim.engine.fill_order(ids[50300], 100)
    await wait_text(h, alice, "Order filled", n=4, timeout=15)
    await quiet(h)
    fills = [t for t in alice.bot_texts if "Order filled" in t]
    assert len(fills) == 4, alice.transcript
    assert [next(p for p in ("50,000", "50,100", "50,200", "50,300") if p in t)
            for t in fills] == ["50,000", "50,100", "50,200", "50,300"], fills
    assert count(alice, "Order filled") == 4
    assert h.emu.count("sendMessage", status=429) >= before_429  # (paced, maybe refused)
    assert position_qty(h, key) == 400


async def test_alerts_to_a_user_who_blocked_the_bot_do_not_stop_others(
        h: Harness) -> None:
    from tests.e2e.test_alerts import ready, rows
    from tests.e2e.test_live import count, quiet, wait_text

    alice, bob = h.person("Alice"), h.person("Bob")
    p0 = h.sim.engine.instrument("XBTUSD").mark
    await alice.send(f"/alert xbtusd above {p0 + 1000}")
    await bob.send(f"/alert xbtusd above {p0 + 1000}")
    await ready(h)
    h.emu.block_bot(alice.user, bot=h.bot_username)
    await h.settle()
    before = h.emu.count("sendMessage", status=403)
    h.sim.engine.set_mark("XBTUSD", p0 + 1100)
    await wait_text(h, bob, "🔔")
    await quiet(h)
    assert count(alice, "🔔") == 0 and count(bob, "🔔") == 1
    assert h.emu.count("sendMessage", status=403) - before <= 1  # no hammering
    # Alice's never reached her, so it is not recorded as sent (it stays 'fired', for the
    # next start within a day); it is not retried meanwhile.
    assert sorted(r.state for r in await rows(h)) == ["fired", "sent"]
    # unblocking and talking again: the bot answers, and nothing old is replayed
    h.emu.unblock_bot(alice.user, bot=h.bot_username)
    await alice.send("/alerts")
    assert "🔔" not in alice.transcript
    assert "ref " not in alice.last_text


async def test_cancel_interrupted_by_a_crash_is_not_called_rejected(h: Harness) -> None:
    from bot.trading import CONFIRMED, PENDING

    alice, key = await h.connected("Alice")
    await alice.send("/buy 100 xbtusd limit 50000")
    await alice.press("✅ Confirm")
    card = await alice.send("/cancel 1")
    assert card is not None
    # the press won the card, then the process died before BitMEX answered
    assert await h.svc.trading._claim(card_id(card), alice.id, (PENDING,), CONFIRMED)
    v = card.version
    await h.restart()
    await h.emu.wait_edit(card, since=v)
    text = card.content or ""
    assert "Rejected" not in text and "/orders" in text and card.buttons == [], text
    assert len(open_orders(h, key)) == 1  # not retried behind the user's back


async def test_exits_already_placed_before_a_crash_are_not_reported_as_failed(
        h: Harness) -> None:
    from bot.db.models import OrderCard

    alice, key = await h.connected("Alice")
    card = await alice.send("/buy 100 xbtusd sl 55k")
    assert card is not None
    iid = card_id(card)
    await alice.press("✅ Confirm", card)
    assert "SL 55,000" in (card.content or "") and "placed" in (card.content or "")
    # a crash between placing the stop and recording it: neither it nor the flag was written
    async with h.svc.db.session() as s:
        row = await s.get(OrderCard, iid)
        assert row is not None
        row.intent = {k: v for k, v in row.intent.items()
                      if k not in ("exits_placed", "exits_done")}
        s.add(row)
        await s.commit()
    placed = await h.svc.trading.place_exits(iid)  # the settle after a restart does this
    assert [o.stop_px for o in placed] == [Decimal(55000)]
    assert [(o["ordType"], o["stopPx"]) for o in open_orders(h, key)] == [("Stop", 55000)]
