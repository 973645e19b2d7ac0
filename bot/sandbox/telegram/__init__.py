"""A local Telegram Bot API server that the real python-telegram-bot client talks to.

Start it, register a bot, point PTB at `emulator.url + "/bot"` and play the user:

    emulator = TelegramEmulator(FloodLimits.off())
    await emulator.start()
    emulator.add_bot("123:ABC", "TradeBot")
    alice = emulator.user(first_name="Alice")
    emulator.send_text(alice, None, "/start")
    await emulator.idle()
    assert "Welcome" in emulator.last_bot_message(emulator.private_chat(alice)).text
"""

from .emulator import TelegramEmulator
from .entities import EntityParseError, auto_entities, parse_html
from .errors import ApiError
from .limits import FloodLimiter, FloodLimits
from .state import ApiCall, BotAccount, CallbackAnswer, Chat, Message, User

__all__ = [
    "ApiCall",
    "ApiError",
    "BotAccount",
    "CallbackAnswer",
    "Chat",
    "EntityParseError",
    "FloodLimiter",
    "FloodLimits",
    "Message",
    "TelegramEmulator",
    "User",
    "auto_entities",
    "parse_html",
]
