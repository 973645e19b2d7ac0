"""The position card and /sl /tp (issue #14 items 1 and 3), as conversations through the
emulator and the simulator: each button end to end (preview, Confirm, what the exchange
holds), break-even and trailing stops triggering when the simulated mark moves, the bot's
own trailing where pegged orders are refused, and every bad input answered in one line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal as D

import pytest

from bot.sandbox.telegram.state import Message
from tests.e2e.harness import Harness, Person
from tests.e2e.helpers import confirm_last_card as confirm
from tests.e2e.helpers import no_traceback, open_orders, position_qty


@pytest.fixture(autouse=True)
def steady_market(h: Harness) -> None:
    h.sim.engine.set_spread("XBTUSD", D(0))
    h.sim.engine.set_mark("XBTUSD", D(60000))


async def long_400(h: Harness) -> tuple[Person, str]:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 400 xbtusd")
    assert "Filled" in await confirm(alice)
    assert position_qty(h, key) == 400
    return alice, key


async def test_position_card_shows_buttons_and_closes_by_share(h: Harness) -> None:
    alice, key = await long_400(h)
    await alice.send("/positions")
    card = alice.last
    assert "XBTUSD Long 400" in (card.content or ""), card.content
    assert "SL: none" in (card.content or "") and "TP: none" in (card.content or "")
    # at the entry's mark a break-even stop would fire at once: no button for it yet
    assert card.buttons == [["Close 25 %", "Close 50 %", "Close 100 %"],
                            ["Trail SL 1 %"],
                            ["✏️ Edit SL", "✏️ Edit TP", "🔄 Refresh"],
                            ["🚨 Panic: close all"]]  # under the last card (/panic)
    await alice.press("Close 25 %", card)
    assert alice.last_text.startswith("CLOSE 100 of 400 XBTUSD long")
    assert position_qty(h, key) == 400  # nothing without Confirm
    await confirm(alice)
    assert position_qty(h, key) == 300
    await alice.press("Close 50 %", card)  # 150 rounds to the lot of 100, and says so
    assert alice.last_text.startswith("CLOSE 100 of 300 XBTUSD long")
    assert "Rounded" in alice.last_text
    await alice.press("✖️ Cancel")
    assert position_qty(h, key) == 300
    await alice.press("🔄 Refresh", card)
    assert "Long 300" in (card.content or ""), card.content
    await alice.press("Close 100 %", card)
    assert alice.last_text.startswith("CLOSE all XBTUSD long")
    await confirm(alice)
    assert position_qty(h, key) == 0
    # a press on the card of a position that has closed since: one line, nothing placed
    before = len(h.sim.engine.order_rows(h.sim.account(key).id))
    for label in ("Close 25 %", "Close 50 %", "Trail SL 1 %"):
        await alice.press(label, card)
        assert alice.last_text.startswith("No open position in XBTUSD"), alice.last_text
        assert "\n" not in alice.last_text
    await alice.press("🔄 Refresh", card)
    assert "it has closed" in (card.content or "")
    assert len(h.sim.engine.order_rows(h.sim.account(key).id)) == before
    no_traceback(alice)


async def test_trail_button_places_bitmex_trailing_stop_that_fires(h: Harness) -> None:
    alice, key = await long_400(h)
    await alice.send("/positions")
    await alice.press("Trail SL 1 %")
    assert "trailing 600" in alice.last_text and "TrailingStopPeg" in alice.last_text
    assert open_orders(h, key) == []
    text = await confirm(alice)
    assert "BitMEX trails it" in text
    [stop] = open_orders(h, key)
    assert (stop["ordType"], stop["side"], stop["orderQty"]) == ("Stop", "Sell", 400)
    assert (stop["pegPriceType"], stop["pegOffsetValue"]) == ("TrailingStopPeg", D(-600))
    assert stop["stopPx"] == D(59400) and "ReduceOnly" in stop["execInst"]
    h.sim.engine.set_mark("XBTUSD", D(62000))
    [stop] = open_orders(h, key)
    assert stop["stopPx"] == D(61400)
    await alice.send("/positions")
    assert "SL 61,400" in alice.last_text or "SL 61400" in alice.last_text, alice.last_text
    assert "BitMEX trailing stop" in alice.last_text
    h.sim.engine.set_mark("XBTUSD", D(61400))
    assert position_qty(h, key) == 0 and open_orders(h, key) == []
    no_traceback(alice)


async def test_breakeven_refused_until_mark_is_past_then_triggers(h: Harness) -> None:
    alice, key = await long_400(h)
    await alice.send("/sl btc be")
    assert alice.last_text.startswith("A break-even stop at 60,090") or \
        "would trigger at once" in alice.last_text, alice.last_text
    assert "Confirm" not in str(alice.last.buttons) and open_orders(h, key) == []
    h.sim.engine.set_mark("XBTUSD", D(61000))
    await alice.send("/positions")
    await alice.press("SL → break-even")
    assert "break-even" in alice.last_text and "entry" in alice.last_text
    await confirm(alice)
    [stop] = open_orders(h, key)
    # entry 60000 plus two taker fees (0.075 % each), rounded up to the 0.1 tick
    assert stop["stopPx"] == D(60090) and stop["pegPriceType"] == ""
    h.sim.engine.set_mark("XBTUSD", D(60500))
    assert position_qty(h, key) == 400
    h.sim.engine.set_mark("XBTUSD", D(60090))
    assert position_qty(h, key) == 0
    no_traceback(alice)


async def test_edit_sl_reply_and_amend_in_place(h: Harness) -> None:
    alice, key = await long_400(h)
    await alice.send("/positions")
    await alice.press("✏️ Edit SL")
    prompt = alice.last
    assert (prompt.content or "").startswith("✏️ New stop-loss for XBTUSD")
    # a reply that is no price: one line, nothing changes
    h.emu.send_text(alice.user, alice.chat, "soon", reply_to=prompt, bot=h.bot_username)
    await h.settle()
    assert "\n" not in alice.last_text and "soon" in alice.last_text, alice.last_text
    h.emu.send_text(alice.user, alice.chat, "-2%", reply_to=prompt, bot=h.bot_username)
    await h.settle()
    assert alice.last_text.startswith("SL XBTUSD → 58,800") or "58800" in alice.last_text, \
        alice.last_text
    assert open_orders(h, key) == []
    await confirm(alice)
    [stop] = open_orders(h, key)
    assert stop["stopPx"] == D(58800) and stop["orderQty"] == 400
    # a second stop moves the first by PUT /order: the same order, a new stopPx
    await alice.send("/sl btc 58k")
    assert "amended in place" in alice.last_text
    await confirm(alice)
    [moved] = open_orders(h, key)
    assert moved["orderID"] == stop["orderID"] and moved["stopPx"] == D(58000)
    # a stop that would fire at once
    await alice.send("/sl btc 61k")
    assert "would trigger at once" in alice.last_text
    no_traceback(alice)


async def test_tp_with_shares_and_bad_targets(h: Harness) -> None:
    alice, key = await long_400(h)
    await alice.send("/tp btc 65k:25%,70k:75%")
    assert "× 100" in alice.last_text and "× 300" in alice.last_text, alice.last_text
    await confirm(alice)
    tps = sorted(open_orders(h, key), key=lambda o: o["price"])
    assert [(o["price"], o["orderQty"], o["side"], o["ordType"]) for o in tps] == [
        (D(65000), 100, "Sell", "Limit"), (D(70000), 300, "Sell", "Limit")]
    assert all("ReduceOnly" in o["execInst"] for o in tps)
    # Edit TP replaces them (equal parts without shares)
    await alice.send("/positions")
    await alice.press("✏️ Edit TP")
    prompt = alice.last
    h.emu.send_text(alice.user, alice.chat, "66k,68k", reply_to=prompt, bot=h.bot_username)
    await h.settle()
    assert "Replaces 2 take-profits" in alice.last_text
    await confirm(alice)
    tps = sorted(open_orders(h, key), key=lambda o: o["price"])
    assert [(o["price"], o["orderQty"]) for o in tps] == [(D(66000), 200), (D(68000), 200)]
    for bad, words in (("/tp btc 65k:50%,70k:40%", "add up to 90%"),
                       ("/tp btc 55k", "wrong side"),
                       ("/tp btc 65k,65k", "given twice")):
        await alice.send(bad)
        assert words in alice.last_text, alice.last_text
    assert len(open_orders(h, key)) == 2
    no_traceback(alice)


async def test_trailing_offsets_out_of_range(h: Harness) -> None:
    alice, key = await long_400(h)
    for bad, words in (("/sl btc trail $0.01", "below the tick"),
                       ("/sl btc trail $70000", "above the price")):
        await alice.send(bad)
        assert words in alice.last_text, alice.last_text
    await alice.send("/sl eth be")
    assert alice.last_text.startswith("No open position in ETHUSD")
    assert open_orders(h, key) == []
    no_traceback(alice)


async def test_buy_with_trailing_stop_at_entry(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 100 btc sl 58k trail 1%")
    assert "trails 600" in alice.last_text, alice.last_text
    await confirm(alice)
    [stop] = open_orders(h, key)
    assert (stop["pegPriceType"], stop["pegOffsetValue"]) == ("TrailingStopPeg", D(-600))
    assert stop["stopPx"] == D(59400)
    h.sim.engine.set_mark("XBTUSD", D(63000))
    [stop] = open_orders(h, key)
    assert stop["stopPx"] == D(62400)


async def test_buy_with_trailing_stop_where_pegged_orders_are_refused(h: Harness) -> None:
    # The entry's trailing stop is refused by this account: a plain stop at the typed sl,
    # which the bot trails itself at once (600 behind the mark, as BitMEX would) and on.
    alice, key = await h.connected("Alice")
    h.sim.account(key).pegged_allowed = False
    await h.svc.live.wait_ready(alice.id)
    await alice.send("/buy 100 btc sl 58k trail 1%")
    await confirm(alice)
    await h.emu.wait_for(lambda: [o["stopPx"] for o in open_orders(h, key)] == [D(59400)],
                         timeout=5)
    [stop] = open_orders(h, key)
    assert stop["pegPriceType"] == "" and stop["text"].startswith("telegram trail -600")
    h.sim.engine.set_mark("XBTUSD", D(63000))
    await h.emu.wait_for(lambda: open_orders(h, key)[0]["stopPx"] == D(62400), timeout=5)
    no_traceback(alice)


async def test_bot_trails_itself_where_pegged_orders_are_refused(h: Harness) -> None:
    alice, key = await long_400(h)
    h.sim.account(key).pegged_allowed = False
    await h.svc.live.wait_ready(alice.id)
    await alice.send("/sl btc trail $500")
    text = await confirm(alice)
    assert "the bot trails this stop itself" in text, text
    [stop] = open_orders(h, key)
    assert stop["pegPriceType"] == "" and stop["stopPx"] == D(59500)
    await alice.send("/positions")
    assert "trailed by the bot" in alice.last_text
    h.sim.engine.set_mark("XBTUSD", D(61000))
    await h.emu.wait_for(lambda: open_orders(h, key)[0]["stopPx"] == D(60500), timeout=5)
    h.sim.engine.set_mark("XBTUSD", D(60700))
    await h.settle()
    assert open_orders(h, key)[0]["stopPx"] == D(60500)  # never back down
    h.sim.engine.set_mark("XBTUSD", D(60500))
    assert position_qty(h, key) == 0
    no_traceback(alice)


async def test_confirm_after_the_position_closed_places_nothing(h: Harness) -> None:
    alice, key = await long_400(h)
    await alice.send("/sl btc 58k")
    card = alice.find_button("✅ Confirm")
    await alice.send("/close")
    await confirm(alice)
    assert position_qty(h, key) == 0
    await alice.press("✅ Confirm", card)
    assert "position has closed since" in (card.content or ""), card.content
    assert open_orders(h, key) == []
    no_traceback(alice)


async def test_bot_trailing_goes_on_after_a_restart(h: Harness) -> None:
    alice, key = await long_400(h)
    h.sim.account(key).pegged_allowed = False
    await alice.send("/sl btc trail $500")
    assert "the bot trails this stop itself" in await confirm(alice)
    await h.restart()
    # the order table's partial on the new stream tells the bot which stop is its own
    await h.svc.live.wait_ready(alice.id)
    h.sim.engine.set_mark("XBTUSD", D(62000))
    await h.emu.wait_for(lambda: open_orders(h, key)[0]["stopPx"] == D(61500), timeout=5)
    h.sim.engine.set_mark("XBTUSD", D(61500))
    assert position_qty(h, key) == 0


CARD_ROWS = [["Close 25 %", "Close 50 %", "Close 100 %"],
             ["SL → break-even", "Trail SL 1 %"],
             ["✏️ Edit SL", "✏️ Edit TP", "🔄 Refresh"]]


async def test_refresh_keeps_the_rows_the_card_had(h: Harness) -> None:
    alice, _ = await long_400(h)
    h.sim.engine.set_mark("XBTUSD", D(61000))
    await alice.send("/positions")
    card = alice.last
    before = card.buttons
    assert before == [*CARD_ROWS, ["🚨 Panic: close all"]], before
    await alice.press("🔄 Refresh", card)
    assert card.buttons == before  # the Panic row too
    # the mark back at the entry: break-even goes, the rest stays as it was
    h.sim.engine.set_mark("XBTUSD", D(60000))
    await alice.press("🔄 Refresh", card)
    assert card.buttons == [CARD_ROWS[0], ["Trail SL 1 %"], *CARD_ROWS[2:],
                            ["🚨 Panic: close all"]], card.buttons
    no_traceback(alice)


def fill_notices(p: Person, needle: str = "Order filled") -> list[Message]:
    return [m for m in p.messages if needle in (m.content or "")]


async def until(h: Harness, check: Callable[[], bool], what: str) -> None:
    try:
        await h.emu.wait_for(check, timeout=5)
    except TimeoutError:
        raise AssertionError(f"never: {what}") from None


async def test_a_fill_shows_the_position_card_and_a_close_shows_none(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await alice.send("/buy 400 xbtusd")
    await confirm(alice)
    await until(h, lambda: any(m.buttons for m in fill_notices(alice)), "a card on the fill")
    [notice] = fill_notices(alice)
    text = notice.content or ""
    assert text.startswith("✅ Order filled") and "XBTUSD Long 400" in text, text
    await alice.send("/positions")  # the same buttons as /positions (but its Panic row)
    assert notice.buttons == alice.last.buttons[:-1]
    assert notice.buttons == [CARD_ROWS[0], ["Trail SL 1 %"], *CARD_ROWS[2:]]
    await alice.press("🔄 Refresh", notice)  # the card is refreshed, the fill stays told
    assert (notice.content or "").startswith("✅ Order filled"), notice.content
    assert "XBTUSD Long 400" in (notice.content or "") and notice.buttons[0] == CARD_ROWS[0]
    # its buttons work like the card's: a preview, nothing without Confirm
    await alice.press("Close 25 %", notice)
    assert alice.last_text.startswith("CLOSE 100 of 400 XBTUSD long"), alice.last_text
    assert position_qty(h, key) == 400
    await confirm(alice)
    await until(h, lambda: len(fill_notices(alice)) == 2 and bool(fill_notices(alice)[1].buttons),
                "a card on the reducing fill")
    assert "XBTUSD Long 300" in (fill_notices(alice)[1].content or "")
    # a fill that closes the position: its notice, and no card
    await alice.press("Close 100 %", fill_notices(alice)[1])
    await confirm(alice)
    await until(h, lambda: len(fill_notices(alice)) == 3, "the closing fill's notice")
    await h.emu.idle(timeout=5, quiet=0.6)  # longer than a burst: a card would be there
    closing = fill_notices(alice)[2]
    assert closing.buttons == [] and "Long" not in (closing.content or ""), closing.content
    assert position_qty(h, key) == 0
    no_traceback(alice)


async def test_a_burst_of_partial_fills_gets_one_card(h: Harness) -> None:
    alice, key = await h.connected("Alice")
    await h.svc.live.wait_ready(alice.id)
    await alice.send("/buy 300 xbtusd limit 59000")
    await confirm(alice)
    [order] = open_orders(h, key)
    for _ in range(3):  # three executions of one order within a moment
        h.sim.engine.fill_order(str(order["orderID"]), 100)
    await until(h, lambda: len(fill_notices(alice, "XBTUSD @")) == 3, "three fill notices")
    await until(h, lambda: any(m.buttons for m in fill_notices(alice, "XBTUSD @")), "the card")
    await h.emu.idle(timeout=5, quiet=0.6)
    notices = fill_notices(alice, "XBTUSD @")
    assert [bool(m.buttons) for m in notices] == [False, False, True], alice.transcript
    assert sum("XBTUSD Long" in (m.content or "") for m in alice.messages) == 1
    assert "XBTUSD Long 300" in (notices[2].content or "")
    no_traceback(alice)


async def test_a_paper_fill_shows_the_position_card(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("/connect paper")
    await alice.send("/buy 100 xbtusd")
    await confirm(alice)
    await until(h, lambda: any(m.buttons for m in fill_notices(alice)), "a card on the fill")
    [notice] = fill_notices(alice)
    assert "paper" in (notice.content or "") and "XBTUSD Long 100" in (notice.content or "")
    assert notice.buttons[0] == CARD_ROWS[0]
async def test_more_bad_input_answers_one_line_and_changes_nothing(h: Harness) -> None:
    alice, key = await long_400(h)
    await alice.send("/positions")
    card = alice.last
    for bad, words in (("/tp btc -3%", "wrong side"),            # a long's TP below the mark
                       ("/sl btc +2%", "would trigger at once"),  # a long's stop above it
                       ("/tp btc 65k:50%,70k:60%", "add up to 110%"),
                       ("/buy 100 btc sl 58k trail $0.01", "below the tick"),
                       ("/buy 100 btc sl 58k trail $70000", "above the price"),
                       ("/buy 100 btc @ 60k tp 59k", "Take-profit must be above entry"),
                       ("/buy btc risk 11% sl -2%", "If you mean it: risk 11% force")):
        await alice.send(bad)
        # one line says what is wrong (a parse error adds the command's usage under it)
        assert words in alice.last_text.splitlines()[0], (bad, alice.last_text)
        assert not alice.last.buttons, (bad, alice.last_text)
    # an Edit TP reply that is no price
    await alice.press("✏️ Edit TP", card)
    prompt = alice.last
    h.emu.send_text(alice.user, alice.chat, "moon", reply_to=prompt, bot=h.bot_username)
    await h.settle()
    assert "\n" not in alice.last_text and "moon" in alice.last_text, alice.last_text
    assert open_orders(h, key) == []

    # the position closes: its card's Edit buttons answer one line instead of asking
    await alice.send("/close")
    await confirm(alice)
    assert position_qty(h, key) == 0
    for label in ("✏️ Edit SL", "✏️ Edit TP"):
        await alice.press(label, card)
        assert alice.last_text.startswith("No open position in XBTUSD"), alice.last_text
        assert "\n" not in alice.last_text
    # and a reply to the prompt sent while it was open finds nothing either
    h.emu.send_text(alice.user, alice.chat, "66k", reply_to=prompt, bot=h.bot_username)
    await h.settle()
    assert alice.last_text.startswith("No open position in XBTUSD"), alice.last_text
    assert open_orders(h, key) == []
    no_traceback(alice)


async def test_fills_told_returns_once_the_notice_and_its_card_are_on_their_way(
        h: Harness) -> None:
    # What the harness waits on after a Confirm (`Harness.fills_told`): the live updates
    # say when every fill given is told and no position card is still to come under one,
    # instead of a test polling their private state.
    alice, key = await h.connected("Alice")
    await h.svc.live.wait_ready(alice.id)
    await alice.send("/buy 400 xbtusd")
    account = h.sim.account(key).id
    h.emu.press(alice.user, alice.last, "✅ Confirm", bot=h.bot_username)
    await h.emu.wait_for(lambda: bool(h.sim.engine.execution_rows(account)))
    made = {r["execID"] for r in h.sim.engine.execution_rows(account)
            if r["execType"] == "Trade"}
    await asyncio.wait_for(h.svc.live.fills_told(alice.id, made), timeout=10)
    # The notice is sent and its card's edit is in the delivery queue by then.
    assert h.svc.live._fill_cards() == {} and h.svc.notifier.pending() <= 1
    assert await h.svc.notifier.drain(5)
    [notice] = fill_notices(alice)
    assert "XBTUSD Long 400" in (notice.content or "") and notice.buttons, alice.transcript
    # Nothing more is being told: asked again, it answers at once.
    await asyncio.wait_for(h.svc.live.fills_told(alice.id, made), timeout=0.1)
    no_traceback(alice)
