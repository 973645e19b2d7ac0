"""The Bot API emulator, driven by the real python-telegram-bot client over loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from telegram import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
)
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.sandbox.telegram import EntityParseError, TelegramEmulator, auto_entities, parse_html
from tests.e2e.emulator_fixtures import (
    BOT_USERNAME,
    TOKEN,
    bot,
    emulator,
    make_app,
    make_bot,
    png,
    running,
)

__all__ = ["bot", "emulator"]  # fixtures, imported for pytest

Ctx = ContextTypes.DEFAULT_TYPE


def keyboard(*labels_and_data: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(t, callback_data=d)] for t, d in labels_and_data]
    )


# ------------------------------------------------------------------ parsing


def test_html_entities_use_utf16_offsets() -> None:
    text, entities = parse_html("📈 <b>XBT</b> &lt;up&gt; <a href='https://x.io'>chart</a>")
    assert text == "📈 XBT <up> chart"
    assert entities == [
        {"offset": 3, "length": 3, "type": "bold"},
        {"offset": 12, "length": 5, "type": "text_link", "url": "https://x.io"},
    ]


@pytest.mark.parametrize(
    ("markup", "error"),
    [
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<div>x</div>", 'Unsupported start tag "div" at byte offset 0'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
        ("<b", "Unclosed start tag at byte offset 0"),
    ],
)
def test_bad_html_is_rejected_like_telegram(markup: str, error: str) -> None:
    with pytest.raises(EntityParseError) as info:
        parse_html(markup)
    assert str(info.value) == error


def test_auto_entities_mark_commands_and_cashtags() -> None:
    kinds = [(e["type"], e["offset"], e["length"]) for e in auto_entities("/buy@Bot $XBTUSD")]
    assert kinds == [("bot_command", 0, 8), ("cashtag", 9, 7)]


# ------------------------------------------------------------ the basics


async def test_get_me_unknown_token_and_unknown_method(
    emulator: TelegramEmulator, bot: Any
) -> None:
    me = await bot.get_me()
    assert (me.username, me.is_bot, me.first_name) == (BOT_USERNAME, True, "Trade Bot")
    assert me.id == 123456
    with pytest.raises(InvalidToken):
        await make_bot(emulator, "999:nope").get_me()
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("noSuchMethod")


async def test_start_command_through_a_polling_application(emulator: TelegramEmulator) -> None:
    async def start(update: Update, context: Ctx) -> None:
        assert update.effective_user is not None and update.message is not None
        await update.message.reply_html(
            f"Welcome, <b>{update.effective_user.first_name}</b>!",
            reply_markup=keyboard(("Keys", "keys"), ("Help", "help")),
            do_quote=True,
        )

    app = make_app(emulator)
    app.add_handler(CommandHandler("start", start))
    alice = emulator.user(first_name="Alice", username="alice")
    async with running(app):
        sent = emulator.send_text(alice, None, "/start")
        await emulator.wait_bot_message(emulator.private_chat(alice))
        await emulator.idle()
    chat = emulator.private_chat(alice)
    reply = emulator.last_bot_message(chat)
    assert reply is not None
    assert reply.text == "Welcome, Alice!"
    assert reply.entities == [{"offset": 9, "length": 5, "type": "bold"}]
    assert reply.buttons == [["Keys"], ["Help"]]
    assert reply.reply_to is sent
    assert [m.message_id for m in emulator.chat_messages(chat)] == [1, 2]
    assert emulator.pending_updates() == []
    methods = [c.method for c in emulator.calls]
    assert methods[:2] == ["getMe", "deleteWebhook"] and "getUpdates" in methods


async def test_button_press_reaches_callback_handler_and_is_answered(
    emulator: TelegramEmulator,
) -> None:
    async def menu(update: Update, context: Ctx) -> None:
        assert update.message is not None
        await update.message.reply_text("Confirm?", reply_markup=keyboard(("Yes", "y:1")))

    async def pressed(update: Update, context: Ctx) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer(f"got {query.data}", show_alert=True)
        await query.edit_message_text("Done.")

    app = make_app(emulator)
    app.add_handler(CommandHandler("menu", menu))
    app.add_handler(CallbackQueryHandler(pressed))
    bob = emulator.user(first_name="Bob")
    chat = emulator.private_chat(bob)
    async with running(app):
        emulator.send_text(bob, chat, "/menu")
        question = await emulator.wait_bot_message(chat)
        assert question.buttons == [["Yes"]]
        query_id = emulator.press(bob, question, "yes")
        await emulator.wait_edit(question)
        await emulator.idle()
    answer = emulator.answers(query_id)
    assert answer is not None and (answer.text, answer.show_alert) == ("got y:1", True)
    assert question.text == "Done." and question.history == ["Confirm?"]
    assert question.buttons == []  # an edit without reply_markup drops the keyboard
    assert question.edit_date is not None
    with pytest.raises(ValueError, match="no button"):
        emulator.press(bob, question, "Yes")


async def test_edit_delete_and_their_errors(emulator: TelegramEmulator, bot: Any) -> None:
    carol = emulator.user(first_name="Carol")
    chat = emulator.private_chat(carol)
    sent = await bot.send_message(
        chat.id, "<i>price</i>", parse_mode=ParseMode.HTML, reply_markup=keyboard(("Refresh", "r"))
    )
    assert sent.text == "price" and sent.reply_markup is not None
    with pytest.raises(BadRequest, match=r"(?i)message is not modified: specified new message"):
        await bot.edit_message_text(
            "<i>price</i>",
            chat.id,
            sent.message_id,
            parse_mode=ParseMode.HTML,
            reply_markup=keyboard(("Refresh", "r")),
        )
    edited = await bot.edit_message_text(
        "price 2", chat.id, sent.message_id, reply_markup=keyboard(("Refresh", "r"))
    )
    assert edited.edit_date is not None and edited.text == "price 2"
    await bot.edit_message_reply_markup(
        chat.id, sent.message_id, reply_markup=keyboard(("Stop", "s"))
    )
    assert emulator.last_bot_message(chat) is not None
    assert emulator.chat_messages(chat)[-1].buttons == [["Stop"]]
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_reply_markup(
            chat.id, sent.message_id, reply_markup=keyboard(("Stop", "s"))
        )
    with pytest.raises(BadRequest, match=r"^Message to edit not found$"):
        await bot.edit_message_text("x", chat.id, 999)
    assert await bot.delete_message(chat.id, sent.message_id) is True
    assert emulator.chat_messages(chat) == []
    assert emulator.chat_messages(chat, include_deleted=True)[0].deleted
    with pytest.raises(BadRequest, match=r"^Message to delete not found$"):
        await bot.delete_message(chat.id, sent.message_id)
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query("12345")


async def test_send_photo_keeps_bytes_and_reports_sizes(
    emulator: TelegramEmulator, bot: Any
) -> None:
    dave = emulator.user(first_name="Dave")
    chat = emulator.private_chat(dave)
    image = png(1000, 500)
    message = await bot.send_photo(
        chat.id, image, caption="<b>PnL</b> week", parse_mode=ParseMode.HTML
    )
    assert message.caption == "PnL week"
    assert [(p.width, p.height) for p in message.photo] == [
        (90, 45),
        (320, 160),
        (800, 400),
        (1000, 500),
    ]
    stored = emulator.last_bot_message(chat)
    assert stored is not None and stored.photo_bytes == image
    file = await bot.get_file(message.photo[-1].file_id)
    assert bytes(await file.download_as_bytearray()) == image
    with pytest.raises(BadRequest, match=r"^Message caption is too long$"):
        await bot.send_photo(chat.id, image, caption="x" * 1025)
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(chat.id, b"not an image")
    document = await bot.send_document(chat.id, b"a,b\n1,2\n", filename="trades.csv")
    assert document.document is not None and document.document.file_name == "trades.csv"
    assert emulator.last_bot_message(chat) is not None
    assert emulator.transcript(chat).splitlines()[-1] == "@TradeTestBot: [file trades.csv] "


async def test_chat_action_commands_and_chat_info(emulator: TelegramEmulator, bot: Any) -> None:
    owner = emulator.user(first_name="Owner")
    member = emulator.user(first_name="Member")
    group = emulator.group("Signals", members=[member], admins=[owner], bot_admin=True)
    chat = emulator.private_chat(member)

    assert await bot.send_chat_action(chat.id, ChatAction.TYPING)
    assert emulator.chat_actions(chat) == ["typing"]

    await bot.set_my_commands([BotCommand("start", "Start"), BotCommand("buy", "Buy")])
    await bot.set_my_commands([BotCommand("feed", "Feed")], scope=BotCommandScopeAllGroupChats())
    await bot.set_my_commands([BotCommand("aide", "Aide")], language_code="fr")
    await bot.set_my_commands([BotCommand("admin", "Admin")], scope=BotCommandScopeChat(group.id))
    assert [c.command for c in await bot.get_my_commands()] == ["start", "buy"]
    assert [c.command for c in await bot.get_my_commands(language_code="fr")] == ["aide"]
    scoped = await bot.get_my_commands(scope=BotCommandScopeAllGroupChats())
    assert [c.command for c in scoped] == ["feed"]
    in_group = await bot.get_my_commands(scope=BotCommandScopeChat(group.id))
    assert [c.command for c in in_group] == ["admin"]
    await bot.delete_my_commands(scope=BotCommandScopeAllGroupChats())
    assert await bot.get_my_commands(scope=BotCommandScopeAllGroupChats()) == ()
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Name", "x")])

    info = await bot.get_chat(group.id)
    assert (info.id, info.type, info.title) == (group.id, "group", "Signals")
    private = await bot.get_chat(chat.id)
    assert private.first_name == "Member"
    assert (await bot.get_chat_member(group.id, owner.id)).status == "creator"
    assert (await bot.get_chat_member(group.id, member.id)).status == "member"
    admins = await bot.get_chat_administrators(group.id)
    # The Bot API lists no bots here, not even the admin bot asking.
    assert [(a.user.first_name, a.status) for a in admins] == [("Owner", "creator")]
    assert await bot.get_chat_member_count(group.id) == 3
    with pytest.raises(BadRequest, match=r"^Chat not found$"):
        await bot.get_chat(-42)


# ------------------------------------------------------ errors and access


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBUserWarning")
async def test_malformed_requests_get_telegram_errors(emulator: TelegramEmulator, bot: Any) -> None:
    erin = emulator.user(first_name="Erin")
    chat = emulator.private_chat(erin)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"text": "hi"}, "Chat_id is empty"),
        ({"chat_id": chat.id}, "Message text is empty"),
        ({"chat_id": chat.id, "text": "   "}, "Message text is empty"),
        ({"chat_id": 777, "text": "hi"}, "Chat not found"),
        (
            {"chat_id": chat.id, "text": "x", "reply_markup": "{bad"},
            "Can't parse reply keyboard markup json object",
        ),
        (
            {"chat_id": chat.id, "text": "<b>x", "parse_mode": "HTML"},
            "Can't parse entities: can't find end tag corresponding to start tag \"b\"",
        ),
        ({"chat_id": chat.id, "text": "a" * 4097}, "Message is too long"),
        (
            {"chat_id": chat.id, "text": "x", "reply_to_message_id": 99},
            "Message to be replied not found",
        ),
        ({"chat_id": chat.id, "text": "x", "parse_mode": "Klingon"}, "Unsupported parse_mode"),
    ]
    for params, message in cases:
        with pytest.raises(BadRequest) as info:
            await bot.do_api_request("sendMessage", api_kwargs=params)
        assert info.value.message.startswith(message), (params, info.value.message)

    # Exactly 4096 characters after parsing is fine, however long the markup.
    long_text = await bot.send_message(chat.id, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    assert len(long_text.text) == 4096
    with pytest.raises(BadRequest, match=r"^Button_data_invalid$"):
        await bot.send_message(chat.id, "x", reply_markup=keyboard(("Go", "d" * 65)))
    with pytest.raises(BadRequest, match=r"(?i)text buttons are unallowed"):
        await bot.send_message(
            chat.id, "x", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("plain")]])
        )
    url_button = await bot.send_message(
        chat.id,
        "x",
        reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("Docs", url="https://example.org")]]
        ),
    )
    assert url_button.reply_markup is not None


async def test_raw_http_shapes_json_body_get_and_case_insensitive_names(
    emulator: TelegramEmulator,
) -> None:
    frank = emulator.user(first_name="Frank")
    chat = emulator.private_chat(frank)
    base = f"{emulator.url}/bot{TOKEN}"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}/SENDMESSAGE", json={"chat_id": chat.id, "text": "json body"}
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["result"]["text"] == "json body"
        async with session.get(f"{base}/getme") as resp:
            assert (await resp.json())["result"]["username"] == BOT_USERNAME
        async with session.post(f"{base}/sendMessage", data={"chat_id": "x"}) as resp:
            assert resp.status == 400
            assert await resp.json() == {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: chat not found",
            }
        async with session.post(
            f"{base}/sendMessage", data=b"[1,2", headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 400
        async with session.get(f"{emulator.url}/bot1:bad/getMe") as resp:
            assert resp.status == 401
            assert (await resp.json())["description"] == "Unauthorized"
        async with session.get(f"{base}/nope") as resp:
            assert resp.status == 404
            assert (await resp.json())["description"] == "Not Found"


async def test_blocked_user_and_lost_groups_are_forbidden(
    emulator: TelegramEmulator, bot: Any
) -> None:
    gina = emulator.user(first_name="Gina")
    chat = emulator.private_chat(gina)
    await bot.send_message(chat.id, "hello")
    emulator.block_bot(gina)
    with pytest.raises(Forbidden, match=r"^Forbidden: bot was blocked by the user$"):
        await bot.send_message(chat.id, "still there?")
    emulator.unblock_bot(gina)
    await bot.send_message(chat.id, "welcome back")

    stranger = emulator.user(first_name="Stranger")
    emulator.private_chat(stranger, started=False)
    with pytest.raises(Forbidden, match="can't initiate conversation"):
        await bot.send_message(stranger.id, "hi")

    group = emulator.group("Desk", members=[gina], admins=[gina])
    emulator.remove_bot_from_group(group, by=gina)
    with pytest.raises(Forbidden, match="bot was kicked from the group chat"):
        await bot.send_message(group.id, "hi")
    emulator.add_bot_to_group(group, by=gina)
    await bot.send_message(group.id, "back")
    assert await bot.leave_chat(group.id)
    with pytest.raises(Forbidden, match="bot is not a member of the group chat"):
        await bot.send_message(group.id, "hi")

    old = emulator.group("Old", members=[gina])
    new = emulator.upgrade_to_supergroup(old)
    with pytest.raises(ChatMigrated) as migrated:
        await bot.send_message(old.id, "hi")
    assert migrated.value.new_chat_id == new.id


async def test_group_commands_with_bot_name_reach_command_handler(
    emulator: TelegramEmulator,
) -> None:
    seen: list[tuple[int, list[str]]] = []

    async def price(update: Update, context: Ctx) -> None:
        assert update.effective_chat is not None and update.message is not None
        seen.append((update.effective_chat.id, list(context.args or [])))
        await update.message.reply_text(f"price of {context.args[0] if context.args else '?'}")

    app = make_app(emulator)
    app.add_handler(CommandHandler("price", price))
    hank = emulator.user(first_name="Hank")
    group = emulator.group("Traders", members=[hank], supergroup=True)
    assert group.id < -1_000_000_000_000
    async with running(app):
        emulator.send_text(hank, group, f"/price@{BOT_USERNAME} XBTUSD")
        await emulator.wait_for(lambda: len(emulator.bot_messages(group)) >= 1)
        emulator.send_text(hank, group, "/price@SomeOtherBot ETHUSD")
        # Privacy mode: a general command reaches the bot because it was the last to post.
        emulator.send_text(hank, group, "/price SOLUSD")
        await emulator.wait_for(lambda: len(emulator.bot_messages(group)) >= 2)
        await emulator.idle()
    assert seen == [(group.id, ["XBTUSD"]), (group.id, ["SOLUSD"])]
    texts = [m.text for m in emulator.bot_messages(group)]
    assert texts == ["price of XBTUSD", "price of SOLUSD"]


async def test_user_edits_and_membership_reach_the_bot(emulator: TelegramEmulator) -> None:
    edits: list[str] = []
    joined: list[str] = []

    async def on_edit(update: Update, context: Ctx) -> None:
        assert update.edited_message is not None
        edits.append(update.edited_message.text or "")

    async def on_join(update: Update, context: Ctx) -> None:
        assert update.message is not None
        joined.extend(u.first_name for u in update.message.new_chat_members)

    app = make_app(emulator)
    app.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE, on_edit))
    app.add_handler(MessageHandler(filters.StatusUpdate.NEW_CHAT_MEMBERS, on_join))
    ivy = emulator.user(first_name="Ivy")
    jack = emulator.user(first_name="Jack")
    # An admin bot: in privacy mode a member bot would not get plain text at all.
    group = emulator.group("Feed", admins=[ivy], bot_admin=True)
    async with running(app):
        signal = emulator.send_text(ivy, group, "long XBT 60000")
        emulator.edit_text(ivy, signal, "long XBT 61000")
        emulator.join(group, jack)
        await emulator.idle()
        # idle() sees the updates confirmed; the handlers may still be running under load.
        for _ in range(500):
            if edits and joined:
                break
            await asyncio.sleep(0.01)
    assert edits == ["long XBT 61000"]
    assert joined == ["Jack"]
    assert emulator.chat_messages(group)[0].content == "long XBT 61000"


# ---------------------------------------------------------------- updates


async def test_long_poll_wakes_at_once_and_offset_confirms(
    emulator: TelegramEmulator, bot: Any
) -> None:
    kim = emulator.user(first_name="Kim")
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    emulator.send_text(kim, None, "hello")
    updates = await poll
    assert time.monotonic() - started < 1.0
    assert [u.message.text for u in updates] == ["hello"]
    assert len(emulator.pending_updates()) == 1  # delivered, not yet confirmed
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == ()
    assert emulator.pending_updates() == []

    # allowed_updates filters what is queued from then on, and the choice persists.
    await bot.get_updates(timeout=0, allowed_updates=["callback_query"])
    emulator.send_text(kim, None, "ignored")
    assert await bot.get_updates(timeout=0) == ()


async def test_second_poller_and_webhook_conflicts(emulator: TelegramEmulator, bot: Any) -> None:
    # PTB keeps one connection for getUpdates, so two pollers need two raw clients.
    url = f"{emulator.url}/bot{TOKEN}/getUpdates"
    async with aiohttp.ClientSession() as one, aiohttp.ClientSession() as two:
        first = asyncio.create_task(one.post(url, data={"timeout": "3"}))
        await asyncio.sleep(0.1)
        async with two.post(url, data={"timeout": "0"}) as resp:
            assert (resp.status, await resp.json()) == (200, {"ok": True, "result": []})
        async with await first as resp:
            assert resp.status == 409
            assert (await resp.json())["description"] == (
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running"
            )

    received: list[dict[str, Any]] = []

    async def hook(request: aiohttp.web.Request) -> aiohttp.web.Response:
        assert request.headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret"
        received.append(await request.json())
        return aiohttp.web.Response(text="ok")

    app = aiohttp.web.Application()
    app.router.add_post("/hook", hook)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    emulator.allow_loopback_http_webhooks = True  # the named test-only allowance
    try:
        await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        info = await bot.get_webhook_info()
        assert info.url.endswith("/hook")
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates()
        lee = emulator.user(first_name="Lee")
        emulator.send_text(lee, None, "via webhook")
        await emulator.wait_for(lambda: received, timeout=3)
        assert received[0]["message"]["text"] == "via webhook"
        assert await bot.delete_webhook()
    finally:
        await runner.cleanup()


async def test_junk_in_any_method_is_a_4xx_never_a_crash(emulator: TelegramEmulator) -> None:
    user = emulator.user(first_name="Fuzz")
    chat = emulator.private_chat(user)
    group = emulator.group("G", members=[user])
    junk_values: list[Any] = ["", "abc", "-1", "[]", "{}", "null", "{bad", 0, -5, 10**20, None]
    methods = sorted(name for name, _ in emulator._methods.values())
    base = f"{emulator.url}/bot{TOKEN}"
    statuses: set[int] = set()
    async with aiohttp.ClientSession() as session:
        for index, method in enumerate(methods):
            for junk in junk_values:
                json_body = {
                    "chat_id": [chat.id, group.id, junk][index % 3],
                    "message_id": junk,
                    "text": junk,
                    "caption": junk,
                    "reply_markup": junk,
                    "reply_parameters": junk,
                    "callback_query_id": junk,
                    "commands": junk,
                    "scope": junk,
                    "user_id": junk,
                    "photo": junk,
                    "file_id": junk,
                    "action": junk,
                    "offset": junk,
                    "allowed_updates": junk,
                    "url": junk,
                }
                form = {k: str(v) for k, v in json_body.items() if v is not None}
                async with session.post(f"{base}/{method}", json=json_body) as resp:
                    statuses.add(resp.status)
                async with session.post(f"{base}/{method}", data=form) as resp:
                    statuses.add(resp.status)
    assert {200, 400} <= statuses <= {200, 400, 403, 409}, statuses
    assert emulator.internal_errors == []
