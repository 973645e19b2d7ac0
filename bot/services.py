"""The service container: every domain service, built once by a composition root.

Handlers receive this object and make one call on it per update; tests build it
against the simulator and a temporary database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from sqlalchemy.exc import IntegrityError

from bot.config import Settings
from bot.db.engine import Database
from bot.db.models import User
from bot.matching.snapshot import load_engine
from bot.metrics import Metrics, MetricsServer, Readiness, market_streams
from bot.notify import Notifier
from bot.parse.values import SymbolBook
from bot.ratelimit import OncePer, PublicQuota, UserRateLimiter
from bot.reports.candles import CandleCache
from bot.vault import Vault

if TYPE_CHECKING:
    from bot.accounts import Accounts
    from bot.alerts.service import AlertService
    from bot.exchange.types import Exchange, Instrument
    from bot.liqfeed import LiqFeed
    from bot.live import LiveUpdates
    from bot.market import MarketHub
    from bot.trading import Trading

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    vault: Vault
    accounts: Accounts
    trading: Trading
    http: aiohttp.ClientSession | None = None
    # Set by the composition root once the Telegram bot exists (handlers/app.py).
    notifier: Notifier | None = None
    ratelimit: UserRateLimiter = field(default_factory=UserRateLimiter)
    # Strangers refused by ALLOWED_USER_IDS are told so at most once an hour each.
    refusals: OncePer = field(default_factory=lambda: OncePer(3600.0))
    # Public market data is one budget for all users: shared candles, rationed misses.
    candles: CandleCache = field(default_factory=CandleCache)
    public_quota: PublicQuota = field(default_factory=PublicQuota)
    extras: dict[str, Any] = field(default_factory=dict)
    # Shared public sockets and their listeners (bot/market.py, bot/alerts, bot/liqfeed.py).
    market_hub: MarketHub | None = None
    alerts: AlertService | None = None
    liqfeed: LiqFeed | None = None
    # Private streams -> messages; started by the composition root once a notifier exists.
    live: LiveUpdates | None = None
    # Health and metrics (bot/metrics.py); the server only when METRICS_PORT is set.
    metrics: Metrics = field(default_factory=Metrics)
    readiness: Readiness = field(default_factory=Readiness)
    metrics_server: MetricsServer | None = None

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.settings.ADMIN_IDS

    def is_allowed(self, user_id: int) -> bool:
        allowed = self.settings.ALLOWED_USER_IDS
        return not allowed or user_id in allowed or self.is_admin(user_id)

    async def touch_user(
        self, user_id: int, username: str | None, first_name: str | None
    ) -> User:
        """The user's row, created on first contact; marks them reachable again."""
        for attempt in (1, 2):
            async with self.db.session() as s:
                user = await s.get(User, user_id)
                if user is None:
                    user = User(id=user_id, username=username, first_name=first_name)
                else:
                    user.username, user.first_name = username, first_name
                    user.blocked = False
                user.last_seen_at = datetime.now(UTC)
                s.add(user)
                try:
                    await s.commit()
                except IntegrityError:
                    # On PostgreSQL two first updates of one user (private chat and a group at
                    # once) can both find no row; the loser updates the winner's row.
                    if attempt == 2:
                        raise
                    continue
                return user
        raise AssertionError("unreachable")

    async def mark_blocked(self, chat_id: int) -> None:
        """A private chat answered 403: stop writing to that user until they come back."""
        if chat_id <= 0:
            return
        async with self.db.session() as s:
            user = await s.get(User, chat_id)
            if user is not None and not user.blocked:
                user.blocked = True
                s.add(user)
                await s.commit()

    async def get_user(self, user_id: int) -> User | None:
        async with self.db.session() as s:
            return await s.get(User, user_id)

    def market(self, network: str = "mainnet") -> Exchange:
        """A keyless client for public data; paper accounts read mainnet's market."""
        net = "mainnet" if network == "paper" else network
        client = self.extras.get(f"market:{net}")
        if client is None:
            client = self.accounts.make_client(net, None, None)
            self.extras[f"market:{net}"] = client
        return client

    async def symbol_book(self, user_id: int | None = None) -> SymbolBook:
        """Active symbols (cached by the client) with the user's BTC contract for `btc`."""
        from bot.errors import ExchangeError, UserError

        user = await self.get_user(user_id) if user_id is not None else None
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

    async def close(self) -> None:
        self.readiness.stopping = True
        try:
            await save_paper_engine(self)
        except Exception:  # never block shutdown on it; the periodic save is recent enough
            log.exception("paper accounts could not be saved")
        if self.live is not None:
            await self.live.close()
        if self.liqfeed is not None:
            await self.liqfeed.close()
        if self.alerts is not None:
            await self.alerts.close()
        if self.market_hub is not None:
            await self.market_hub.close()
        if self.http is not None and not self.http.closed:
            await self.http.close()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        await self.db.dispose()


async def create_services(
    settings: Settings,
    *,
    vault: Vault | None = None,
    http: aiohttp.ClientSession | None = None,
    client_options: dict[str, Any] | None = None,
) -> Services:
    """Migrate the database and wire every service (no Telegram here)."""
    metrics, readiness = Metrics(), Readiness()
    server: MetricsServer | None = None
    if settings.METRICS_PORT is not None:
        # Up before the migrations, so an orchestrator sees "alive, not ready" while we boot.
        server = MetricsServer(metrics, readiness, settings.METRICS_HOST, settings.METRICS_PORT)
        await server.start()
    try:
        return await _create_services(settings, vault, http, client_options, metrics,
                                      readiness, server)
    except BaseException:
        if server is not None:
            await server.close()
        raise


async def _create_services(
    settings: Settings, vault: Vault | None, http: aiohttp.ClientSession | None,
    client_options: dict[str, Any] | None, metrics: Metrics, readiness: Readiness,
    server: MetricsServer | None,
) -> Services:
    from bot.accounts import Accounts
    from bot.exchange.client import BitmexClient
    from bot.trading import Trading

    db = Database(settings.DATABASE_URL)
    await db.migrate()
    if vault is None:
        master = settings.master_key
        if master is None:
            raise ValueError("MASTER_KEY is required")
        vault = Vault(master, settings.old_master_keys)
    if http is None:
        # One session per process (design rule 6); TLS verification stays on.
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    options = dict(client_options or {})
    options.setdefault("on_error", metrics.exchange_error)
    session = http

    def make_client(network: str, key: str | None, secret: str | None) -> Exchange:
        return BitmexClient(settings.rest_url(network), key, secret, session=session, **options)

    paper_engine: Any = None

    def make_paper(user_id: int) -> Exchange:
        nonlocal paper_engine
        from bot.exchange.paper import PaperExchange

        if paper_engine is None:
            paper_engine = load_paper_engine(settings)
        ex = PaperExchange(paper_engine, name=f"paper-{user_id}")
        if "paper-engine" not in services.extras:
            paper_engine = ex.engine  # every paper account shares one engine (one price feed)
            services.extras["paper-engine"] = paper_engine
            _price_paper_from_mainnet(services, paper_engine)
        return ex

    accounts = Accounts(db, vault, make_client, make_paper)
    trading = Trading(db, accounts, mainnet_confirm_usd=settings.MAINNET_CONFIRM_USD)
    services = Services(settings=settings, db=db, vault=vault, accounts=accounts,
                        trading=trading, http=http, metrics=metrics, readiness=readiness,
                        metrics_server=server)
    readiness.streams = lambda: market_streams(services)
    metrics.watch(services, readiness)
    from bot.live import LiveUpdates

    services.live = LiveUpdates(services)
    await start_market(services)
    return services


def paper_path(settings: Settings) -> Path | None:
    """Where paper accounts are kept between runs: PAPER_STATE_FILE, else beside the SQLite
    file, else (a server database has no folder of ours) ./data/bot-paper.pickle."""
    if settings.PAPER_STATE_FILE:
        return Path(settings.PAPER_STATE_FILE)
    db = settings.database_path
    if db is not None:
        return db.with_name(db.stem + "-paper.pickle")
    if settings.DATABASE_URL.startswith("postgresql"):
        return Path("data") / "bot-paper.pickle"
    return None


def load_paper_engine(settings: Settings) -> Any:
    """The paper engine saved by the last run, or None (a fresh one is made)."""
    path = paper_path(settings)
    if path is None or not path.exists():
        return None
    try:
        # Unpickling runs code, so only a file this process's user wrote and nobody else can
        # change is loaded (written 0600 below); anything else is ignored, not trusted.
        st = path.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            log.warning("paper accounts not restored: %s is writable by others or not ours "
                        "(chmod 600 it, or delete it); starting fresh", path)
            return None
        with path.open("rb") as f:
            return load_engine(f)  # also a snapshot older versions wrote
    except Exception:  # a corrupt or incompatible snapshot must not stop the bot
        log.exception("paper accounts could not be restored from %s; starting fresh", path)
        return None


async def save_paper_engine(services: Services) -> bool:
    """Write the paper accounts to disk (atomically); False when there are none."""
    engine = services.extras.get("paper-engine")
    path = paper_path(services.settings)
    if engine is None or path is None:
        return False
    # Snapshot on the event loop (nothing mutates it meanwhile), write in a thread.
    data = pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL)

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)  # ./data on a PostgreSQL install
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # an older tmp file may have been created wider
            f.write(data)
        os.replace(tmp, path)

    await asyncio.to_thread(write)
    return True


def _price_paper_from_mainnet(services: Services, engine: Any) -> None:
    """Paper accounts trade at mainnet's prices: the shared socket's ticks move the engine."""
    hub = services.market_hub
    if hub is None:
        return
    symbols = [s for s in engine.instruments]

    async def tick(network: str, inst: Instrument) -> None:
        price = inst.mark_price or inst.last_price
        if network == "mainnet" and inst.symbol in engine.instruments and price:
            engine.set_mark(inst.symbol, price)

    hub.on_tick(tick)
    for symbol in symbols:  # start from today's price, not the engine's default
        live = hub.instrument("mainnet", symbol)
        if live is not None and (live.mark_price or live.last_price):
            engine.set_mark(symbol, live.mark_price or live.last_price)
    task = asyncio.get_running_loop().create_task(hub.watch("mainnet", *symbols))
    services.extras["paper-watch"] = task  # keep a reference so it is not collected


async def start_market(services: Services) -> None:
    """The shared market sockets with alerts and the liquidation feed listening."""
    from bot.alerts.service import AlertService
    from bot.liqfeed import LiqFeed
    from bot.market import MarketHub

    hub = MarketHub(services.settings.ws_url, lambda: services.http)

    async def instrument(symbol: str) -> Instrument | None:
        # The socket's row when subscribed, else REST's cached one (contract specs).
        return hub.instrument("mainnet", symbol) or await services.market().instrument(symbol)

    async def quote(symbol: str) -> Instrument | None:
        # Validating an alert needs today's price, not the instrument cache's.
        live = hub.instrument("mainnet", symbol)
        if live is not None:
            return live
        inst = await services.market().instrument(symbol)
        t = await services.market().ticker(symbol)
        return dataclasses.replace(inst, last_price=t.last, mark_price=t.mark,
                                   funding_rate=t.funding_rate)

    services.market_hub = hub
    services.alerts = AlertService(
        services.db, lambda: services.notifier, quote=quote,
        watch=lambda symbol: hub.watch("mainnet", symbol), allowed=services.is_allowed)
    services.liqfeed = LiqFeed(
        services.db, lambda: services.notifier, instrument=instrument,
        watch=lambda: hub.watch_liquidations("mainnet"))
    hub.on_tick(services.alerts.on_instrument)
    hub.on_liquidation(services.liqfeed.on_liquidation)
    await services.alerts.start()
    await services.liqfeed.start()
