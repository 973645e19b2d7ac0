"""Who a feed belongs to: its group's members only, its admins only while they are admins,
and a card only to the key that priced it (issue #16, items 1-5)."""

from __future__ import annotations

from decimal import Decimal

from sqlmodel import select

from bot.db.models import Follow, OrderCard
from bot.sandbox.telegram.state import LEFT, MEMBER, Chat
from tests.e2e.harness import Harness, Person

SIG = "/signal long XBTUSD entry 59900-60100 tp 62000,64000 sl 59000"
CONFIRM = [["✅ Confirm", "✖️ Cancel"]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def group_text(h: Harness, group: Chat) -> str:
    m = h.emu.last_bot_message(group, bot=h.bot_username)
    return (m.content or "") if m else ""


async def post(h: Harness, admin: Person, group: Chat, text: str) -> None:
    await admin.send(text, chat=group)
    await h.svc.feeds.drain()
    await h.settle()


async def follows(h: Harness, user_id: int) -> list[bool]:
    async with h.svc.db.session() as s:
        return [f.active for f in (await s.exec(select(Follow).where(
            Follow.user_id == user_id))).all()]


async def intents(h: Harness, user_id: int) -> list[OrderCard]:
    async with h.svc.db.session() as s:
        return list((await s.exec(select(OrderCard).where(
            OrderCard.user_id == user_id))).all())


def previews(p: Person, signal: int) -> int:
    return sum(1 for m in p.messages
               if f"signal #{signal}" in (m.content or "") and m.buttons == CONFIRM)


async def test_an_outsider_cannot_follow_press_follow_or_get_previews(h: Harness) -> None:
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    admin = h.person("Alice")
    bob, _ = await h.connected("Bob")
    eve, _ = await h.connected("Eve")  # knows the feed's name, is not in the group
    group = h.group("Alpha Calls", [bob], [admin], bot_admin=True)
    await admin.send("/feed on alpha", chat=group)
    await bob.send("/follow alpha size 100")
    assert "Following alpha" in bob.last_text

    await eve.send("/follow alpha size 100")
    assert eve.last_text == ("Only members of the group behind alpha can follow its "
                             "signals: join the group first."), eve.transcript
    assert await follows(h, eve.id) == []

    await post(h, admin, group, SIG)
    assert previews(bob, 1) == 1
    # The card is visible to anyone who can see the group's messages; pressing its Follow
    # button from outside gets the same one line, and nothing is priced for her.
    answer = await eve.press("📥 Follow", h.emu.last_bot_message(group, bot=h.bot_username))
    assert answer is not None and "Only members of the group behind alpha" in (answer.text or "")
    assert previews(eve, 1) == 0 and await intents(h, eve.id) == []
    assert "Only members" in eve.last_text and "signal #1" not in eve.transcript  # once

    # Once she joins she may follow.
    h.emu.join(group, eve.user)
    await h.settle()
    await eve.send("/follow alpha size 100")
    assert "Following alpha" in eve.last_text


async def test_a_kicked_or_departed_member_stops_receiving_and_is_told_once(h: Harness) -> None:
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    admin = h.person("Alice")
    members = [await h.connected(n) for n in ("Bob", "Carol", "Dave", "Rita")]
    (bob, _), (carol, _), (dave, _), (rita, _) = members
    group = h.group("Alpha Calls", [p for p, _ in members], [admin], bot_admin=True)
    await admin.send("/feed on alpha", chat=group)
    for p, _ in members:
        await p.send("/follow alpha size 100")
    await post(h, admin, group, SIG)
    assert [previews(p, 1) for p, _ in members] == [1, 1, 1, 1]

    h.emu.kick(group, carol.user, by=admin.user)
    h.emu.leave(group, dave.user)
    h.emu.restrict(group, rita.user, by=admin.user)  # muted, still a member
    await h.settle()
    gone = "You are no longer in the group behind alpha"
    assert gone in carol.last_text and gone in dave.last_text
    assert await follows(h, carol.id) == [False] and await follows(h, dave.id) == [False]

    await post(h, admin, group, "/signal short XBTUSD entry 60000 tp 58000 sl 61000")
    assert previews(bob, 2) == 1 and previews(rita, 2) == 1
    assert previews(carol, 2) == 0 and previews(dave, 2) == 0
    # Told once: nothing more reached them with the second signal.
    for p in (carol, dave):
        assert sum(gone in t for t in p.bot_texts) == 1, p.transcript
        assert "signal #2" not in p.transcript
    # A kicked member's press on the group's card is refused too.
    answer = await carol.press("📥 Follow", h.emu.last_bot_message(group, bot=h.bot_username))
    assert "Only members" in (answer.text or "")


async def test_a_silent_departure_is_found_at_the_next_signal(h: Harness) -> None:
    """A bot that is not a group admin hears no chat_member updates: the fan-out's own
    getChatMember (cached briefly) finds the departure."""
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    clock = FakeClock()
    h.svc.feeds.membership.clock = clock
    admin = h.person("Alice")
    (bob, _), (carol, _) = [await h.connected(n) for n in ("Bob", "Carol")]
    group = h.group("Alpha Calls", [bob, carol], [admin], bot_admin=True)
    await admin.send("/feed on alpha", chat=group)
    await bob.send("/follow alpha size 100")
    await carol.send("/follow alpha size 100")
    group.members[carol.id] = LEFT  # no update reaches the bot
    clock.now += 61  # past the cache
    await post(h, admin, group, SIG)
    assert previews(bob, 1) == 1 and previews(carol, 1) == 0
    assert "You are no longer in the group behind alpha" in carol.last_text
    assert await follows(h, carol.id) == [False]
    assert await intents(h, carol.id) == []  # nothing was even priced for her
    # Rejoining and following again brings the signals back.
    group.members[carol.id] = MEMBER
    clock.now += 61
    await carol.send("/follow alpha size 100")
    assert "Following alpha" in carol.last_text
    await post(h, admin, group, "/signal short XBTUSD entry 60000 tp 58000 sl 61000")
    assert previews(carol, 2) == 1


async def test_get_chat_member_is_truthful(h: Harness) -> None:
    admin, bob, eve, kim = (h.person(n) for n in ("Alice", "Bob", "Eve", "Kim"))
    group = h.group("Truth", [bob, kim], [admin], bot_admin=True)
    h.emu.kick(group, kim.user, by=admin.user)
    statuses = {}
    for p in (admin, bob, eve, kim):
        statuses[p.user.first_name] = (await h.app.bot.get_chat_member(group.id, p.id)).status
    h.emu.restrict(group, bob.user, by=admin.user)
    restricted = await h.app.bot.get_chat_member(group.id, bob.id)
    assert statuses == {"Alice": "creator", "Bob": "member", "Eve": "left", "Kim": "kicked"}
    assert restricted.status == "restricted" and restricted.is_member is True


async def test_a_demoted_admin_loses_powers_without_any_member_update(h: Harness) -> None:
    """The bot may miss the demotion (not an admin there, or the update was lost): every
    state-changing group command asks Telegram again."""
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    alice, bob = h.person("Alice"), h.person("Bob")
    group = h.group("Desk", [bob], [alice, bob], bot_admin=True)
    await bob.send("/feed on desk", chat=group)
    await bob.send("/alert btc above 1000000", chat=group)
    await bob.send("/signal long btc entry 60000 sl 59000", chat=group)
    assert "signal #1" in group_text(h, group)
    group.members[bob.id] = MEMBER  # demoted; the bot hears nothing of it
    before = len(h.emu.bot_messages(group, bot=h.bot_username))
    await bob.send("BTC long entry 60000 tp 61000 sl 59000", chat=group)
    assert len(h.emu.bot_messages(group, bot=h.bot_username)) == before  # not a signal
    for text in ("/signal long btc entry 60000 sl 59000", "/signal close 1",
                 "/alert btc above 2000000", "/unalert all", "/liqfeed min 1m", "/feed off"):
        await bob.send(text, chat=group)
        said = group_text(h, group)
        assert "admins" in said, (text, said)
    feed = await h.svc.feeds.feed_of_chat(group.id)
    assert feed is not None and feed.active
    assert await h.svc.feeds.signal(2) is None
    sig = await h.svc.feeds.signal(1)
    assert sig is not None and sig.state == "open"
    assert len(await h.svc.alerts.for_chat(group.id)) == 1  # type: ignore[union-attr]


async def _round(h: Harness, admin: Person, name: str, sizes: list[tuple[Person, int]]) -> Chat:
    """One feed, one long signal, everyone confirms, the target fills."""
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    group = h.group(f"{name} calls", [p for p, _ in sizes], [admin], bot_admin=True)
    await admin.send(f"/feed on {name}", chat=group)
    for p, size in sizes:
        await p.send(f"/follow {name} size {size}")
    await post(h, admin, group, "/signal long XBTUSD entry 59900-60100 tp 62000 sl 59000")
    for p, _ in sizes:
        card = p.find_button("✅ Confirm")
        await p.press("✅ Confirm", card)
        assert "Filled" in (card.content or ""), card.content
    h.sim.engine.set_mark("XBTUSD", Decimal(62010))
    await h.settle()
    return group


async def test_two_colluding_members_cannot_read_a_third_members_result(h: Harness) -> None:
    """Carol and Dave know their own trades; whatever the feed's record shows them must be
    the same whether the third member traded 100 contracts or 700."""
    admin = h.person("Alice")
    (bob, _), (eve, _), (carol, _), (dave, _) = [
        await h.connected(n) for n in ("Bob", "Eve", "Carol", "Dave")]
    alpha = await _round(h, admin, "alpha", [(bob, 100), (carol, 200), (dave, 300)])
    beta = await _round(h, admin, "beta", [(eve, 700), (carol, 200), (dave, 300)])

    await bob.send("/feedstats")
    bob_pnl = bob.last_text.split("Your trades")[1].split("PnL ")[1].split(" XBT")[0]
    assert bob_pnl.startswith("+0.0")  # Bob made money, and only he sees how much

    views: dict[str, list[str]] = {}
    for name, group in (("alpha", alpha), ("beta", beta)):
        await carol.send("/feedstats", chat=group)
        await dave.send(f"/feedstats {name}")
        views[name] = [group_text(h, group).replace(name, "FEED"),
                       dave.last_text.replace(name, "FEED")]
    assert views["alpha"] == views["beta"], views  # the third member's size changes nothing
    for text in views["alpha"]:
        assert "Signals posted: 1 · followed: 1 · member entries filled: 3" in text, text
        assert "XBT" not in text and bob_pnl not in text, text
    # Carol's private view: her own amounts, and the feeds' blocks the same either way.
    await carol.send("/feedstats")
    feeds_part = sorted(b.split("Your trades")[0].replace("alpha", "FEED").replace("beta", "FEED")
                        for b in carol.last_text.split("\n\n"))
    assert len(feeds_part) == 2 and feeds_part[0] == feeds_part[1], feeds_part
    assert bob_pnl not in carol.last_text and "PnL +0.0" in carol.last_text


def orders_of(h: Harness, key: str) -> list[dict[str, object]]:
    return h.sim.engine.order_rows(h.sim.account(key).id)


async def test_a_card_is_refused_after_the_key_behind_it_was_swapped(h: Harness) -> None:
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    bob, key1 = await h.connected("Bob")
    await bob.send("/buy 100 xbtusd")
    card = bob.find_button("✅ Confirm")
    assert "BUY 100 XBTUSD" in (card.content or "")
    # The card was priced on key 1's account (its margin, leverage, position); Bob swaps.
    await bob.send("/disconnect testnet")
    await bob.press("🗑 Forget it")
    key2, secret2 = h.exchange_account(xbt=0.01)
    await bob.send(f"/connect testnet {key2} {secret2}")
    assert "Connected" in bob.last_text
    answer = await bob.press("✅ Confirm", card)
    assert "key changed" in (answer.text or "")
    assert "your testnet key changed after this card was priced" in (card.content or "")
    assert "nothing was sent" in (card.content or "") and card.buttons == []
    assert orders_of(h, key1) == [] and orders_of(h, key2) == []
    # A card priced on the new key goes through.
    await bob.send("/buy 100 xbtusd")
    fresh = bob.find_button("✅ Confirm")
    await bob.press("✅ Confirm", fresh)
    assert "Filled" in (fresh.content or "") and len(orders_of(h, key2)) == 1

    # Disconnected and nothing connected again: refused with that reason.
    await bob.send("/buy 100 xbtusd")
    card = bob.find_button("✅ Confirm")
    await bob.send("/disconnect testnet")
    await bob.press("🗑 Forget it")
    await bob.press("✅ Confirm", card)
    assert "no testnet key is connected any more" in (card.content or "")
    assert len(orders_of(h, key2)) == 1


async def test_a_feed_preview_is_refused_after_a_key_swap(h: Harness) -> None:
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    admin = h.person("Alice")
    bob, key1 = await h.connected("Bob")
    group = h.group("Alpha Calls", [bob], [admin], bot_admin=True)
    await admin.send("/feed on alpha", chat=group)
    await bob.send("/follow alpha risk 1%")  # sized from key 1's available margin
    await post(h, admin, group, SIG)
    card = bob.find_button("✅ Confirm")
    await bob.send("/disconnect testnet")
    await bob.press("🗑 Forget it")
    key2, secret2 = h.exchange_account(xbt=0.01)
    await bob.send(f"/connect testnet {key2} {secret2}")
    await bob.press("✅ Confirm", card)
    assert "key changed after this card was priced" in (card.content or "")
    assert orders_of(h, key1) == [] and orders_of(h, key2) == []


async def test_a_revoked_user_gets_nothing_more_and_their_stream_stops(h: Harness) -> None:
    """Bob is dropped from ALLOWED_USER_IDS (the bot restarted with a new list): no signal
    previews, alerts, summaries or fills reach him, and his private stream is closed;
    Carol, still allowed, gets each of them (the control)."""
    from sqlmodel import select as sql_select

    from bot.db.models import Schedule

    engine = h.sim.engine
    saved = engine.instrument("XBTUSD").mark
    engine.set_mark("XBTUSD", Decimal(60000))
    try:
        admin = h.person("Alice")
        (bob, bkey), (carol, ckey) = [await h.connected(n) for n in ("Bob", "Carol")]
        group = h.group("Alpha Calls", [bob, carol], [admin], bot_admin=True)
        await admin.send("/feed on alpha", chat=group)
        for p in (bob, carol):
            await p.send("/follow alpha size 100")
            await p.send("/alert xbtusd above 61000 revoked-or-not")
            await p.send("/summary daily 09:30")
        assert h.svc.live is not None and h.svc.live.watching(bob.id, "testnet") is not None

        await h.restart(ALLOWED_USER_IDS=[admin.id, carol.id])
        live = h.svc.live
        assert live is not None
        await live.wait_ready(carol.id)
        assert live.watching(bob.id, "testnet") is None  # his stream stays closed
        assert live.watching(carol.id, "testnet") is not None
        bob_seen = len(bob.messages)

        # A signal: a preview for Carol only, and nothing at all priced for Bob.
        await post(h, admin, group, SIG)
        assert previews(carol, 1) == 1 and previews(bob, 1) == 0
        assert await intents(h, bob.id) == []
        # A price alert: Carol's fires, Bob's does not (it stays stored, dormant).
        await h.svc.market_hub.wait_ready("mainnet")
        engine.set_mark("XBTUSD", Decimal(61500))
        await h.emu.wait_for(lambda: any("revoked-or-not" in t for t in carol.bot_texts[-3:]),
                             timeout=5)
        # Fills: an order on each account fills on the exchange.
        for key in (bkey, ckey):
            acct = h.sim.account(key).id
            engine.place_order(acct, {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                      "ordType": "Market"})
        await h.emu.wait_for(lambda: any("Order filled" in t or "Filled" in t
                                         for t in carol.bot_texts[-3:]), timeout=5)
        # A summary job run.
        async with h.svc.db.session() as s:
            scheds = {r.user_id: r for r in (await s.exec(sql_select(Schedule))).all()}
        runs = h.svc.schedules
        n = len(carol.messages)
        for uid in (bob.id, carol.id):
            sid = scheds[uid].id
            assert sid is not None
            assert await runs.run(sid) is not None  # kept, for if he is allowed again
        await h.emu.wait_for(lambda: len(carol.messages) > n, timeout=5)
        await h.emu.idle(timeout=5, quiet=0.3)
        await h.settle()
        assert len(bob.messages) == bob_seen, bob.transcript
    finally:
        engine.set_mark("XBTUSD", saved)
