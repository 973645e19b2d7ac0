"""Live updates end to end: fills, stop triggers, TP/SL, liquidations, /liqalert, /deadman.

Background messages (not replies) are awaited with the emulator's `wait_for`; the
simulator's market is moved with `set_mark` and its time with `clock.advance`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from bot.live import LiveUpdates
from tests.e2e.harness import Harness, Person


@pytest.fixture
def restore_marks(h: Harness) -> Iterator[None]:
    """The simulator is shared by the session: put the prices back for the next test."""
    engine = h.sim.engine
    saved = {s: (i.mark, i.last) for s, i in engine.instruments.items()}
    yield
    for symbol, (mark, last) in saved.items():
        engine.set_mark(symbol, mark, last=last)


def live(h: Harness) -> LiveUpdates:
    return h.svc.live


def mark(h: Harness, symbol: str = "XBTUSD") -> Decimal:
    return Decimal(h.sim.engine.instrument(symbol).mark)


def count(p: Person, needle: str) -> int:
    return sum(needle in t for t in p.bot_texts)


async def wait_text(h: Harness, p: Person, needle: str, n: int = 1,
                    timeout: float = 5.0) -> None:  # noqa: ASYNC109
    try:
        await h.emu.wait_for(lambda: count(p, needle) >= n, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"{needle!r} x{n} never arrived:\n{p.transcript}") from None


async def quiet(h: Harness) -> None:
    """Let anything still in flight arrive, so that 'exactly once' can be checked."""
    await h.emu.idle(timeout=5, quiet=0.3)


def open_orders(h: Harness, key: str) -> list[dict[str, object]]:
    return h.sim.engine.open_order_rows(h.sim.account(key).id)


async def trader(h: Harness, name: str = "Alice") -> tuple[Person, str]:
    p, key = await h.connected(name)
    await live(h).wait_ready(p.id)
    return p, key


def where(h: Harness, offset: int, symbol: str = "XBTUSD") -> Callable[[], str]:
    return lambda: str(mark(h, symbol) + offset)


# --- fills ---------------------------------------------------------------------------------


async def test_limit_from_card_partial_then_complete_fill(h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    price = mark(h) - 1000
    await alice.send(f"/buy 300 xbtusd limit {price}")
    await alice.press("✅ Confirm")
    [order] = open_orders(h, key)
    assert order["orderQty"] == 300 and order["ordStatus"] == "New"

    h.sim.engine.fill_order(str(order["orderID"]), 100)
    await wait_text(h, alice, "Filled 100/300 XBTUSD")
    assert "(buy, limit)" in alice.last_text
    h.sim.engine.set_mark("XBTUSD", price - 50)  # the market comes down through the limit
    await wait_text(h, alice, "Order filled")
    await quiet(h)
    assert "Buy 200 XBTUSD @ " + f"{price:,.1f}" in alice.last_text, alice.transcript
    assert "300 in all" in alice.last_text
    assert count(alice, "Filled 100/300") == 1 and count(alice, "Order filled") == 1
    assert open_orders(h, key) == []


async def test_stop_order_trigger_is_reported(h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    stop = mark(h) - 500
    await alice.send(f"/sell 100 xbtusd stop {stop}")
    await alice.press("✅ Confirm")
    [order] = open_orders(h, key)
    assert order["ordType"] == "Stop"

    h.sim.engine.set_mark("XBTUSD", stop - 100)
    await wait_text(h, alice, "Stop triggered")
    await wait_text(h, alice, "Order filled")
    await quiet(h)
    trigger = next(t for t in alice.bot_texts if "Stop triggered" in t)
    assert f"Sell 100 XBTUSD · stop {stop:,.1f}" in trigger
    assert "(stop)" in alice.last_text
    assert count(alice, "Stop triggered") == 1 and count(alice, "Order filled") == 1
    pos = [p for p in h.sim.engine.position_rows(h.sim.account(key).id) if p["currentQty"]]
    assert [p["currentQty"] for p in pos] == [-100]


async def test_tp_and_sl_placed_when_a_limit_entry_fills_then_tp_hit(
        h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    m = mark(h)
    entry, tp, sl = m - 1000, m + 1000, m - 2000
    await alice.send(f"/buy 100 xbtusd limit {entry} tp {tp} sl {sl}")
    await alice.press("✅ Confirm")
    assert len(open_orders(h, key)) == 1  # only the entry until it fills

    h.sim.engine.set_mark("XBTUSD", entry - 50)
    await wait_text(h, alice, "Exits placed")
    assert h.svc.live._exit_locks == {}  # the card's lock is not kept once exits are placed
    exits = {str(o["clOrdID"]).rsplit(":", 1)[-1]: o for o in open_orders(h, key)}
    assert set(exits) == {"sl", "tp1"}, exits
    assert exits["sl"]["ordType"] == "Stop" and Decimal(str(exits["sl"]["stopPx"])) == sl
    assert exits["tp1"]["ordType"] == "Limit" and Decimal(str(exits["tp1"]["price"])) == tp
    assert all("ReduceOnly" in str(o["execInst"]) for o in exits.values())

    h.sim.engine.set_mark("XBTUSD", tp + 100)
    await wait_text(h, alice, "Take-profit 1 hit")
    await quiet(h)
    assert f"Sell 100 XBTUSD @ {tp:,.1f}" in next(
        t for t in alice.bot_texts if "Take-profit 1 hit" in t)
    assert count(alice, "Take-profit") == 1 and count(alice, "Exits placed") == 1


async def test_stop_loss_hit_is_reported_as_such(h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    m = mark(h)
    sl = m - 1000
    await alice.send(f"/buy 100 xbtusd sl {sl}")
    await alice.press("✅ Confirm")  # a market entry: the press itself places the SL
    assert [str(o["clOrdID"]).endswith(":sl") for o in open_orders(h, key)] == [True]

    h.sim.engine.set_mark("XBTUSD", sl - 100)
    await wait_text(h, alice, "Stop-loss hit")
    await quiet(h)
    text = next(t for t in alice.bot_texts if "Stop-loss hit" in t)
    assert "Sell 100 XBTUSD" in text and "PnL −" in text
    assert count(alice, "Stop triggered") == 0  # the bot's own SL is not a "stop triggered"
    assert count(alice, "Stop-loss hit") == 1


async def test_liquidation_is_reported(h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    await alice.send("/liqalert off")
    await alice.send("/buy 100 xbtusd lev 50")
    await alice.press("✅ Confirm")
    [pos] = [p for p in h.sim.engine.position_rows(h.sim.account(key).id) if p["currentQty"]]
    liq = Decimal(str(pos["liquidationPrice"]))

    h.sim.engine.set_mark("XBTUSD", liq - 10)
    await wait_text(h, alice, "Position liquidated")
    await quiet(h)
    text = next(t for t in alice.bot_texts if "Position liquidated" in t)
    assert "your long 100 XBTUSD was closed" in text and "PnL −" in text
    assert count(alice, "Position liquidated") == 1
    assert count(alice, "Order filled") == 1  # the entry only: the liquidation is told once
    assert not [p for p in h.sim.engine.position_rows(h.sim.account(key).id)
                if p["currentQty"]]


async def test_fills_reported_once_across_socket_drops(h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    price = mark(h) - 1000
    await alice.send(f"/buy 300 xbtusd limit {price}")
    await alice.press("✅ Confirm")
    [order] = open_orders(h, key)
    oid = str(order["orderID"])

    await h.sim.faults.close_sockets()
    h.sim.engine.fill_order(oid, 100)  # while the private socket is down
    await wait_text(h, alice, "Filled 100/300")
    await live(h).wait_ready(alice.id)
    h.sim.engine.fill_order(oid, 100)
    await h.sim.faults.close_sockets()  # right after a fill: the partial replays it
    await wait_text(h, alice, "Filled 200/300")
    await live(h).wait_ready(alice.id)
    await h.sim.faults.close_sockets()
    h.sim.engine.fill_order(oid, 100)
    await wait_text(h, alice, "Order filled")
    await quiet(h)
    assert (count(alice, "Filled 100/300"), count(alice, "Filled 200/300"),
            count(alice, "Order filled")) == (1, 1, 1), alice.transcript


async def test_fill_while_the_bot_is_down_is_told_once_after_restart(
        h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    price = mark(h) - 1000
    await alice.send(f"/buy 300 xbtusd limit {price}")
    await alice.press("✅ Confirm")
    [order] = open_orders(h, key)
    oid = str(order["orderID"])
    h.sim.engine.fill_order(oid, 100)
    await wait_text(h, alice, "Filled 100/300")

    await h.stop()
    h.sim.engine.fill_order(oid, 100)  # nobody is watching
    await h._boot()
    await wait_text(h, alice, "Filled 200/300")
    await live(h).wait_ready(alice.id)
    await quiet(h)
    assert count(alice, "Filled 100/300") == 1  # not repeated by the restart

    await h.restart()  # nothing new: nothing told
    await live(h).wait_ready(alice.id)
    h.sim.engine.fill_order(oid, 100)
    await wait_text(h, alice, "Order filled")
    await quiet(h)
    assert (count(alice, "Filled 100/300"), count(alice, "Filled 200/300"),
            count(alice, "Order filled")) == (1, 1, 1), alice.transcript


async def test_paper_account_fills_are_reported(h: Harness) -> None:
    bob = h.person("Bob")
    await bob.send("/connect paper")
    assert "onnected" in bob.last_text, bob.transcript
    await bob.send("/buy 100 xbtusd")
    await bob.press("✅ Confirm")
    await wait_text(h, bob, "Order filled")
    assert "· paper" in next(t for t in bob.bot_texts if "Order filled" in t)


# --- /liqalert -------------------------------------------------------------------------------


async def test_liqalert_warns_once_per_crossing_and_off(h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    await alice.send("/liqalert 5%")
    assert "within 5 %" in alice.last_text
    await alice.send("/buy 100 xbtusd lev 10")
    await alice.press("✅ Confirm")
    [pos] = [p for p in h.sim.engine.position_rows(h.sim.account(key).id) if p["currentQty"]]
    liq = Decimal(str(pos["liquidationPrice"]))
    near, nearer, away = liq / Decimal("0.96"), liq / Decimal("0.98"), liq / Decimal("0.92")
    engine = h.sim.engine
    await quiet(h)
    assert count(alice, "Liquidation near") == 0  # ~8.7 % away at 10x

    engine.set_mark("XBTUSD", near)
    await wait_text(h, alice, "Liquidation near")
    assert f"liquidation price {liq:,.1f}" in alice.last_text
    engine.set_mark("XBTUSD", nearer)
    engine.set_mark("XBTUSD", near)
    await quiet(h)
    assert count(alice, "Liquidation near") == 1  # once per crossing

    engine.set_mark("XBTUSD", away)  # recovered: armed again
    engine.set_mark("XBTUSD", near)
    await wait_text(h, alice, "Liquidation near", n=2)

    await alice.send("/liqalert off")
    assert "off" in alice.last_text
    engine.set_mark("XBTUSD", away)
    engine.set_mark("XBTUSD", nearer)
    await quiet(h)
    assert count(alice, "Liquidation near") == 2


# --- /deadman --------------------------------------------------------------------------------


async def test_deadman_arms_disarms_and_cancels_when_the_bot_stops_refreshing(
        h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    engine, account = h.sim.engine, h.sim.account(key)
    await alice.send("/deadman 60")
    assert "on" in alice.last_text and "60 s" in alice.last_text, alice.transcript
    assert account.cancel_at is not None
    assert (account.cancel_at - engine.clock.now()).total_seconds() == 60

    await alice.send("/deadman off")
    assert "off" in alice.last_text
    assert account.cancel_at is None

    await alice.send("/deadman 60")
    await alice.send(f"/buy 100 xbtusd limit {mark(h) - 1000}")
    await alice.press("✅ Confirm")
    assert len(open_orders(h, key)) == 1

    # Alive: the switch is refreshed before it runs out, on the exchange's clock.
    live(h).set_refresh_interval(0.02)
    engine.clock.advance(40)
    armed = account.cancel_at
    await h.emu.wait_for(lambda: account.cancel_at is not None and account.cancel_at > armed)
    engine.clock.advance(40)  # 80 s after arming: would have fired without the refresh
    assert len(open_orders(h, key)) == 1

    # "Dead": no more refreshes, and 60 s later BitMEX cancels everything.
    live(h).pause_deadman()
    await quiet(h)
    engine.clock.advance(61)
    assert open_orders(h, key) == []
    await wait_text(h, alice, "Dead-man's switch fired")


async def test_deadman_refresh_failures_are_told(h: Harness) -> None:
    alice, _ = await trader(h)
    await alice.send("/deadman 60")
    h.sim.faults.fail_next(10_000, status=503, route="order/cancelAllAfter")
    live(h).set_refresh_interval(0.02)
    await wait_text(h, alice, "could not be refreshed")
    assert "may be cancelled in" in alice.last_text
    h.sim.faults.clear()
    await wait_text(h, alice, "refreshed again")
    live(h).set_refresh_interval(15)
    await quiet(h)
    assert count(alice, "could not be refreshed") == 1


async def test_deadman_needs_a_trading_key(h: Harness) -> None:
    carol = h.person("Carol")
    await carol.send("/deadman 60")
    assert "connect a key with Order permission" in carol.last_text


async def test_connected_accounts_share_one_instrument_list(h: Harness) -> None:
    """Two traders' order previews read one network's contract specs from one list:
    each account's client used to load (and keep) a copy of its own."""
    alice, _ = await h.connected("Alice")
    bob, _ = await h.connected("Bob")
    for p in (alice, bob):
        await p.send("/buy 100 XBTUSD @ 20000")
        assert "Confirm" in p.transcript, p.transcript
    a = await h.svc.accounts.exchange(alice.id)
    b = await h.svc.accounts.exchange(bob.id)
    assert a is not b
    assert getattr(a, "catalog") is getattr(b, "catalog")  # noqa: B009
    assert "XBTUSD" in getattr(a, "catalog").by_symbol  # noqa: B009
