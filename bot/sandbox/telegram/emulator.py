"""A local Telegram Bot API server for tests and the offline sandbox.

The real python-telegram-bot client talks to it over loopback exactly as it talks to
api.telegram.org (`base_url(emulator.url + "/bot")`). Answers, status codes and error wording
follow the real server, flood control included, so what works here works there.
Tests play the user through the control API (`send_text`, `press`, ...) and read the chats
back as a person would see them (`chat_messages`), waiting with `idle()` / `wait_*` rather
than sleeping.

`TelegramEmulator` is assembled from one class per area on `EmulatorCore` (`core.py`): the
world tests set up (`world.py`), the user's side of the control API (`control.py`), the
Bot API methods by area (`api_updates.py`, `api_messages.py`, `api_bot.py`,
`api_chats.py`, `api_pins.py`, sharing `params.py`), files (`files.py`) and the HTTP
server (`http.py`); `rules.py` holds the limits the real server applies.
"""

from __future__ import annotations

from .api_bot import BotApi
from .api_chats import ChatsApi
from .api_messages import MessagesApi
from .api_pins import PinsApi
from .api_updates import UpdatesApi
from .control import Control
from .entities import utf16_len
from .files import FilesApi
from .http import HttpServer
from .limits import Clock, FloodLimits
from .rules import CALLBACK_DEADLINE


class TelegramEmulator(Control, UpdatesApi, MessagesApi, PinsApi, BotApi, ChatsApi, FilesApi,
                       HttpServer):
    """The Bot API server plus the world behind it (users, chats) and a control API."""

    def __init__(
        self,
        limits: FloodLimits | None = None,
        *,
        clock: Clock | None = None,
        quiet_period: float = 0.05,
        max_long_poll: float = 50.0,
        allow_loopback_http_webhooks: bool = False,
        webhook_seed: int = 0,
    ) -> None:
        """`allow_loopback_http_webhooks`: a test-only allowance for `http://127.0.0.1:PORT`
        webhooks (Telegram itself takes only https on ports 443, 80, 88 and 8443)."""
        super().__init__(
            limits, clock=clock, quiet_period=quiet_period, max_long_poll=max_long_poll,
            allow_loopback_http_webhooks=allow_loopback_http_webhooks,
            webhook_seed=webhook_seed,
        )
        for name in (
            "getMe",
            "logOut",
            "close",
            "getUpdates",
            "setWebhook",
            "deleteWebhook",
            "getWebhookInfo",
            "sendMessage",
            "sendPhoto",
            "sendDocument",
            "editMessageText",
            "editMessageCaption",
            "editMessageReplyMarkup",
            "deleteMessage",
            "answerCallbackQuery",
            "getFile",
            "sendChatAction",
            "setMyCommands",
            "getMyCommands",
            "deleteMyCommands",
            "getChat",
            "getChatMember",
            "getChatAdministrators",
            "getChatMemberCount",
            "leaveChat",
            "pinChatMessage",
            "unpinChatMessage",
        ):
            self._methods[name.lower()] = (name, getattr(self, f"_api_{name}"))


# Importable from here as before the split (tests use the press deadline).
__all__ = ["CALLBACK_DEADLINE", "TelegramEmulator", "utf16_len"]
