"""Building and running the Telegram application (a composition root).

Everything PTB-specific about start-up lives here: the request settings, the rate
limiter, the update processor, the handlers, the command menus, polling or webhook.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from telegram import (
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    Update,
)
from telegram.error import BadRequest, InvalidToken, NetworkError
from telegram.ext import Application, ApplicationBuilder

from bot.chats import migrate_chat
from bot.config import Settings
from bot.errors import ConfigError
from bot.notify import DeliveryLimits, DeliveryQueue
from bot.prefs import Preferences
from bot.services import Services, create_services
from handlers import jobs, register
from handlers.notifier import TelegramNotifier
from handlers.processor import PerChatUpdateProcessor
from handlers.ratelimit import ChatLimits, ChatRateLimiter

log = logging.getLogger("bot.app")

PRIVATE_MENU = [
    ("start", "account and menu"),
    ("buy", "buy / long: preview then confirm"),
    ("sell", "sell / short: preview then confirm"),
    ("close", "close a position"),
    ("positions", "open positions"),
    ("orders", "open orders"),
    ("balance", "wallet and margin"),
    ("price", "prices and funding"),
    ("alert", "set a price, move or funding alert"),
    ("pnl", "realised PnL with chart"),
    ("connect", "add a BitMEX API key"),
    ("settings", "preferences"),
    ("help", "all commands"),
]
GROUP_MENU = [("feedstats", "the feed's record"), ("help", "what I do here")]
ADMIN_MENU = [
    ("signal", "post a signal"),
    ("feed", "turn the signal feed on or off"),
    ("alert", "a shared alert"),
    ("liqfeed", "post big liquidations here"),
    ("feedstats", "the feed's record"),
    ("help", "what I do here"),
]


async def set_menus(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Command menus per scope: people see what works where they are."""
    def cmds(items: list[tuple[str, str]]) -> list[BotCommand]:
        return [BotCommand(c, d) for c, d in items]

    await app.bot.set_my_commands(cmds(PRIVATE_MENU), scope=BotCommandScopeAllPrivateChats())
    await app.bot.set_my_commands(cmds(GROUP_MENU), scope=BotCommandScopeAllGroupChats())
    await app.bot.set_my_commands(cmds(ADMIN_MENU), scope=BotCommandScopeAllChatAdministrators())


def attach(app: Application[Any, Any, Any, Any, Any, Any], services: Services) -> None:
    """Give the services their way back to users, and the handlers their services."""
    async def moved(old: int, new: int) -> None:
        await migrate_chat(services, old, new)

    services.notifier = DeliveryQueue(
        TelegramNotifier(app.bot, on_migrated=moved), audience=Preferences(services.db).audience,
        on_blocked=services.mark_blocked,
        limits=DeliveryLimits().scaled(services.settings.TELEGRAM_TIME_SCALE))
    app.bot_data["services"] = services
    jobs.install(app)


def build_application(
    settings: Settings,
    services: Services | None,
    *,
    token: str | None = None,
    rate_limiter_retries: int | None = 3,
    concurrent_updates: int = 256,
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The PTB application wired to our services; not started."""
    api = settings.TELEGRAM_API_URL
    # Any: the builder's generic type changes with the rate limiter chosen below.
    builder: Any = (
        ApplicationBuilder()
        .token(token or settings.token or "")
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .concurrent_updates(PerChatUpdateProcessor(concurrent_updates))
        .connect_timeout(10)
        .read_timeout(15)
        .write_timeout(30)
        .pool_timeout(10)
        .connection_pool_size(64)
        .get_updates_read_timeout(40)
    )
    if rate_limiter_retries is not None:  # None: no limiter (benchmarks of raw capacity)
        builder = builder.rate_limiter(ChatRateLimiter(
            ChatLimits().scaled(settings.TELEGRAM_TIME_SCALE), max_retries=rate_limiter_retries))
    app = builder.build()
    if services is not None:
        attach(app, services)
    register(app)
    return app


def webhook_secret(token: str) -> str:
    """The `secret_token` Telegram sends with every webhook post (X-Telegram-Bot-Api-Secret-Token).

    Derived from the bot token, so nothing new to configure, yet without it anyone who
    learns the webhook URL could post forged updates in any user's name. Telegram allows
    1-256 characters of A-Z, a-z, 0-9, _ and -.
    """
    return hashlib.sha256(f"webhook-secret:{token}".encode()).hexdigest()


def run_forever(settings: Settings) -> int:
    """`python -m bot run`: migrate, serve until SIGTERM/SIGINT, close cleanly."""
    services: Services | None = None

    async def post_init(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        nonlocal services
        # Built inside PTB's event loop: aiohttp sessions are bound to the loop they start in.
        services = await create_services(settings)
        attach(application, services)
        if services.live is not None:
            await services.live.start()  # after attach: its messages need the notifier
        await jobs.start(application, services)
        await set_menus(application)
        log.info("bot @%s started", application.bot.username)

    async def post_shutdown(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        if services is not None:
            if isinstance(services.notifier, DeliveryQueue):
                await services.notifier.drain(timeout=10)
                await services.notifier.close()
            await services.close()

    app = build_application(settings, None)
    app.post_init = post_init
    app.post_shutdown = post_shutdown
    try:
        _serve(app, settings)
    except InvalidToken:
        raise ConfigError(
            "Telegram refused TELEGRAM_BOT_TOKEN. Copy it again from @BotFather "
            "(/mybots → your bot → API Token) into .env.") from None
    except BadRequest as e:
        # A subclass of NetworkError in PTB, but Telegram answered: it refused a setting.
        what = ("WEBHOOK_URL (Telegram wants https on port 443, 80, 88 or 8443)"
                if settings.WEBHOOK_URL else "the bot's settings")
        raise ConfigError(f"Telegram refused the start-up request ({e.message}). "
                          f"Check {what}.") from None
    except NetworkError as e:
        # Start-up only: once running, PTB retries network trouble by itself.
        raise ConfigError(
            f"cannot reach Telegram at {settings.TELEGRAM_API_URL} ({e.message}). "
            "Check the internet connection, or TELEGRAM_API_URL.") from None
    return 0


class _BriefStartupErrors(logging.Filter):
    """PTB logs a failed start-up (bad token, no network) with a traceback before it
    raises; run_forever explains those in one line, so the traceback is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, InvalidToken | NetworkError) and "Retry Loop" in record.getMessage():
            record.exc_info = None
            record.exc_text = None
        return True


def _serve(app: Application[Any, Any, Any, Any, Any, Any], settings: Settings) -> None:
    ptb_log = logging.getLogger("telegram.ext")
    if not any(isinstance(f, _BriefStartupErrors) for f in ptb_log.filters):
        ptb_log.addFilter(_BriefStartupErrors())
    if settings.WEBHOOK_URL:
        path = "telegram"
        app.run_webhook(
            listen="0.0.0.0",
            port=settings.WEBHOOK_PORT,
            url_path=path,
            webhook_url=f"{settings.WEBHOOK_URL.rstrip('/')}/{path}",
            secret_token=webhook_secret(settings.token or ""),
            allowed_updates=Update.ALL_TYPES,
        )
    else:
        app.run_polling(allowed_updates=Update.ALL_TYPES)
