"""The Telegram runtime: concurrency with per-chat order, errors, access, rate limit, menus."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from tests.e2e.harness import Harness


async def test_fifty_users_are_served_concurrently_and_each_chat_in_order(h: Harness) -> None:
    people = []
    for i in range(50):
        p = h.person(f"U{i}")
        key, secret = h.exchange_account()
        h.emu.send_text(p.user, p.chat, f"/connect testnet {key} {secret}", bot=h.bot_username)
        people.append(p)
    await h.settle(timeout=60)
    assert all("Connected" in p.last_text for p in people)

    h.sim.faults.latency = 0.3
    try:
        started = time.monotonic()
        for p in people:
            h.emu.send_text(p.user, p.chat, "/balance", bot=h.bot_username)
        # One user's two messages: the answers must come back in the order sent.
        first = people[0]
        h.emu.send_text(first.user, first.chat, "/accounts", bot=h.bot_username)
        await h.settle(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        h.sim.faults.latency = 0.0
    assert all("Balance · testnet" in t for p in people[1:] for t in [p.last_text])
    # 50 sequential exchange calls would take 15 s; concurrently it is a few round trips.
    print(f"50 users answered in {elapsed:.2f}s")
    assert elapsed < 50 * 0.3 / 3, f"took {elapsed:.1f}s"
    texts = first.bot_texts
    assert "Balance · testnet" in texts[-2] and texts[-1].startswith("Accounts")


async def test_unhandled_error_gives_short_apology_and_bot_keeps_serving(
    h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alice, _ = await h.connected("Alice")

    async def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("database exploded with secret sauce")

    monkeypatch.setattr(h.svc.trading, "preview_order", boom)
    await alice.send("/buy 100 btc")
    text = alice.last_text
    assert re.search(r"Sorry, something went wrong on our side \(ref [0-9A-F]{6}\)", text)
    assert "exploded" not in text and "Traceback" not in text
    ref = re.search(r"ref ([0-9A-F]{6})", text)
    assert ref is not None
    assert any(ref.group(1) in r.getMessage() for r in caplog.records)

    bob = h.person("Bob")
    await bob.send("/start")
    assert "Hi Bob" in bob.last_text
    await alice.send("/accounts")
    assert "testnet" in alice.last_text


async def test_allow_list_refuses_strangers(world_sim: BitmexSimulator,
                                            world_emu: TelegramEmulator, tmp_path: Any) -> None:
    h = Harness(world_sim, world_emu, tmp_path, ALLOWED_USER_IDS=[555001])
    await h.start()
    try:
        stranger = h.person("Eve")
        await stranger.send("/start")
        assert "this bot is private" in stranger.last_text.lower()
        friend_user = h.emu.user(id=555001, first_name="Friend")
        chat = h.emu.private_chat(friend_user, bot=h.bot_username)
        h.emu.send_text(friend_user, chat, "/start", bot=h.bot_username)
        await h.settle()
        last = h.emu.last_bot_message(chat, bot=h.bot_username)
        assert last is not None and "Hi Friend" in (last.content or "")
    finally:
        await h.stop()


async def test_per_user_rate_limit_answers_politely_once(h: Harness) -> None:
    spammer = h.person("Spam")
    for _ in range(45):
        h.emu.send_text(spammer.user, spammer.chat, "/help", bot=h.bot_username)
    await h.settle()
    texts = spammer.bot_texts
    assert sum("too many commands" in t for t in texts) == 1
    # The burst, then refusals. The answers go out at Telegram's pace for one chat, so
    # working through the 45 takes a few seconds, in which the budget (40/min) refills by
    # a command or two.
    assert 20 <= sum("Commands" in t for t in texts) <= 23
    other = h.person("Calm")
    await other.send("/help")
    assert "Commands" in other.last_text


async def test_private_commands_are_refused_in_groups(h: Harness) -> None:
    alice = h.person("Alice")
    bob = h.person("Bob")
    group = h.group("Traders", [bob], [alice])
    last = await bob.send(f"/balance@{h.bot_username}", chat=group)
    assert last is not None and "private chat" in (last.content or "")


async def test_command_menus_are_set_per_scope(h: Harness) -> None:
    calls = [c for c in h.emu.calls_to("setMyCommands") if c.bot == h.bot_username]
    assert all(c.status == 200 for c in calls) and len(calls) == 3
    scopes = {str(c.params.get("scope")) for c in calls}
    assert any("all_private_chats" in s for s in scopes)
    assert any("all_group_chats" in s for s in scopes)
    assert any("all_chat_administrators" in s for s in scopes)


async def test_plain_words_work_in_private_and_unknown_commands_are_explained(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("help buy")
    assert "/buy SIZE" in alice.last_text
    await alice.send("/frobnicate")
    assert "Unknown command" in alice.last_text and "/help" in alice.last_text
    before = len(alice.bot_texts)
    await alice.send("hello there")  # small talk: one short pointer, not silence
    assert len(alice.bot_texts) == before + 1
    assert "/help" in alice.last_text and "buy 100 btc" in alice.last_text
    await alice.send("a1B2c3D4e5F6g7H8i9J0k1L2")  # a key pasted outside /connect
    assert "/connect testnet" in alice.last_text


async def test_exchange_trouble_is_explained_not_apologised_for(h: Harness) -> None:
    alice, _ = await h.connected("Alice")
    h.sim.faults.fail_next(20, status=503, route="user/margin", method="GET")
    try:
        await alice.send("/balance")
    finally:
        h.sim.faults.clear()
    assert "BitMEX is not answering right now" in alice.last_text
    assert "ref" not in alice.last_text
    await alice.send("/balance")
    assert "Balance · testnet" in alice.last_text


async def test_a_refusal_that_escapes_a_handler_is_explained_not_apologised_for(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.errors import Rejected

    alice, _ = await h.connected("Alice")

    async def refused(*a: Any, **k: Any) -> None:
        raise Rejected("Invalid orderQty")

    monkeypatch.setattr(h.svc.trading, "preview_order", refused)
    await alice.send("/buy 100 btc")
    assert "BitMEX refused this: Invalid orderQty" in alice.last_text
    assert "Sorry" not in alice.last_text


async def test_help_lists_what_works_where_you_are(h: Harness) -> None:
    alice = h.person("Alice")
    await alice.send("/help")
    assert "/buy SIZE" in alice.last_text and "/broadcast" not in alice.last_text
    group = h.group("Room", [], [alice])
    msg = await alice.send(f"/help@{h.bot_username}", chat=group)
    text = (msg.content if msg else "") or ""
    assert "/signal long|short" in text and "/feedstats" in text
    assert "/buy" not in text and "/connect" not in text


async def test_telegram_refusing_us_mid_update_gets_no_apology(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from telegram.error import RetryAfter

    alice, _ = await h.connected("Alice")

    async def flooded(*a: Any, **k: Any) -> None:
        raise RetryAfter(5)

    monkeypatch.setattr(h.svc.trading, "preview_order", flooded)
    before = len(alice.bot_texts)
    await alice.send("/buy 100 btc")
    assert len(alice.bot_texts) == before  # nothing to say through a refusing Telegram
    monkeypatch.undo()
    await alice.send("/accounts")
    assert "testnet" in alice.last_text
