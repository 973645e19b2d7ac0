"""The service container: every domain service, built once by `build_services`.

Only the composition roots import this module (ARCHITECTURE.md): they build the
container and hand it to handlers (`ctx.services`). Every service in it receives what it
uses through its constructor, never the container. Nothing here is filled in later: the
Telegram side, which exists only once handlers/app.py attaches it, is reached through
`relay` (bot/relay.py), held by the delivery queue from the start.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.accounts import Accounts
from bot.admin import Operators
from bot.alerts.service import AlertService
from bot.chats import Chats
from bot.config import Settings
from bot.db.engine import Database
from bot.db.models import User
from bot.errors import ExchangeError, UserError
from bot.exchange.client import BitmexClient, InstrumentCatalog
from bot.exchange.types import Exchange, Instrument
from bot.feeds import Feeds
from bot.liqfeed import LiqFeed
from bot.live import LiveUpdates
from bot.market import MarketHub, PublicMarket
from bot.metrics import Metrics, MetricsServer, Readiness
from bot.notify import Audience, DeliveryLimits, DeliveryQueue
from bot.paper_accounts import PaperAccounts, paper_path
from bot.parse.values import SymbolBook
from bot.prefs import Preferences, audience_of
from bot.ratelimit import OncePer, PublicQuota, UserRateLimiter
from bot.relay import Relay
from bot.reports import Reports
from bot.reports.candles import CandleCache
from bot.scheduler import Schedules
from bot.trading import Trading
from bot.users import Users
from bot.vault import Vault

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    vault: Vault
    # One session per process (design rule 6).
    http: aiohttp.ClientSession
    users: Users
    prefs: Preferences
    accounts: Accounts
    trading: Trading
    # What every service sends through: paced, retried, quiet hours applied; it forwards
    # to `relay`, which handlers/app.py connects to Telegram once.
    notifier: DeliveryQueue
    relay: Relay
    # Public market data: keyless REST clients, and the shared sockets with their listeners.
    public: PublicMarket
    market_hub: MarketHub
    paper: PaperAccounts
    alerts: AlertService
    liqfeed: LiqFeed
    feeds: Feeds
    # Private streams -> messages, /liqalert, /deadman.
    live: LiveUpdates
    reports: Reports
    schedules: Schedules
    chats: Chats
    operators: Operators
    ratelimit: UserRateLimiter
    # Strangers refused by ALLOWED_USER_IDS are told so at most once an hour each.
    refusals: OncePer
    # Public market data is one budget for all users: shared candles, rationed misses.
    candles: CandleCache
    public_quota: PublicQuota
    # Health and metrics (bot/metrics.py). The server exists only when METRICS_PORT is set:
    # None is configuration, not a field filled in later.
    metrics: Metrics
    readiness: Readiness
    metrics_server: MetricsServer | None

    # --- what handlers ask of the users (bot/users.py) ---------------------------------

    def is_admin(self, user_id: int) -> bool:
        return self.users.is_admin(user_id)

    def is_allowed(self, user_id: int) -> bool:
        return self.users.is_allowed(user_id)

    async def touch_user(
        self, user_id: int, username: str | None, first_name: str | None
    ) -> None:
        await self.users.touch_user(user_id, username, first_name)

    async def mark_blocked(self, chat_id: int) -> None:
        await self.users.mark_blocked(chat_id)

    async def get_user(self, user_id: int) -> User | None:
        return await self.users.get_user(user_id)

    def market(self, network: str = "mainnet") -> Exchange:
        """A keyless client for public data; paper accounts read mainnet's market."""
        return self.public.client(network)

    async def symbol_book(self, user_id: int | None = None) -> SymbolBook:
        """Active symbols (cached by the client) with the user's BTC contract for `btc`."""
        # The cached view: this runs for nearly every text and press.
        user = await self.users.view(user_id) if user_id is not None else None
        network = (user.active_network if user else None) or "mainnet"
        try:
            instruments = await self.market(network).instruments()
        except ExchangeError as e:
            raise UserError(f"BitMEX is not answering right now ({e.message}). "
                            "Please try again in a moment.") from e
        refused = {i.symbol: r for i in instruments if (r := i.refusal) is not None}
        symbols = [i.symbol for i in instruments if i.symbol not in refused] or ["XBTUSD"]
        chosen = str((user.notify_prefs or {}).get("btc") or "") if user else ""
        default = user.default_symbol if user and user.default_symbol in symbols else None
        if chosen.upper() in symbols:  # /settings btc XBTUSDT
            default = chosen.upper()
        btc = default if default and default.startswith("XBT") else "XBTUSD"
        if btc not in symbols:
            btc = next((s for s in symbols if s.startswith("XBT")), symbols[0])
        return SymbolBook(symbols, btc, refused=refused)

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """The services' side effects, once the Telegram side is attached: stored alerts and
        liquidation feeds subscribe the shared sockets. Private streams start separately
        (`live.start`), after the cards a crash left in flight are settled."""
        await self.alerts.start()
        await self.liqfeed.start()

    async def close(self) -> None:
        self.readiness.stopping = True
        try:
            await self.paper.save()
        except Exception:  # never block shutdown on it; the periodic save is recent enough
            log.exception("paper accounts could not be saved")
        await self.live.close()
        await self.liqfeed.close()
        await self.alerts.close()
        await self.market_hub.close()
        if not self.http.closed:
            await self.http.close()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        await self.db.dispose()


async def build_services(
    settings: Settings,
    *,
    vault: Vault | None = None,
    http: aiohttp.ClientSession | None = None,
    client_options: dict[str, Any] | None = None,
) -> Services:
    """Migrate the database and build every service (no Telegram here, no side effect
    beyond the metrics server: `Services.start` and `LiveUpdates.start` do those)."""
    metrics, readiness = Metrics(), Readiness()
    server: MetricsServer | None = None
    if settings.METRICS_PORT is not None:
        # Up before the migrations, so an orchestrator sees "alive, not ready" while we boot.
        server = MetricsServer(metrics, readiness, settings.METRICS_HOST, settings.METRICS_PORT)
        await server.start()
    try:
        return await _build(settings, vault, http, client_options, metrics, readiness, server)
    except BaseException:
        if server is not None:
            await server.close()
        raise


async def _build(
    settings: Settings, vault: Vault | None, http: aiohttp.ClientSession | None,
    client_options: dict[str, Any] | None, metrics: Metrics, readiness: Readiness,
    server: MetricsServer | None,
) -> Services:
    db = Database(settings.DATABASE_URL, pool_size=settings.DB_POOL_SIZE,
                  max_overflow=settings.DB_MAX_OVERFLOW)
    await db.migrate()
    if vault is None:
        master = settings.master_key
        if master is None:
            raise ValueError("MASTER_KEY is required")
        vault = Vault(master, settings.old_master_keys)
    if http is None:
        # One session per process (design rule 6); TLS verification stays on.
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    session = http
    options = dict(client_options or {})
    options.setdefault("on_error", metrics.exchange_error)

    # One instrument list per network, not one per connected account (InstrumentCatalog).
    catalogs: dict[str, InstrumentCatalog] = {}

    def make_client(network: str, key: str | None, secret: str | None) -> Exchange:
        catalog = catalogs.setdefault(
            network, InstrumentCatalog(options.get("instrument_ttl", 60.0)))
        return BitmexClient(settings.rest_url(network), key, secret, session=session,
                            catalog=catalog, **options)

    users = Users(db, admin_ids=settings.ADMIN_IDS, allowed_ids=settings.ALLOWED_USER_IDS)
    prefs = Preferences(db)

    async def audience(chat_id: int) -> Audience | None:
        # Whatever a service sends, a user removed from ALLOWED_USER_IDS gets none of it.
        if chat_id > 0 and not users.is_allowed(chat_id):
            return Audience(blocked=True)
        if chat_id <= 0:
            return None  # groups and channels: no owner's preferences
        # Asked for every message sent: the cached view, not a session per message.
        view = await users.view(chat_id)
        return None if view is None else audience_of(view)

    relay = Relay()
    notifier = DeliveryQueue(
        relay, audience=audience, on_blocked=users.mark_blocked,
        limits=DeliveryLimits().scaled(settings.TELEGRAM_TIME_SCALE))

    public = PublicMarket(make_client)
    hub = MarketHub(settings.ws_url, http)
    paper = PaperAccounts(paper_path(settings), hub)
    accounts = Accounts(db, vault, make_client, paper.exchange)
    trading = Trading(db, accounts, mainnet_confirm_usd=settings.MAINNET_CONFIRM_USD)

    async def instrument(symbol: str) -> Instrument | None:
        # The socket's row when subscribed, else REST's cached one (contract specs).
        return hub.instrument("mainnet", symbol) or await public.client().instrument(symbol)

    async def quote(symbol: str) -> Instrument | None:
        # Validating an alert needs today's price, not the instrument cache's.
        live = hub.instrument("mainnet", symbol)
        if live is not None:
            return live
        inst = await public.client().instrument(symbol)
        t = await public.client().ticker(symbol)
        return dataclasses.replace(inst, last_price=t.last, mark_price=t.mark,
                                   funding_rate=t.funding_rate)

    alerts = AlertService(db, notifier, quote=quote,
                          watch=lambda symbol: hub.watch("mainnet", symbol),
                          allowed=users.is_allowed)
    liqfeed = LiqFeed(db, notifier, instrument=instrument,
                      watch=lambda: hub.watch_liquidations("mainnet"))
    hub.on_tick(alerts.on_instrument)
    hub.on_liquidation(liqfeed.on_liquidation)
    feeds = Feeds(db, accounts, trading, notifier, allowed=users.is_allowed)
    live = LiveUpdates(db, accounts, trading, users, notifier, market=public, hub=hub,
                       http=http, ws_url=settings.ws_url)
    candles, public_quota = CandleCache(), PublicQuota()
    reports = Reports(accounts, users, public, hub, candles, public_quota, notifier)
    schedules = Schedules(db, users, reports, notifier)
    # Every service that keeps chat ids follows a group that becomes a supergroup.
    chats = Chats(db, notifier, users, movers=[alerts, liqfeed, feeds])

    readiness.streams = hub.stream_states
    metrics.watch(
        readiness, queue_depth=notifier.pending, accounts=live.stream_states,
        streams=hub.stream_states, alerts_registered=lambda: len(alerts.index),
        alerts_fired=lambda: alerts.fired, orders=lambda: list(trading.outcomes.items()))
    return Services(
        settings=settings, db=db, vault=vault, http=http, users=users, prefs=prefs,
        accounts=accounts, trading=trading, notifier=notifier, relay=relay, public=public,
        market_hub=hub, paper=paper, alerts=alerts, liqfeed=liqfeed, feeds=feeds, live=live,
        reports=reports, schedules=schedules, chats=chats,
        operators=Operators(db, notifier), ratelimit=UserRateLimiter(),
        refusals=OncePer(3600.0), candles=candles, public_quota=public_quota,
        metrics=metrics, readiness=readiness, metrics_server=server)
