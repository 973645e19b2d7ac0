"""Signal feeds end to end: a group posts, members follow in private, the record is honest."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bot import fmt
from bot.exchange import contracts
from bot.sandbox.telegram.state import Chat
from tests.e2e.harness import Harness, Person

SIG = "/signal long XBTUSD entry 59900-60100 tp 62000,64000 sl 59000"


def orders(h: Harness, key: str) -> list[dict[str, Any]]:
    return h.sim.engine.order_rows(h.sim.account(key).id)


def shape(h: Harness, key: str) -> list[tuple[Any, ...]]:
    """(side, type, qty, price or stop, status, reduce-only) of every order, sorted."""
    return sorted(
        (o["side"], o["ordType"], int(o["orderQty"]),
         Decimal(str(o["stopPx"] if o["ordType"] == "Stop" else o["price"] or 0)),
         o["ordStatus"], "ReduceOnly" in (o["execInst"] or ""))
        for o in orders(h, key))


async def feed_group(h: Harness, n_members: int = 3) -> tuple[Person, list[tuple[Person, str]],
                                                              Chat]:
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    admin = h.person("Alice")
    members = [await h.connected(name) for name in ("Bob", "Carol", "Dave")[:n_members]]
    group = h.group("Alpha Calls", [p for p, _ in members], [admin], bot_admin=True)
    await admin.send("/feed on alpha", chat=group)
    assert "now the signal feed alpha" in group_text(h, group)
    return admin, members, group


def said(p: Person, text: str, last: int = 4) -> bool:
    """The bot told `p` this lately (fill notices from the live service may come after)."""
    return any(text in t for t in p.bot_texts[-last:])


def group_text(h: Harness, group: Chat) -> str:
    m = h.emu.last_bot_message(group, bot=h.bot_username)
    return (m.content or "") if m else ""


async def post(h: Harness, admin: Person, group: Chat, text: str) -> None:
    await admin.send(text, chat=group)
    await h.services.feeds.drain()
    await h.settle()


async def test_post_follow_confirm_exact_orders(h: Harness) -> None:
    admin, [(bob, bkey), (carol, ckey), (dave, dkey)], group = await feed_group(h)
    await bob.send("/follow alpha risk 1%")
    assert "Following alpha" in bob.last_text
    await carol.send("/follow alpha size 300")
    await dave.send("/follow alpha size $500")
    avail = h.sim.engine.margin_row(h.sim.account(bkey).id, "XBt")["availableMargin"]

    await post(h, admin, group, SIG)
    card = group_text(h, group)
    assert "LONG XBTUSD" in card and "signal #1" in card and "Stop 59,000" in card
    assert "R:R" in card
    card_msg = h.emu.last_bot_message(group, bot=h.bot_username)
    assert card_msg is not None and card_msg.buttons == [["📥 Follow"]]
    # every follower has a private preview with the trading card's buttons
    for p in (bob, carol, dave):
        assert "signal #1" in p.last_text and p.last.buttons == [["✅ Confirm", "✖️ Cancel"]]
    assert "BUY 300 XBTUSD · Market · testnet" in carol.last_text

    inst = h.sim.engine.instrument("XBTUSD")
    ask = Decimal(str(inst.ask))
    loss = abs(contracts.pnl("inverse", Decimal(1), ask, Decimal(59000), Decimal(-100000000)))
    bob_qty = int(Decimal(avail) / 100 / loss / 100) * 100
    assert f"BUY {fmt.num(bob_qty)} XBTUSD · Market" in bob.last_text

    cards = [bob.find_button("✅ Confirm"), carol.find_button("✅ Confirm")]
    await bob.press("✅ Confirm")
    await carol.press("✅ Confirm")
    assert all("Filled" in (c.content or "") for c in cards)
    half = bob_qty // 200 * 100
    assert shape(h, bkey) == sorted([
        ("Buy", "Market", bob_qty, Decimal(0), "Filled", False),
        ("Sell", "Stop", bob_qty, Decimal(59000), "New", True),
        ("Sell", "Limit", bob_qty - half, Decimal(62000), "New", True),
        ("Sell", "Limit", half, Decimal(64000), "New", True),
    ])
    assert shape(h, ckey) == sorted([
        ("Buy", "Market", 300, Decimal(0), "Filled", False),
        ("Sell", "Stop", 300, Decimal(59000), "New", True),
        ("Sell", "Limit", 200, Decimal(62000), "New", True),
        ("Sell", "Limit", 100, Decimal(64000), "New", True),
    ])
    assert orders(h, dkey) == []  # Dave ignored his preview: nothing placed

    # Pressing Follow again is refused: Bob already followed this signal. The press is
    # answered at once (sizing may ask BitMEX); the refusal comes in the private chat.
    answer = await bob.press("📥 Follow", h.emu.last_bot_message(group, bot=h.bot_username))
    assert answer is not None and "private chat" in (answer.text or "")
    assert "already followed" in bob.last_text


async def test_free_text_signals_admin_only_and_refusals(h: Harness) -> None:
    admin, [(bob, _)], group = await feed_group(h, 1)
    await post(h, admin, group, "BTC/USD LONG\nEntry 59.9k-60.1k\nTP1 62k\nTP2 64k\nSL 59,000")
    assert "LONG XBTUSD" in group_text(h, group) and "signal #1" in group_text(h, group)
    assert "Targets 62,000, 64,000" in group_text(h, group)

    # a member's signal-shaped message is not a signal: no answer, nothing stored
    before = len(h.emu.bot_messages(group, bot=h.bot_username))
    await bob.send("#BTC long entry 60000 tp 61000 sl 59000", chat=group)
    assert len(h.emu.bot_messages(group, bot=h.bot_username)) == before
    assert await h.services.feeds.signal(2) is None

    # inconsistent prices from an admin: refused with the reason, never posted
    await admin.send("#BTC long entry 60000 tp 61000 sl 61500", chat=group)
    assert "stop-loss must be below entry" in group_text(h, group)
    await admin.send("/signal short XBTUSD entry 60000 tp 61000 sl 62000", chat=group)
    assert "Take-profit must be below entry" in group_text(h, group)
    await admin.send("BTC long entry 60000 target 62000", chat=group)
    assert "no stop-loss" in group_text(h, group)
    assert await h.services.feeds.signal(2) is None

    # a non-admin using the command is told, and private commands stay private
    await bob.send(SIG, chat=group)
    assert "Only the group's admins" in group_text(h, group)
    await bob.send("/follow alpha risk 1%", chat=group)
    assert "works in a private chat" in group_text(h, group)

    # an edit of the original message is recorded; the signal stays as first posted
    original = next(m for m in h.emu.chat_messages(group, bot=h.bot_username)
                    if (m.content or "").startswith("BTC/USD LONG"))
    h.emu.edit_text(admin.user, original, "BTC/USD LONG Entry 61k SL 60k")
    await h.settle()
    updates = await h.services.feeds.updates_of(1)
    assert [u.kind for u in updates] == ["edited"]
    sig = await h.services.feeds.signal(1)
    assert sig is not None and sig.sl == 59000 and sig.entry_low == 59900


async def test_rate_limit_per_feed(h: Harness) -> None:
    admin, _, group = await feed_group(h, 0)
    for i in range(7):
        await admin.send(f"/signal long XBTUSD entry {60000 + i} sl 59000", chat=group)
        assert f"signal #{i + 1}" in group_text(h, group)
    await admin.send("/signal long XBTUSD entry 60100 sl 59000", chat=group)
    assert "Too many signals" in group_text(h, group)


async def test_stop_move_reaches_open_positions_auto_only_reduces(h: Harness) -> None:
    admin, [(bob, bkey), (carol, ckey), (dave, dkey)], group = await feed_group(h)
    for p in (bob, carol, dave):
        await p.send("/follow alpha size 200")
    await bob.press("🤖 Apply risk-reducing updates automatically")
    assert "Auto mode is on" in bob.last_text
    await post(h, admin, group, SIG)
    await bob.press("✅ Confirm")
    await carol.press("✅ Confirm")
    await dave.press("✖️ Cancel")
    dave_seen = len(dave.bot_texts)

    await post(h, admin, group, "/signal move-sl 1 59500")
    assert "stop 59,000 → 59,500\nFollowers with an open position" in group_text(h, group)

    def stop(key: str) -> Decimal:
        [o] = [o for o in orders(h, key) if o["ordType"] == "Stop"]
        return Decimal(str(o["stopPx"]))

    assert stop(bkey) == 59500 and said(bob, "Auto mode applied it")
    card = carol.find_button("✅ Confirm")
    assert stop(ckey) == 59000 and "MOVE STOP XBTUSD 59,000 → 59,500" in (card.content or "")
    assert len(dave.bot_texts) == dave_seen  # no position from the signal: nothing
    assert orders(h, dkey) == []
    await carol.press("✅ Confirm", card)
    assert stop(ckey) == 59500 and "Stop moved to 59,500" in (card.content or "")

    # a move away from the price adds risk: auto mode leaves it to Bob's press
    await post(h, admin, group, "/signal move-sl 1 59200")
    assert stop(bkey) == 59500
    assert "more risk" in (bob.find_button("✅ Confirm").content or "")
    # and never adds: Bob's position is what he confirmed
    pos = [p for p in h.sim.engine.position_rows(h.sim.account(bkey).id) if p["currentQty"]]
    assert [(p["symbol"], p["currentQty"]) for p in pos] == [("XBTUSD", 200)]

    # close: auto closes Bob's position - even while BitMEX sheds load, since the full
    # close carries no quantity (execInst Close); Carol gets a card
    h.sim.faults.load_shedding = True
    try:
        await post(h, admin, group, "/signal close 1")
    finally:
        h.sim.faults.load_shedding = False
    pos = [p for p in h.sim.engine.position_rows(h.sim.account(bkey).id) if p["currentQty"]]
    assert pos == [] and said(bob, "Auto mode applied it")
    assert [o["execInst"] for o in orders(h, bkey) if o["ordStatus"] == "Filled"
            and o["side"] == "Sell"] == ["Close"]
    assert "CLOSE all XBTUSD long" in (carol.find_button("✅ Confirm").content or "")


async def test_feedstats_from_fills_not_posted_prices(h: Harness) -> None:
    admin, [(bob, bkey), (carol, ckey)], group = await feed_group(h, 2)
    await bob.send("/follow alpha size 100")
    await carol.send("/follow alpha size 100")
    await post(h, admin, group, "/signal long XBTUSD entry 60000 tp 62000 sl 59000")
    h.sim.engine.set_mark("XBTUSD", Decimal(59990))  # Bob fills below the posted entry
    await bob.press("✅ Confirm")
    bob_fill = Decimal(str(h.sim.engine.instrument("XBTUSD").ask))
    assert bob_fill == Decimal("59990.1") or bob_fill > Decimal(59990)
    h.sim.engine.set_mark("XBTUSD", Decimal(62010))  # TP 62000 fills (resting limit)
    await h.settle()
    execs = [e for e in h.sim.engine.execution_rows(h.sim.account(bkey).id)
             if e["execType"] == "Trade"]
    assert [(e["side"], Decimal(str(e["lastPx"]))) for e in execs] == [
        ("Buy", bob_fill), ("Sell", Decimal(62000))]
    assert orders(h, ckey) == []  # Carol never confirmed: not in the record

    await admin.send("/feedstats", chat=group)
    text = group_text(h, group)
    m = Decimal(100_000_000)
    real = 100 * m * (1 / bob_fill - 1 / Decimal(62000))
    posted = 100 * m * (1 / Decimal(60000) - 1 / Decimal(62000))
    r_real = ((62000 - bob_fill) / (bob_fill - 59000)).quantize(Decimal("0.0001"))
    assert "Signals posted: 1 · followed: 1 · member entries filled: 1" in text
    assert f"win rate 100% · avg {r_real.quantize(Decimal('0.01'))}R\n" in text, text
    # by hand: (62000 - 60000) / (60000 - 59000) = 2R at the posted entry
    assert "At the posted entry: win rate 100% · avg 2.00R\n" in text, text
    assert f"Gap (fills − posted): +{(r_real - 2).quantize(Decimal('0.01'))}R a trade" in text
    assert r_real > 2
    assert "Bob" not in text and str(bob.id) not in text  # aggregates only in the group
    # One member's trade: a PnL "sum" would be Bob's own result, so no amounts in the group
    assert "XBT" not in text and "No amounts here" in text, text

    await bob.send("/feedstats")
    mine = bob.last_text.split("Your trades")[1]
    assert f"From real fills (1 closed): win rate 100% · avg " \
           f"{r_real.quantize(Decimal('0.01'))}R · PnL +{fmt.money(real, 'XBt')}" in mine
    assert f"At the posted entry: win rate 100% · avg 2.00R · PnL +" \
           f"{fmt.money(posted, 'XBt')}" in mine
    assert f"Gap (fills − posted): +{fmt.money(real - posted, 'XBt')}" in mine


async def test_follow_without_key_or_read_only(h: Harness) -> None:
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    admin, eve = h.person("Alice"), h.person("Eve")
    ro, _ = await h.connected("Ro", permissions=())
    group = h.group("Beta", [eve, ro], [admin], bot_admin=True)
    await admin.send("/feed on beta", chat=group)
    await eve.send("/follow beta risk 1%")
    assert "no account connected" in eve.last_text
    await ro.send("/follow beta risk 1%")
    assert "read-only" in ro.last_text
    await post(h, admin, group, SIG)
    assert "/connect testnet" in eve.last_text
    assert "read-only" in ro.last_text
    assert not any(b for m in eve.messages for b in m.buttons if "Confirm" in str(b))


async def test_follow_auto_word_switches_auto_mode(h: Harness) -> None:
    _, [(bob, _)], _ = await feed_group(h, n_members=1)
    await bob.send("/follow alpha size 100 auto")
    assert "Auto mode is on" in bob.last_text
    await bob.send("/follow alpha size 200")  # changing the size keeps the mode
    assert "Auto mode is on" in bob.last_text
    await bob.send("/follow alpha size 200 manual")
    assert "come to you to confirm" in bob.last_text


async def test_follower_size_is_contracts_whatever_their_unit_setting(h: Harness) -> None:
    admin, [(bob, _)], group = await feed_group(h, 1)
    await bob.send("/settings unit coin")  # a bare `300` in /buy would mean 300 BTC
    await bob.send("/follow alpha size 300")
    await post(h, admin, group, SIG)
    assert "BUY 300 XBTUSD · Market · testnet" in bob.last_text, bob.last_text
    assert "read as" not in bob.last_text


async def test_feedstats_by_name_before_following(h: Harness) -> None:
    _, [(bob, _)], _ = await feed_group(h, n_members=1)
    await bob.send("/feedstats alpha")
    assert "alpha" in bob.last_text and "Signals posted: 0" in bob.last_text
    await bob.send("/feedstats nosuchfeed")
    assert "No feed called nosuchfeed" in bob.last_text


async def test_anonymous_admins_run_the_feed_and_alerts(h: Harness) -> None:
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    admin = h.person("Alice")
    bob, _ = await h.connected("Bob")
    group = h.group("Anon Calls", [bob], [admin], bot_admin=True)
    await admin.send("/feed on anon", chat=group, anonymous=True)
    assert "now the signal feed anon" in group_text(h, group)
    await bob.send("/follow anon size 100")
    await post(h, admin, group, "BTC/USDT long entry 60000 targets 62000 stop 59000")
    assert "LONG XBTUSDT · signal #1" in group_text(h, group)
    assert said(bob, "signal #1")  # the follower's private preview
    await admin.send("/alert btc above 1000000", chat=group, anonymous=True)
    assert "Alert set" in group_text(h, group)
    # a member cannot pass as anonymous: Telegram only lets admins do that
    with pytest.raises(ValueError, match="admins"):
        h.emu.send_text(bob.user, group, "/feed off", bot=h.bot_username, anonymous=True)
