"""pinChatMessage / unpinChatMessage in the Bot API emulator, driven by the real
python-telegram-bot client, as strict as the real server: a bot may always pin in its
private chat; in a group or supergroup only as an administrator with the "Pin messages"
right; unknown messages are refused; a group sees the service message; getChat shows the
newest pinned message."""

from __future__ import annotations

from typing import Any

import pytest
from telegram.error import BadRequest

from bot.sandbox.telegram import TelegramEmulator
from tests.e2e.emulator_fixtures import bot, emulator

__all__ = ["bot", "emulator"]  # fixtures, imported for pytest

NO_RIGHTS = r"^Not enough rights to manage pinned messages in the chat$"


async def test_pin_and_unpin_in_a_private_chat(emulator: TelegramEmulator, bot: Any) -> None:
    carol = emulator.user(first_name="Carol")
    chat = emulator.private_chat(carol)
    first = await bot.send_message(chat.id, "BTC long")
    second = await bot.send_message(chat.id, "ETH short")
    assert await bot.pin_chat_message(chat.id, first.message_id, disable_notification=True)
    assert await bot.pin_chat_message(chat.id, second.message_id)
    assert [m.text for m in emulator.pinned(chat)] == ["BTC long", "ETH short"]
    info = await bot.get_chat(chat.id)
    assert info.pinned_message is not None and info.pinned_message.text == "ETH short"
    # no service message in the chat's history: only the two posts
    assert [m.text for m in emulator.chat_messages(chat)] == ["BTC long", "ETH short"]
    with pytest.raises(BadRequest, match=r"^Message to pin not found$"):
        await bot.pin_chat_message(chat.id, 999)
    with pytest.raises(BadRequest, match=r"^Message to unpin not found$"):
        await bot.unpin_chat_message(chat.id, 999)
    assert await bot.unpin_chat_message(chat.id, first.message_id)
    assert [m.text for m in emulator.pinned(chat)] == ["ETH short"]
    assert await bot.unpin_chat_message(chat.id)  # without an id: the newest
    assert emulator.pinned(chat) == []
    assert (await bot.get_chat(chat.id)).pinned_message is None


@pytest.mark.parametrize("supergroup", [False, True])
async def test_pinning_in_a_group_needs_the_pin_right(emulator: TelegramEmulator, bot: Any,
                                                      supergroup: bool) -> None:
    owner = emulator.user(first_name="Owner")
    group = emulator.group("Desk", admins=[owner], supergroup=supergroup)  # bot: a member
    sent = await bot.send_message(group.id, "monitor")
    with pytest.raises(BadRequest, match=NO_RIGHTS):
        await bot.pin_chat_message(group.id, sent.message_id)
    with pytest.raises(BadRequest, match=NO_RIGHTS):
        await bot.unpin_chat_message(group.id, sent.message_id)
    me = emulator.bot().user
    emulator.promote(group, me, can_pin_messages=False)  # an admin, but not with this right
    member = await bot.get_chat_member(group.id, me.id)
    assert member.status == "administrator" and member.can_pin_messages is False
    with pytest.raises(BadRequest, match=NO_RIGHTS):
        await bot.pin_chat_message(group.id, sent.message_id)
    assert emulator.pinned(group) == []
    emulator.promote(group, me)
    assert (await bot.get_chat_member(group.id, me.id)).can_pin_messages is True
    with pytest.raises(BadRequest, match=r"^Message to pin not found$"):
        await bot.pin_chat_message(group.id, 999)
    assert await bot.pin_chat_message(group.id, sent.message_id, disable_notification=True)
    assert emulator.pinned(group) == [emulator.chat_messages(group)[0]]
    # the group sees "pinned a message", silently when asked
    notice = emulator.chat_messages(group)[-1]
    assert notice.service is not None
    assert notice.service["pinned_message"]["message_id"] == sent.message_id
    assert notice.disable_notification
    info = await bot.get_chat(group.id)
    assert info.pinned_message is not None and info.pinned_message.text == "monitor"
    assert await bot.unpin_chat_message(group.id, sent.message_id)
    assert emulator.pinned(group) == []
