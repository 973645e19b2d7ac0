"""Adversarial checks: what another user, a group member or a forged button can make the bot do."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from bot.sandbox.telegram.state import CallbackQuery, Message
from tests.e2e.harness import Harness, Person

OPERATOR = 777002


async def test_operator_tools_need_an_operator_however_they_are_typed(
    world_sim: BitmexSimulator, world_emu: TelegramEmulator, tmp_path: Path
) -> None:
    h = Harness(world_sim, world_emu, tmp_path, ADMIN_IDS=[OPERATOR])
    await h.start()
    try:
        alice = h.person("Alice")
        mallory = h.person("Mallory")
        await alice.send("/start")
        await mallory.send("/start")
        for text in ("broadcast Free money at evil.example", "stats",
                     " /broadcast Free money", "\u00a0/stats", "Broadcast hi"):
            before = len(mallory.bot_texts)
            await mallory.send(text)
            assert not any("Broadcasting" in t or "Users:" in t
                           for t in mallory.bot_texts[before:]), (text, mallory.transcript)
        assert not any("Free money" in t or "hi" == t[-2:] for t in alice.bot_texts), \
            alice.transcript
    finally:
        await h.stop()


async def test_account_commands_stay_out_of_groups_however_they_are_typed(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    bob = h.person("Bob")
    group = h.group("Open chat", [alice, bob], admins=[bob], bot_admin=True)
    for text in ("/balance", " /balance", "\u2003/pos", "\n/orders", "/Balance"):
        await alice.send(text, chat=group)
        shown = h.emu.last_bot_message(group, bot=h.bot_username)
        assert shown is not None and "Balance ·" not in (shown.content or ""), text
        assert "Positions ·" not in (shown.content or "") and "No open" not in (
            shown.content or ""), text
        assert "works in a private chat" in (shown.content or ""), text


async def test_commands_without_the_slash_count_against_the_rate_limit(h: Harness) -> None:
    mallory = h.person("Mallory")
    for _ in range(25):  # the burst is 20
        await mallory.send("price btc")
    assert any("too many commands" in t for t in mallory.bot_texts), mallory.transcript


def forge(h: Harness, who: Person, message: Message, data: str) -> str:
    """A callback query with data of the presser's choosing: a modified client can send any
    data for any message it sees (Bot API: 'a bad client can send arbitrary data')."""
    emu = h.emu
    account = emu.bot(h.bot_username)
    qid = str(4_100_000_000_000_000 + next(emu._query_ids))
    emu._queries[qid] = CallbackQuery(qid, who.user, message, data, account.id,
                                      pressed_at=emu.now())
    emu._enqueue(account, "callback_query", {
        "id": qid, "from": who.user.to_api(), "message": message.to_api(),
        "chat_instance": str(abs(message.chat.id * 31 + account.id)), "data": data})
    return qid


async def press_forged(h: Harness, who: Person, message: Message, data: str) -> str:
    qid = forge(h, who, message, data)
    await h.settle()
    answer = h.emu.answers(qid)
    assert answer is not None, f"the forged press {data!r} was never answered"
    return answer.text or ""


async def test_forged_buttons_cannot_touch_someone_elses_card_or_alert(h: Harness) -> None:
    alice, akey = await h.connected("Alice")
    mallory, _ = await h.connected("Mallory")
    await alice.send("/buy 100 btc")
    card = alice.last
    data = card.reply_markup["inline_keyboard"][0][0]["callback_data"]  # type: ignore[index]
    assert data.startswith("t:c:")
    await mallory.send("/start")
    mine = mallory.last  # any message of the bot's that Mallory can see
    await mallory.send("/alerts")
    listing = mallory.last
    await alice.send("/alert btc above 1000000")
    [alert] = await h.svc.alerts.for_chat(alice.chat.id)  # type: ignore[union-attr]

    said = await press_forged(h, mallory, listing, data)
    assert "Not your order" in said
    assert not h.sim.engine.order_rows(h.sim.account(akey).id)
    await press_forged(h, mallory, listing, f"al:d:{alert.id}")
    assert await h.svc.alerts.for_chat(alice.chat.id)  # type: ignore[union-attr]
    await press_forged(h, mallory, mine, "k:d:testnet")
    assert [a.network for a in await h.svc.accounts.list(alice.id)] == ["testnet"]
    await alice.press("✅ Confirm", card)  # still hers to confirm
    assert h.sim.engine.order_rows(h.sim.account(akey).id)


async def test_a_forged_panic_confirm_cannot_fire_someone_elses_panic(h: Harness) -> None:
    """A panic card's "🚨 Confirm panic" (pn:k:c:ID) is a Confirm of its own kind: the
    stateful fuzz counts it as one only for the presser, so the bot must refuse it from
    anyone but the card's owner, like an order card's Confirm."""
    alice, akey = await h.connected("Alice")
    mallory, _ = await h.connected("Mallory")
    await alice.send("/buy 100 btc")
    await alice.press("✅ Confirm")
    await alice.send("/panic")
    card = alice.last
    data = card.reply_markup["inline_keyboard"][0][0]["callback_data"]  # type: ignore[index]
    assert data.startswith("pn:k:c:"), data
    await mallory.send("/start")
    said = await press_forged(h, mallory, mallory.last, data)
    assert "Not your order" in said, said
    rows = h.sim.engine.position_rows(h.sim.account(akey).id)
    assert [int(r["currentQty"]) for r in rows if r["symbol"] == "XBTUSD"] == [100]
    assert "🚨 PANIC" in (card.content or "") and card.buttons  # Alice's card untouched
    await alice.press("🚨 Confirm panic", card)
    assert "Panic done" in (card.content or ""), card.content


async def test_malformed_button_data_is_refused_politely(h: Harness) -> None:
    mallory = h.person("Mallory")
    await mallory.send("/start")
    msg = mallory.last
    for data in ("t:c:\u00b2", "t:c:99999999999999999999999", "al:d:\u00b3",
                 "al:d:99999999999999999999999", "fd:f:\u00b9", "fd:a:1\u00b2:1",
                 "fd:f:99999999999999999999999", "oc:" + "x" * 60, "pc:", "k:d:nowhere", "m:"):
        said = await press_forged(h, mallory, msg, data)
        assert "went wrong" not in said, (data, said)
    assert "went wrong" not in mallory.transcript


async def test_account_buttons_do_nothing_in_a_group(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    bob = h.person("Bob")
    group = h.group("Open chat", [alice, bob], admins=[bob], bot_admin=True)
    await bob.send("/alerts", chat=group)
    listing = h.emu.last_bot_message(group, bot=h.bot_username)
    assert listing is not None
    before = len(h.emu.bot_messages(group, bot=h.bot_username))
    for data in ("m:balance", "m:positions", "m:orders", "pc:XBTUSD", "k:d:testnet"):
        await press_forged(h, alice, listing, data)
    assert len(h.emu.bot_messages(group, bot=h.bot_username)) == before, h.emu.transcript(
        group, bot=h.bot_username)
    assert [a.network for a in await h.svc.accounts.list(alice.id)] == ["testnet"]


async def test_a_keep_press_on_a_photo_is_answered_without_an_error(h: Harness) -> None:
    """Keep and Forget carry no message id: a stale or forged one pressed on a photo (the
    /pnl chart) made the bot edit a message with no text, and Telegram's refusal reached
    the error handler (the stateful fuzz found it)."""
    alice, _key = await h.connected("Alice")
    await alice.send("/pnl 30d")
    photo = alice.last
    assert photo.photo is not None, photo  # a photo: no text to edit
    said = await press_forged(h, alice, photo, "k:x")
    assert said == "Kept", said
    assert alice.last_text == "Kept your key.", alice.transcript
    assert "went wrong" not in alice.transcript, alice.transcript
    assert [a.network for a in await h.svc.accounts.list(alice.id)] == ["testnet"]


INJECTIONS = ('<b>', '</b>', '<a href="https://evil.example">x</a>', '&lt;', '<i>x</b>',
              '<code>', '"><', '<tg-spoiler>')


async def test_user_text_echoed_in_html_never_breaks_a_message_nor_makes_a_link(
        h: Harness) -> None:
    h.svc.ratelimit.burst = h.svc.ratelimit.rate = 10_000.0  # this test types a lot
    alice, _ = await h.connected("Alice")
    group = h.emu.group('<b>Evil & "co" <a href="https://evil.example">', [alice.user],
                        [alice.user], bots=[h.bot_username], bot_admin=True)
    h.sim.engine.set_mark("XBTUSD", Decimal(60000))
    texts = []
    for bad in INJECTIONS:
        texts += [f"/alert {bad}", f"/alert btc above 100k {bad} note", f"/buy {bad}",
                  f"/price {bad}", f"/follow {bad} risk 1%", f"/unfollow {bad}",
                  f"/help {bad}", f"/tz {bad}", f"/use {bad}", f"/cancel {bad}",
                  f"/leverage {bad} 5", f"/close {bad}", f"/chart {bad}", f"/pnl {bad}"]
    for text in texts:
        await alice.send(text)
    await alice.send("/alerts")
    for text in ("/feed on <b>x", '/feed on <a href="https://evil.example">x</a>',
                 "/feed on ok_name", "/liqfeed <b> min 1m", "/alert btc above 100k <b>hi",
                 "/alerts", "/signal long <b> entry 1 sl 2"):
        await alice.send(text, chat=group)
    assert not any("too many" in t for t in alice.bot_texts)
    refused = [c for c in h.emu.calls_to("sendMessage", status=400)
               + h.emu.calls_to("editMessageText", status=400)
               if c.bot.lstrip("@") == h.bot_username.lstrip("@")]
    assert not refused, refused[:3]
    for chat in (alice.chat, group):
        for m in h.emu.bot_messages(chat, bot=h.bot_username):
            for e in m.entities or []:
                assert e.get("type") != "text_link" or "evil" not in e.get("url", ""), m
            assert "went wrong" not in (m.content or ""), h.emu.transcript(chat)


async def test_a_full_alert_list_still_fits_in_one_message(h: Harness) -> None:
    h.svc.ratelimit.burst = h.svc.ratelimit.rate = 10_000.0
    alice = h.person("Alice")
    note = "n" * 200
    for i in range(100):  # the per-chat maximum, each with the longest note
        await alice.send(f"/alert btc above {200_000 + i} {note}")
    assert "Alert set: #100" in alice.last_text or "#100 " in alice.last_text, alice.last_text
    await alice.send("/alerts")
    listing = alice.last
    assert listing.content is not None and listing.content.startswith("Alerts (100)"), \
        alice.last_text
    assert len(listing.content) <= 4096
    await alice.press(listing.buttons[0][0], listing)
    assert "Alerts (99)" in (listing.content or "")
    assert not [c for c in h.emu.calls_to("sendMessage", status=400)
                if c.bot.lstrip("@") == h.bot_username.lstrip("@")]


async def test_a_demoted_admin_loses_group_powers_at_once(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    bob = h.person("Bob")
    group = h.group("Desk", [alice, bob], admins=[bob], bot_admin=True)
    await bob.send("/alert btc above 1000000", chat=group)
    await bob.send("/feed on desk", chat=group)
    assert "signal feed desk" in (h.emu.last_bot_message(group, bot=h.bot_username).content
                                  or "")
    h.emu.demote(group, bob.user, by=alice.user)
    await h.settle()
    for text in ("/alert btc above 2000000", "/unalert all", "/liqfeed min 1m",
                 "/feed off", "/signal long btc entry 60000 sl 59000"):
        await bob.send(text, chat=group)
        said = h.emu.last_bot_message(group, bot=h.bot_username).content or ""
        assert "admins" in said, (text, said)
    assert len(await h.svc.alerts.for_chat(group.id)) == 1  # type: ignore[union-attr]


async def test_a_secret_inside_a_chatty_group_message_is_deleted(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    bob = h.person("Bob")
    group = h.group("Help desk", [alice, bob], admins=[bob], bot_admin=True)
    key, secret = h.exchange_account()
    msg = await alice.send(f"hi all, is this right? my key is {key} and the secret is "
                           f"{secret}, thanks!", chat=group)
    assert msg is not None and "never post API keys in a group" in (msg.content or "")
    assert not any(secret in (m.content or "") for m in h.emu.chat_messages(
        group, bot=h.bot_username) if not m.deleted)
    # ordinary chat with long words stays: a transaction hash, a link
    await alice.send("tx 9f2c4e1a7b3d5f6e8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2 "
                     "see https://example.com/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdEF",
                     chat=group)
    assert not any(m.deleted for m in h.emu.chat_messages(group, bot=h.bot_username)
                   if "tx 9f2c" in (m.content or ""))
