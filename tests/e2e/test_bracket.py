"""Exits that behave like a bracket (issue #14 item 2), as conversations.

BitMEX has no linked orders, so the bot keeps a position's SL and TPs consistent: a flat
position leaves no open exit, a TP that took part of it shrinks the SL by PUT /order (the
same orderID, the simulator's book holding the amended size), also for what happened while
the bot was down, and a fill told twice never amends twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.e2e.harness import Harness, Person
from tests.e2e.test_live import count, live, mark, open_orders, quiet, trader, wait_text

CLOSED = "XBTUSD position closed"
FOLLOWS = "SL follows the position"


@pytest.fixture
def restore_marks(h: Harness) -> Iterator[None]:
    engine = h.sim.engine
    saved = {s: (i.mark, i.last) for s, i in engine.instruments.items()}
    yield
    for symbol, (m, last) in saved.items():
        engine.set_mark(symbol, m, last=last)


def exits(h: Harness, key: str) -> dict[str, dict[str, object]]:
    """The account's open orders on the simulator, by leg ("sl", "tp1", …)."""
    return {str(o["clOrdID"]).rsplit(":", 1)[-1]: o for o in open_orders(h, key)}


def position(h: Harness, key: str, symbol: str = "XBTUSD") -> int:
    rows = [p for p in h.sim.engine.position_rows(h.sim.account(key).id)
            if p["symbol"] == symbol]
    return int(rows[0]["currentQty"]) if rows else 0


def amends(h: Harness, key: str, order_id: object) -> int:
    """How many times the simulator amended this order (execType Replaced)."""
    return sum(1 for r in h.sim.engine.execution_rows(h.sim.account(key).id)
               if r["orderID"] == order_id and r["execType"] == "Replaced")


async def bracket(h: Harness, p: Person, key: str, qty: int, tps: int = 2
                  ) -> tuple[Decimal, list[Decimal]]:
    """A market long with an SL 1000 below and `tps` TPs 1000 apart above."""
    m = mark(h)
    sl = m - 1000
    targets = [m + 1000 * (i + 1) for i in range(tps)]
    await p.send(f"/buy {qty} xbtusd sl {sl} tp {','.join(str(t) for t in targets)}")
    await p.press("✅ Confirm")
    legs = exits(h, key)
    assert set(legs) == {"sl", *(f"tp{i + 1}" for i in range(tps))}, p.transcript
    return sl, targets


async def test_sl_fills_and_the_tps_are_cancelled(h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    sl, _ = await bracket(h, alice, key, 200)

    h.sim.engine.set_mark("XBTUSD", sl - 100)
    await wait_text(h, alice, "Stop-loss hit")
    await wait_text(h, alice, CLOSED)
    await quiet(h)
    assert position(h, key) == 0
    assert open_orders(h, key) == [], open_orders(h, key)
    told = next(t for t in alice.bot_texts if CLOSED in t)
    assert "TP1 100 @" in told and "TP2 100 @" in told and "SL" not in told
    assert count(alice, CLOSED) == 1


async def test_tp1_shrinks_the_sl_and_the_last_tp_cancels_it(
        h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    _, (tp1, tp2) = await bracket(h, alice, key, 200)
    sl_id = exits(h, key)["sl"]["orderID"]

    h.sim.engine.set_mark("XBTUSD", tp1 + 100)
    await wait_text(h, alice, "Take-profit 1 hit")
    await wait_text(h, alice, FOLLOWS)
    await quiet(h)
    legs = exits(h, key)
    assert set(legs) == {"sl", "tp2"}
    # amended in place (PUT /order), not cancelled and placed anew
    assert legs["sl"]["orderID"] == sl_id and legs["sl"]["orderQty"] == 100
    assert legs["sl"]["leavesQty"] == 100 and amends(h, key, sl_id) == 1
    assert "now 100 (was 200)" in next(t for t in alice.bot_texts if FOLLOWS in t)

    h.sim.engine.set_mark("XBTUSD", tp2 + 100)
    await wait_text(h, alice, "Take-profit 2 hit")
    await wait_text(h, alice, CLOSED)
    await quiet(h)
    assert position(h, key) == 0 and open_orders(h, key) == []
    assert "SL 100 @" in next(t for t in alice.bot_texts if CLOSED in t)
    assert count(alice, FOLLOWS) == 1 and count(alice, CLOSED) == 1


async def test_tp_partial_fill_shrinks_the_sl_once_even_when_the_fill_is_replayed(
        h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    await bracket(h, alice, key, 300, tps=1)
    legs = exits(h, key)
    sl_id, tp_id = legs["sl"]["orderID"], legs["tp1"]["orderID"]

    h.sim.engine.fill_order(str(tp_id), 100)  # TP1 takes a third
    await h.sim.faults.close_sockets()  # right after the fill: the partial replays it
    await wait_text(h, alice, FOLLOWS)
    await live(h).wait_ready(alice.id)
    await quiet(h)
    legs = exits(h, key)
    assert legs["sl"]["orderID"] == sl_id and legs["sl"]["orderQty"] == 200
    assert legs["tp1"]["leavesQty"] == 200 and position(h, key) == 200
    assert amends(h, key, sl_id) == 1 and count(alice, FOLLOWS) == 1, alice.transcript

    # the same fill told again (a replay the stream did not filter) changes nothing
    w = live(h)._watches[(alice.id, "testnet")]
    await w.source.wait_ready(5)
    await live(h).reconcile_exits(w, "XBTUSD")
    await quiet(h)
    assert amends(h, key, sl_id) == 1 and count(alice, FOLLOWS) == 1


async def test_manual_close_cancels_the_exits(h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    await bracket(h, alice, key, 200)

    await alice.send("/close xbtusd")
    await alice.press("✅ Confirm")
    await wait_text(h, alice, CLOSED)
    await quiet(h)
    assert position(h, key) == 0 and open_orders(h, key) == []
    told = next(t for t in alice.bot_texts if CLOSED in t)
    assert "SL 200 @" in told and "TP1 100 @" in told and "TP2 100 @" in told


async def test_partial_manual_close_shrinks_the_sl(h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    await bracket(h, alice, key, 200)
    sl_id = exits(h, key)["sl"]["orderID"]

    await alice.send("/close xbtusd 50%")
    await alice.press("✅ Confirm")
    await wait_text(h, alice, FOLLOWS)
    await quiet(h)
    legs = exits(h, key)
    assert position(h, key) == 100
    assert legs["sl"]["orderID"] == sl_id and legs["sl"]["orderQty"] == 100
    assert {"tp1", "tp2"} <= set(legs)  # TPs are limits: BitMEX trims them when they fill


async def test_liquidation_leaves_no_exit(h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    await alice.send("/liqalert off")
    m = mark(h)
    await alice.send(f"/buy 100 xbtusd lev 50 tp {m + 1000}")
    await alice.press("✅ Confirm")
    assert set(exits(h, key)) == {"tp1"}
    [pos] = [p for p in h.sim.engine.position_rows(h.sim.account(key).id) if p["currentQty"]]

    h.sim.engine.set_mark("XBTUSD", Decimal(str(pos["liquidationPrice"])) - 10)
    await wait_text(h, alice, "Position liquidated")
    await quiet(h)
    assert position(h, key) == 0 and open_orders(h, key) == []


async def test_closed_while_the_bot_was_down_leaves_no_exit_after_restart(
        h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    sl, _ = await bracket(h, alice, key, 200)

    await h.stop()
    h.sim.engine.set_mark("XBTUSD", sl - 100)  # the SL fills; nobody is watching
    assert position(h, key) == 0 and set(exits(h, key)) == {"tp1", "tp2"}  # orphans
    await h._boot()
    await wait_text(h, alice, CLOSED)
    await live(h).wait_ready(alice.id)
    await quiet(h)
    assert open_orders(h, key) == []
    assert count(alice, "Stop-loss hit") == 1  # told once, after the restart

    await h.restart()  # nothing left to do: nothing told
    await live(h).wait_ready(alice.id)
    await quiet(h)
    assert count(alice, CLOSED) == 1 and count(alice, "Stop-loss hit") == 1


async def test_tp_filled_while_the_bot_was_down_shrinks_the_sl_after_restart(
        h: Harness, restore_marks: None) -> None:
    alice, key = await trader(h)
    _, (tp1, _) = await bracket(h, alice, key, 200)
    sl_id = exits(h, key)["sl"]["orderID"]

    await h.stop()
    h.sim.engine.set_mark("XBTUSD", tp1 + 100)
    await h._boot()
    await wait_text(h, alice, FOLLOWS)
    await live(h).wait_ready(alice.id)
    await quiet(h)
    legs = exits(h, key)
    assert legs["sl"]["orderID"] == sl_id and legs["sl"]["orderQty"] == 100
    assert amends(h, key, sl_id) == 1

    await h.restart()
    await live(h).wait_ready(alice.id)
    await quiet(h)
    assert amends(h, key, sl_id) == 1 and count(alice, FOLLOWS) == 1


async def test_paper_account_exits_follow_the_position(
        h: Harness, restore_marks: None) -> None:
    """Paper trading runs the same engine: TP1 shrinks the SL in place, the SL closing
    the rest cancels TP2; a reduce-only stop the user placed themselves follows too."""
    h.sim.engine.set_spread("XBTUSD", Decimal(0))
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    alice = h.person("Alice")
    await alice.send("/connect paper")
    hub = h.svc.market_hub
    assert hub is not None
    await hub.wait_ready("mainnet")
    paper = await h.svc.accounts.exchange(alice.id, "paper")
    engine = paper.engine  # type: ignore[attr-defined]
    acct = paper.account_id  # type: ignore[attr-defined]

    async def follow(price: int) -> None:
        h.sim.engine.set_mark("XBTUSD", Decimal(price))
        await h.emu.wait_for(lambda: engine.instrument("XBTUSD").mark == Decimal(price),
                             timeout=5)

    await follow(60000)
    await alice.send("/buy 300 btc sl 59000 tp 61000,62000")
    await alice.press("✅ Confirm")
    await alice.send("/sell 300 btc stop 58000 reduce")  # the user's own, through the bot
    await alice.press("✅ Confirm")
    book = {str(o["clOrdID"]).rsplit(":", 1)[-1]: o for o in engine.open_order_rows(acct)}
    assert {"sl", "tp1", "tp2"} <= set(book) and len(book) == 4, alice.transcript
    sl_id = book["sl"]["orderID"]

    await follow(61100)  # TP1 takes 200 (the remainder of the split rides on it)
    await wait_text(h, alice, FOLLOWS)
    await wait_text(h, alice, "XBTUSD stop follows the position")
    rows = {str(o["clOrdID"]).rsplit(":", 1)[-1]: o for o in engine.open_order_rows(acct)}
    assert rows["sl"]["orderID"] == sl_id and rows["sl"]["orderQty"] == 100
    assert [o["orderQty"] for o in rows.values() if o["stopPx"] == 58000] == [100]

    await follow(58900)  # the SL closes the rest
    await wait_text(h, alice, "Stop-loss hit")
    await wait_text(h, alice, CLOSED)
    await quiet(h)
    assert engine.open_order_rows(acct) == []
    assert "TP2 100 @" in next(t for t in alice.bot_texts if CLOSED in t)


async def test_entry_filled_and_closed_while_down_leaves_no_exit(
        h: Harness, restore_marks: None) -> None:
    """The restart places the filled entry's exits late; the position is already gone (closed
    on the website meanwhile), so they are cancelled again rather than left to trigger."""
    alice, key = await trader(h)
    m = mark(h)
    entry = m - 1000
    await alice.send(f"/buy 100 xbtusd limit {entry} sl {m - 2000} tp {m + 1000}")
    await alice.press("✅ Confirm")

    await h.stop()
    h.sim.engine.set_mark("XBTUSD", entry - 50)  # the entry fills
    acct = h.sim.account(key).id
    h.sim.engine.place_order(acct, {"symbol": "XBTUSD", "side": "Sell", "orderQty": 100,
                                    "ordType": "Market"})  # closed by hand, elsewhere
    assert position(h, key) == 0
    await h._boot()
    await wait_text(h, alice, "Exits placed")
    await wait_text(h, alice, CLOSED)
    await quiet(h)
    assert open_orders(h, key) == [], open_orders(h, key)
