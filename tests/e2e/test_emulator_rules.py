"""The emulator's Telegram rules that a kind stand-in would hide: privacy mode, forum
topics, linked channels, membership changes, webhook rules, and the smaller truths."""

from __future__ import annotations

import asyncio
import socket

import pytest
from telegram import Bot, Update
from telegram.error import BadRequest, Forbidden
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters

from bot.sandbox.telegram import TelegramEmulator, parse_html
from handlers.processor import PerChatUpdateProcessor
from tests.e2e.emulator_fixtures import (
    BOT_USERNAME,
    TOKEN,
    bot,
    emulator,
    make_app,
    running,
)

__all__ = ["bot", "emulator"]  # fixtures, imported for pytest

Ctx = ContextTypes.DEFAULT_TYPE


def received(app: Application) -> list[Update]:
    seen: list[Update] = []

    async def record(update: Update, context: Ctx) -> None:
        seen.append(update)

    app.add_handler(MessageHandler(filters.ALL, record))
    return seen


# ------------------------------------------------------------------ privacy mode


async def test_privacy_mode_is_on_by_default(emulator: TelegramEmulator, bot: Bot) -> None:
    assert (await bot.get_me()).can_read_all_group_messages is False
    owner, member = emulator.user(first_name="Owner"), emulator.user(first_name="Member")
    other = emulator.add_bot("999:OTHER-abcdefghijklmnopqrstuvwxyz", "OtherBot")
    group = emulator.group("G", [member], [owner], bots=[None, other])
    app = make_app(emulator)
    seen = received(app)
    async with running(app):
        emulator.send_text(member, group, "plain text, no command")
        emulator.send_text(member, group, f"hey @{BOT_USERNAME} look")  # mentions: no
        emulator.send_text(member, group, "/feedstats")  # the bot never posted here: no
        emulator.send_text(member, group, f"/feedstats@{BOT_USERNAME}")  # addressed: yes
        emulator.join(group, emulator.user(first_name="New"))  # service message: yes
        await emulator.idle()
        texts = [u.message.text for u in seen if u.message is not None]
        assert texts == [f"/feedstats@{BOT_USERNAME}", None]
        # Once the bot posted last, general commands reach it; after another bot posts,
        # they reach that bot instead.
        mine = await app.bot.send_message(group.id, "hello")
        emulator.send_text(member, group, "/help")
        reply = emulator.send_text(member, group, "a reply to the bot",
                                   reply_to=emulator.chat_messages(group)[-2])
        await emulator.idle()
        assert [u.message.text for u in seen[2:]] == ["/help", "a reply to the bot"]
        assert reply.reply_to is not None and reply.reply_to.message_id == mine.message_id
        other_bot = Bot("999:OTHER-abcdefghijklmnopqrstuvwxyz",
                        base_url=emulator.url + "/bot")
        async with other_bot:
            await other_bot.send_message(group.id, "I'm the other bot")
        emulator.send_text(member, group, "/help")
        emulator.promote(group, emulator.bot().user)  # admins see everything
        emulator.send_text(member, group, "now plain text arrives")
        await emulator.idle()
        assert [u.message.text for u in seen[4:] if u.message] == ["now plain text arrives"]


# ------------------------------------------------------------ topics, channels


async def test_forum_topics(emulator: TelegramEmulator, bot: Bot) -> None:
    owner = emulator.user(first_name="Owner")
    group = emulator.group("Forum", [], [owner], forum=True, bot_admin=True)
    topic = emulator.create_topic(group, "Calls")
    typed = emulator.send_text(owner, group, "in the topic", topic=topic)
    assert typed.to_api()["message_thread_id"] == topic.id
    assert typed.to_api()["is_topic_message"] is True
    in_general = await bot.send_message(group.id, "no thread id")
    assert in_general.message_thread_id is None and not in_general.is_topic_message
    there = await bot.send_message(group.id, "in topic", message_thread_id=topic.id)
    assert there.message_thread_id == topic.id and there.is_topic_message
    replied = await bot.send_message(group.id, "reply", reply_to_message_id=typed.message_id)
    assert replied.message_thread_id == topic.id  # a reply lands in the replied topic
    with pytest.raises(BadRequest, match=r"(?i)thread not found"):
        await bot.send_message(group.id, "x", message_thread_id=99999)
    emulator.close_topic(group, topic)
    with pytest.raises(BadRequest, match="Topic_closed"):
        await bot.send_message(group.id, "x", message_thread_id=topic.id)
    emulator.close_topic(group, None)
    with pytest.raises(BadRequest, match="Topic_closed"):
        await bot.send_message(group.id, "x")


async def test_linked_channel_posts_and_automatic_forwards(emulator: TelegramEmulator) -> None:
    owner = emulator.user(first_name="Owner")
    group = emulator.group("Discussion", [], [owner], bot_admin=True)
    channel = emulator.channel("News", [owner], linked_group=group)
    app = make_app(emulator)
    posts: list[Update] = []

    async def on_post(update: Update, context: Ctx) -> None:
        posts.append(update)

    app.add_handler(MessageHandler(filters.ALL, on_post))
    async with running(app):
        emulator.post_to_channel(owner, channel, "big news")
        await emulator.idle()
    channel_post = next(u for u in posts if u.channel_post is not None)
    assert channel_post.channel_post.chat.type == "channel"
    assert channel_post.channel_post.from_user is None
    forward = next(u.message for u in posts if u.message is not None)
    assert forward.is_automatic_forward and forward.from_user is not None
    assert forward.from_user.id == 777000
    assert forward.sender_chat is not None and forward.sender_chat.id == channel.id


# ------------------------------------------------------------------ membership


async def test_membership_changes(emulator: TelegramEmulator, bot: Bot) -> None:
    owner, pat = emulator.user(first_name="Owner"), emulator.user(first_name="Pat")
    stranger = emulator.user(first_name="Stranger")  # seen only in the group
    group = emulator.group("G", [stranger], [owner], supergroup=True)
    emulator.private_chat(pat)
    me = emulator.bot().user

    def statuses() -> list[tuple[str, str]]:
        return [(u["my_chat_member"]["old_chat_member"]["status"],
                 u["my_chat_member"]["new_chat_member"]["status"])
                for u in emulator.pending_updates() if "my_chat_member" in u]

    emulator.remove_bot_from_group(group, by=owner)
    with pytest.raises(Forbidden, match="bot was kicked from the supergroup chat"):
        await bot.send_message(group.id, "x")
    emulator.add_bot_to_group(group, by=owner)
    assert (await bot.send_message(group.id, "back")).text == "back"
    emulator.restrict(group, me, by=owner)
    with pytest.raises(BadRequest, match=r"(?i)not enough rights to send text messages"):
        await bot.send_message(group.id, "x")
    emulator.promote(group, me, by=owner)
    emulator.block_bot(pat)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(pat.id, "x")
    emulator.unblock_bot(pat)
    assert (await bot.send_message(pat.id, "hi again")).text == "hi again"
    assert statuses() == [("member", "kicked"), ("kicked", "member"), ("member", "restricted"),
                          ("restricted", "administrator"), ("member", "kicked"),
                          ("kicked", "member")]
    with pytest.raises(Forbidden, match="bot can't initiate conversation with a user"):
        await bot.send_message(stranger.id, "x")
    emulator.deactivate(pat)
    with pytest.raises(Forbidden, match="user is deactivated"):
        await bot.send_message(pat.id, "x")


# ------------------------------------------------------------------ smaller truths


async def test_admin_lists_deletes_entities_and_lengths(
        emulator: TelegramEmulator, bot: Bot) -> None:
    owner, member = emulator.user(first_name="Owner"), emulator.user(first_name="Member")
    group = emulator.group("S", [member], [owner], supergroup=True, bot_admin=True)
    admins = await bot.get_chat_administrators(group.id)
    assert [a.user.first_name for a in admins] == ["Owner"]  # no bots

    old = emulator.send_text(member, group, "old")
    emulator.age(old, 48 * 3600)
    with pytest.raises(BadRequest, match=r"(?i)message can't be deleted"):
        await bot.delete_message(group.id, old.message_id)
    fresh = emulator.send_text(member, group, "fresh")
    emulator.promote(group, emulator.bot().user, can_delete_messages=False)
    with pytest.raises(BadRequest, match=r"(?i)message can't be deleted"):
        await bot.delete_message(group.id, fresh.message_id)
    emulator.promote(group, emulator.bot().user)
    assert await bot.delete_message(group.id, fresh.message_id)

    assert parse_html("a &lt;b&gt; &amp; &quot;c&quot; &#39;d&#x27;")[0] == "a <b> & \"c\" 'd'"
    assert parse_html("&apos; &nbsp;")[0] == "&apos; &nbsp;"  # only four named entities

    chat = emulator.private_chat(member)
    emoji = "😀" * 2048  # 2048 characters, 4096 UTF-16 code units: just fits
    assert (await bot.send_message(chat.id, emoji)).text == emoji
    with pytest.raises(BadRequest, match="too long"):
        await bot.send_message(chat.id, emoji + "x")


# ------------------------------------------------------------------ webhooks


async def test_set_webhook_follows_telegram_rules(emulator: TelegramEmulator, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)https url must be provided"):
        await bot.set_webhook("http://bot.example.com/hook")
    with pytest.raises(BadRequest, match=r"(?i)https url must be provided"):
        await bot.set_webhook("http://127.0.0.1:9/hook")  # loopback only by the opt-in
    with pytest.raises(BadRequest, match=r"(?i)only on ports 80, 88, 443 or 8443"):
        await bot.set_webhook("https://bot.example.com:8080/hook")
    with pytest.raises(BadRequest, match=r"(?i)secret token"):
        await bot.set_webhook("https://bot.example.com/hook", secret_token="bad token!")
    with pytest.raises(BadRequest, match=r"(?i)max_connections"):
        await bot.set_webhook("https://bot.example.com/hook", max_connections=101)
    for url in ("https://bot.example.com/hook", "https://bot.example.com:8443/hook",
                "https://bot.example.com:88/h"):
        assert await bot.set_webhook(url, secret_token="A-z_0" * 10, max_connections=7)
    info = await bot.get_webhook_info()
    assert (info.url, info.max_connections) == ("https://bot.example.com:88/h", 7)
    assert await bot.delete_webhook()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _webhook_run(emulator: TelegramEmulator, window: float) -> list[tuple[int, str]]:
    """Two people send 12 numbered messages each to a webhook bot; what it handled, in
    the order its handler ran."""
    handled: list[tuple[int, str]] = []
    all_in = asyncio.Event()

    async def record(update: Update, context: Ctx) -> None:
        assert update.message is not None
        handled.append((update.message.chat_id, update.message.text or ""))
        if len(handled) == 24:
            all_in.set()

    app = (ApplicationBuilder().token(TOKEN).base_url(emulator.url + "/bot")
           .concurrent_updates(PerChatUpdateProcessor(64, reorder_window=window)).build())
    app.add_handler(MessageHandler(filters.TEXT, record))
    port = free_port()
    emulator.allow_loopback_http_webhooks = True
    people = [emulator.user(first_name=n) for n in ("Ann", "Ben")]
    try:
        await app.initialize()
        await app.start()
        assert app.updater is not None
        await app.updater.start_webhook(listen="127.0.0.1", port=port, url_path="hook",
                                        webhook_url=f"http://127.0.0.1:{port}/hook")
        for i in range(12):
            for person in people:
                emulator.send_text(person, None, str(i))
        await asyncio.wait_for(all_in.wait(), 10)
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
    finally:
        emulator.allow_loopback_http_webhooks = False
    return handled


async def test_concurrent_webhook_deliveries_keep_each_chats_order(
        emulator: TelegramEmulator) -> None:
    handled = await _webhook_run(emulator, window=1.0)
    posted = list(emulator.webhook_posts)
    assert posted != sorted(posted)  # Telegram's concurrent deliveries: out of order
    for chat in {c for c, _ in handled}:
        texts = [t for c, t in handled if c == chat]
        assert texts == [str(i) for i in range(12)], texts


async def test_without_reordering_out_of_order_deliveries_break_a_chats_order(
        emulator: TelegramEmulator) -> None:
    # The control: the emulator's deliveries really do scramble a chat's order.
    handled = await _webhook_run(emulator, window=0.0)
    per_chat: dict[int, list[str]] = {}
    for chat, text in handled:
        per_chat.setdefault(chat, []).append(text)
    assert any(texts != [str(i) for i in range(12)] for texts in per_chat.values())





async def test_webhook_deliveries_are_concurrent_up_to_max_connections_and_retried(
        emulator: TelegramEmulator, bot: Bot) -> None:
    from aiohttp import web

    active, peak, answers = 0, 0, [500, 500]
    got: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        if answers:  # the first two posts fail: Telegram keeps those updates and retries
            return web.Response(status=answers.pop())
        got.append((await request.json())["update_id"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    emulator.allow_loopback_http_webhooks = True
    try:
        await bot.set_webhook(f"http://127.0.0.1:{port}/hook", max_connections=3)
        user = emulator.user(first_name="Una")
        for i in range(9):
            emulator.send_text(user, None, f"m{i}")
        await emulator.wait_for(lambda: len(got) == 9, timeout=10)
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 0
        assert sorted(got) == list(range(min(got), min(got) + 9))  # each update exactly once
        assert peak == 3  # concurrent, but never more than max_connections
        assert len(emulator.webhook_posts) == 11  # two retried after a failure
        await bot.delete_webhook()
    finally:
        emulator.allow_loopback_http_webhooks = False
        await runner.cleanup()
