"""Building and running the Telegram application (a composition root).

Everything PTB-specific about start-up lives here: the request settings, the rate
limiter, the update processor, the handlers, the command menus, polling or webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
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

from bot import parse as P
from bot.config import Settings
from bot.errors import ConfigError
from bot.inbox import UpdateInbox
from bot.leader import Standby, UpdateLog, bot_id_of, leadership_for
from bot.services import Services, build_services
from bot.webhook import Deliver, WebhookListener
from handlers import jobs, register
from handlers.context import CONTEXT_TYPES, App
from handlers.feeds import member_lookup
from handlers.metrics import wire
from handlers.notifier import TelegramNotifier
from handlers.processor import PerChatUpdateProcessor
from handlers.ratelimit import ChatLimits, ChatRateLimiter
from handlers.request import PollRequest, PooledRequest

log = logging.getLogger("bot.app")

# The BotFather menus, read from the command table (bot/parse/, `menu=` in each entry).
PRIVATE_MENU = P.menu("private")
# Webhook deliveries arrive concurrently (Telegram's max_connections): an update waits at
# most this long for lower update ids still on their way, so each chat keeps its order.
WEBHOOK_REORDER_WINDOW = 2.0  # seconds
# HTTP connections to the Bot API (opened on demand: handlers/request.py), how many of them
# paced sends may never take, and how many only answerCallbackQuery may take: a press's
# answer must find a free one however many chats have a reply waiting.
POOL_SIZE, POOL_UNPACED, POOL_ANSWERS = 64, 16, 4

# The update types the handlers use, asked for by name: `chat_member` is sent only to bots
# that ask (promotions and demotions keep the admin caches honest); polls, reactions,
# inline queries, channel posts and the rest are never sent to a bot that does not use them.
ALLOWED_UPDATES = [
    Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY,
    Update.MY_CHAT_MEMBER, Update.CHAT_MEMBER,
]

GROUP_MENU = P.menu("group")
ADMIN_MENU = P.menu("admins")


async def set_menus(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Command menus per scope: people see what works where they are."""
    def cmds(items: list[tuple[str, str]]) -> list[BotCommand]:
        return [BotCommand(c, d) for c, d in items]

    await app.bot.set_my_commands(cmds(PRIVATE_MENU), scope=BotCommandScopeAllPrivateChats())
    await app.bot.set_my_commands(cmds(GROUP_MENU), scope=BotCommandScopeAllGroupChats())
    await app.bot.set_my_commands(cmds(ADMIN_MENU), scope=BotCommandScopeAllChatAdministrators())


def attach(app: App, services: Services) -> None:
    """Connect the services to Telegram (their notifier and member lookups), and give the
    handlers their services. Sync, and no side effect: `start_side_effects` does those."""
    moved = services.chats.move
    services.relay.connect(TelegramNotifier(app.bot, on_migrated=moved))
    services.feeds.membership.lookup = member_lookup(app.bot, moved)
    app.bot_data.services = services
    wire(app, services.metrics)
    jobs.install(app)


async def start_side_effects(app: App, services: Services) -> None:
    """Everything that acts on the world once attached, in this order: stored alerts and
    liquidation feeds subscribe the market sockets, the cards a crash left in flight are
    settled (before any press is handled) and summaries scheduled, then every account's
    private stream and the dead-man refresh start. A root that must wait for something
    first (leadership, say) waits before calling this."""
    await services.start()
    await jobs.start(app, services.trading, services.notifier, services.schedules)
    await services.live.start()


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
    # PTB takes no get_updates_* setting once `request` is given: its defaults, but 40 s.
    polling = PollRequest(connection_pool_size=1, read_timeout=40)
    # Any: the builder's generic type changes with the rate limiter chosen below.
    builder: Any = (
        ApplicationBuilder()
        .context_types(CONTEXT_TYPES)
        .token(token or settings.token or "")
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .concurrent_updates(PerChatUpdateProcessor(
            concurrent_updates,
            reorder_window=WEBHOOK_REORDER_WINDOW if settings.WEBHOOK_URL else 0.0))
        .request(PooledRequest(POOL_SIZE, reserved=POOL_ANSWERS, connect_timeout=10,
                               read_timeout=15, write_timeout=30, pool_timeout=10))
        .get_updates_request(polling)
    )
    if rate_limiter_retries is not None:  # None: no limiter (benchmarks of raw capacity)
        builder = builder.rate_limiter(ChatRateLimiter(
            ChatLimits().scaled(settings.TELEGRAM_TIME_SCALE), max_retries=rate_limiter_retries,
            max_in_flight=POOL_SIZE - POOL_UNPACED))
    app = builder.build()
    polling.inbox = lambda: app.bot_data.update_inbox
    if services is not None:
        attach(app, services)
    register(app)
    return app


def keep_updates(app: App, services: Services, token: str) -> None:
    """What `python -m bot run` does with Telegram's updates: each is claimed once
    (bot/leader.py `UpdateLog`), and each fetched batch is kept until its updates are
    claimed (bot/inbox.py `UpdateInbox`)."""
    bot_id = bot_id_of(token)
    app.bot_data.update_log = UpdateLog(services.db, bot_id)
    app.bot_data.update_inbox = UpdateInbox(services.db, services.vault, bot_id)


async def replay_inbox(app: App) -> int:
    """Put the updates fetched but never claimed (the last process was killed, or lost its
    database) back on PTB's queue, oldest first; before polling starts, so they come
    before anything newer from their chats. One Telegram also sends again (it was never
    confirmed) is skipped by its claim. The number put back."""
    inbox = app.bot_data.update_inbox
    if inbox is None:
        return 0
    pending = await inbox.pending()
    unreadable: list[int] = []
    for data in pending:
        try:
            update = Update.de_json(data, app.bot)
        except Exception:  # it never will be readable; its text is not logged
            unreadable.append(int(data["update_id"]))
            continue
        await app.update_queue.put(update)
    if unreadable:
        log.warning("dropped %d stored update(s) not readable as an Update", len(unreadable))
        await inbox.forget(unreadable)
    if pending:
        log.info("handling %d update(s) fetched but not handled before the restart",
                 len(pending) - len(unreadable))
    return len(pending) - len(unreadable)


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
    leadership = leadership_for(settings)  # failover: bot/leader.py
    standby: Standby | None = None

    async def post_init(application: App) -> None:
        nonlocal services, standby
        # A standby waits here, before anything with a side effect exists; only its health
        # server answers meanwhile (/readyz 503). Polling starts after post_init returns.
        if not leadership.is_leader():
            standby = Standby(settings)
            await standby.start()
        await leadership.prepare()
        await leadership.wait_until_leader()
        if standby is not None:
            await standby.close()
        # Built inside PTB's event loop: aiohttp sessions are bound to the loop they start in.
        services = await build_services(settings)
        services.readiness.leader = services.metrics.sources.leader = leadership.is_leader
        keep_updates(application, services, settings.token or "")
        attach(application, services)
        await start_side_effects(application, services)
        await set_menus(application)
        # Queued now, handled once the application starts (after post_init): after the
        # cards in flight are settled, before polling fetches anything newer.
        await replay_inbox(application)
        # Polling starts right after post_init returns; in webhook mode updates reach us only
        # once Telegram has our URL, so serve_webhook says "ready" after setWebhook.
        if not settings.WEBHOOK_URL:
            services.readiness.started = True
        log.info("bot @%s started", application.bot.username)

    async def post_shutdown(application: App) -> None:
        if services is not None:
            await services.notifier.drain(timeout=10)
            await services.notifier.close()
            await services.close()
        if standby is not None:
            await standby.close()
        await leadership.release()  # last: every side effect has stopped

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
        asyncio.run(serve_webhook(app, settings))
    else:
        app.run_polling(allowed_updates=ALLOWED_UPDATES)


WEBHOOK_PATH = "telegram"


def deliver_to(app: Application[Any, Any, Any, Any, Any, Any]) -> Deliver:
    """Hand a checked webhook post to the application, as PTB's own webhook would."""
    async def deliver(data: dict[str, Any]) -> None:
        try:
            update = Update.de_json(data, app.bot)
        except Exception:  # Telegram would re-send it forever; its text is not logged
            log.warning("dropped webhook update %s: not readable as an Update",
                        data.get("update_id"))
            return
        inbox = app.bot_data.update_inbox
        if inbox is not None:
            # Kept before Telegram hears 200 (bot/inbox.py); if it cannot be, the listener
            # answers 503 and Telegram posts it again.
            await inbox.store([data])
        await app.update_queue.put(update)
    return deliver


async def serve_webhook(app: Application[Any, Any, Any, Any, Any, Any],
                        settings: Settings, *, host: str = "0.0.0.0",
                        stop: asyncio.Event | None = None) -> None:
    """Webhook mode with our own listener (bot/webhook.py) instead of PTB's tornado one,
    which reads a whole body before checking who sent it. The life cycle is
    run_webhook's: initialize, post_init, listen, setWebhook, serve until SIGTERM/SIGINT
    (or `stop`), then stop, post_stop and shutdown, post_shutdown."""
    secret = webhook_secret(settings.token or "")
    listener = WebhookListener(WEBHOOK_PATH, secret, deliver_to(app))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread
            loop.add_signal_handler(sig, stop.set)
    try:
        await app.initialize()
        if app.post_init is not None:
            # A standby waits in post_init for the lease: SIGTERM must still end it.
            init = asyncio.ensure_future(app.post_init(app))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({init, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not init.done():
                init.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await init
                return
            init.result()
        try:
            await listener.start(host, settings.listen_port)
        except OSError as e:
            which = "PORT" if settings.PORT is not None else "WEBHOOK_PORT"
            raise ConfigError(f"cannot listen for Telegram on {which} "
                              f"{settings.listen_port} ({e.strerror or e}). Is another "
                              "program using it?") from None
        await app.bot.set_webhook(
            url=f"{(settings.WEBHOOK_URL or '').rstrip('/')}/{WEBHOOK_PATH}",
            secret_token=secret, allowed_updates=ALLOWED_UPDATES)
        await app.start()
        data = app.bot_data
        services = getattr(data, "services", None)
        if services is not None:
            # /readyz 200 from here: a load balancer (or a failover drill) that sees it may
            # rely on Telegram posting here, not to the old leader's URL.
            services.readiness.started = True
        log.info("webhook listening on port %s", listener.port)
        await stop.wait()
    finally:
        await listener.stop()  # no new updates; those queued are still processed below
        if app.running:
            await app.stop()
            if app.post_stop is not None:
                await app.post_stop(app)
        await app.shutdown()
        if app.post_shutdown is not None:
            await app.post_shutdown(app)
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
