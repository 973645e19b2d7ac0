"""Failures injected into every user flow: BitMEX answering 503, 429, 400 or nothing,
sockets dropping, Telegram's 429s and blocked users, and the bot restarting mid-order.

For each flow the test checks what a user would notice: a clear message (never a
traceback, never a bare apology for expected exchange trouble), the exchange holding
exactly one order or none, the card ending in a truthful state, and no message lost
or doubled.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from bot.exchange.client import BitmexClient
from tests.e2e.harness import Harness, Person

APOLOGY = "Sorry, something went wrong"


def all_orders(h: Harness, key: str) -> list[dict[str, Any]]:
    return h.sim.engine.order_rows(h.sim.account(key).id)


def open_orders(h: Harness, key: str) -> list[dict[str, Any]]:
    return h.sim.engine.open_order_rows(h.sim.account(key).id)


def position_qty(h: Harness, key: str, symbol: str = "XBTUSD") -> int:
    for row in h.sim.engine.position_rows(h.sim.account(key).id):
        if row["symbol"] == symbol:
            return int(row["currentQty"])
    return 0


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


def intent_id(card: Any) -> int:
    """The intent behind a card that still shows its buttons."""
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
    alice, key = await h.connected("Alice")
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
    iid = intent_id(card)
    h.sim.faults.fail_next(100, status=503)
    answer = await alice.press("✅ Confirm", card)
    text = card.content or ""
    # Not "rejected" (BitMEX refused nothing) and not "may or may not" (503 is certain).
    assert "Not sent: BitMEX is overloaded" in text and "Nothing reached the exchange" in text
    assert card.buttons == [] and answer is not None and "Not sent" in (answer.text or "")
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
    await alice.press("Close XBTUSD")
    await alice.press("✅ Confirm")
    assert position_qty(h, key) == 0
    assert len([o for o in all_orders(h, key) if o["ordType"] == "Market"]) == 2
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
