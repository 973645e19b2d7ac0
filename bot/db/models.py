"""SQLModel tables. Change them only together with an Alembic migration (rule 8)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, LargeBinary, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from bot.db.types import DecimalText, TelegramId, UTCDateTime, utcnow

# A fixed naming convention keeps constraint names stable, which SQLite's batch
# migrations need to find and alter them later.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NETWORKS = ("testnet", "mainnet", "paper")


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def _tg_id(nullable: bool = False, **kw: Any) -> Any:
    """A Telegram user or chat id (64-bit)."""
    return Field(default=None if nullable else ..., sa_type=TelegramId, nullable=nullable, **kw)


def _user_fk(nullable: bool = False) -> Any:
    return Field(
        default=None if nullable else ...,
        sa_type=TelegramId,
        sa_column_args=[ForeignKey("users.id", ondelete="CASCADE")],
        nullable=nullable,
        index=True,
    )


class User(SQLModel, table=True):
    __tablename__ = "users"

    # The Telegram user id: stable, unique, and what every button press is checked against.
    id: int = Field(primary_key=True, sa_type=TelegramId,
                    sa_column_kwargs={"autoincrement": False})
    username: str | None = Field(default=None, max_length=64)
    first_name: str | None = Field(default=None, max_length=128)
    tz: str = Field(default="UTC", max_length=64)
    default_symbol: str = Field(default="XBTUSD", max_length=32)
    confirm_timeout: int = Field(default=60)
    active_network: str | None = Field(default=None, max_length=16)
    notify_prefs: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    quiet_start: str | None = Field(default=None, max_length=5)
    quiet_end: str | None = Field(default=None, max_length=5)
    liq_alert_pct: Decimal | None = Field(default=Decimal("10"), sa_type=DecimalText)
    deadman_seconds: int | None = Field(default=None)
    blocked: bool = Field(default=False)
    created_at: datetime = _created()
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApiCredential(SQLModel, table=True):
    __tablename__ = "api_credentials"
    __table_args__ = (UniqueConstraint("user_id", "network"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _user_fk()
    network: str = Field(max_length=16)
    key_id: str = Field(max_length=64)
    # AES-GCM ciphertext from bot.vault; the plaintext secret is never stored.
    secret_enc: bytes = Field(sa_type=LargeBinary)
    key_version: int = Field(default=1)
    permissions: list[str] = Field(default_factory=list, sa_type=JSON)
    # CIDRs the key is bound to as GET /apiKey reported them ([] = usable from anywhere);
    # None for keys verified before the binding was read.
    ip_binding: list[str] | None = Field(default=None, sa_type=JSON)
    verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _created()


class OrderCard(SQLModel, table=True):
    """One confirmation card: what the user asked for and what became of it."""

    # The table keeps its first name (no migration); "intent" in the code means only what
    # the parser returns. The `intent` column holds the card's Plan (bot/trading/cards.py).
    __tablename__ = "order_intents"
    __table_args__ = (Index("ix_order_intents_state_expires", "state", "expires_at"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _user_fk()
    chat_id: int = _tg_id()
    message_id: int | None = None
    network: str = Field(max_length=16)
    kind: str = Field(default="order", max_length=16)
    intent: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # pending -> confirmed -> placed | failed, or for a large mainnet order pending -> armed
    # (first Confirm) -> confirmed (Place it); pending | armed -> expired | cancelled | failed
    # (key changed). A preview the checks blocked is stored cancelled. A card left
    # `confirmed` (BitMEX never answered) waits for the lookup by clOrdID (settle_in_flight).
    state: str = Field(default="pending", max_length=16)
    # Random (bot.exchange.new_cl_ord_id) and stored here before anything is sent, so an answer
    # that never came is settled by looking the order up by it, never by sending it again.
    cl_ord_id: str = Field(max_length=36, unique=True)
    order_id: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None, max_length=500)
    created_at: datetime = _created()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = _created()
    # Set when a press is taken, cleared once the message shows the outcome: a card whose
    # edit failed (or a crash came between) is repaired by the sweep, never left showing
    # Confirm for an order that was placed.
    card_stale: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class LiveCursor(SQLModel, table=True):
    """The newest fill already told to the user, per account (bot/live.py).

    Lets a restarted bot tell the fills made while it was down, once, and none twice.
    """

    __tablename__ = "live_cursors"
    __table_args__ = (UniqueConstraint("user_id", "network"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _user_fk()
    network: str = Field(max_length=16)
    last_exec_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Every execID reported at last_exec_at: several fills can share one millisecond.
    last_exec_ids: list[str] = Field(default_factory=list, sa_type=JSON)
    # The fill whose message was on the wire, its answer not yet in (bot/live/fills.py).
    sending_exec_id: str | None = Field(default=None, max_length=64)
    updated_at: datetime = _created()


class Alert(SQLModel, table=True):
    __tablename__ = "alerts"
    # By chat: /alerts and the per-chat cap look a chat's alerts up among all of them.
    __table_args__ = (Index("ix_alerts_state_symbol", "state", "symbol"),
                      Index("ix_alerts_chat_state", "chat_id", "state"))

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _user_fk()
    chat_id: int = _tg_id()
    # The forum topic it was set in (message_thread_id); None = General.
    thread_id: int | None = None
    # price | move | funding
    kind: str = Field(max_length=16)
    symbol: str = Field(max_length=32)
    network: str = Field(default="mainnet", max_length=16)
    direction: str | None = Field(default=None, max_length=8)
    threshold: Decimal = Field(sa_type=DecimalText)
    window_seconds: int | None = None
    note: str | None = Field(default=None, max_length=200)
    # active | fired (its message not yet asked for) | sending (the request is out, the
    # answer not in) | sent | deleted; see bot/alerts/service.py
    state: str = Field(default="active", max_length=16)
    created_at: datetime = _created()
    fired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sending_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Schedule(SQLModel, table=True):
    __tablename__ = "schedules"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _user_fk()
    chat_id: int = _tg_id()
    # daily | weekly
    kind: str = Field(max_length=16)
    weekday: int | None = None
    time_of_day: str = Field(max_length=5)
    enabled: bool = Field(default=True)
    last_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _created()


class LiqFeedSubscription(SQLModel, table=True):
    __tablename__ = "liqfeed_subscriptions"
    __table_args__ = (UniqueConstraint("chat_id", "symbol"),)

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = _tg_id(index=True)
    # The forum topic it was set in (message_thread_id); None = General.
    thread_id: int | None = None
    # None = every symbol
    symbol: str | None = Field(default=None, max_length=32)
    min_usd: Decimal = Field(sa_type=DecimalText)
    created_by: int | None = _tg_id(nullable=True)
    created_at: datetime = _created()


class AuditLog(SQLModel, table=True):
    """Who did what. `detail` never holds a secret: callers pass only safe fields."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _created()
    user_id: int | None = _tg_id(nullable=True, index=True)
    chat_id: int | None = _tg_id(nullable=True)
    action: str = Field(max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


# --- signal feeds (bot/feeds.py) ---------------------------------------------------------


def _fk(target: str, nullable: bool = False) -> Any:
    return Field(
        default=None if nullable else ...,
        sa_column_args=[ForeignKey(target, ondelete="CASCADE")],
        nullable=nullable,
        index=True,
    )


class Feed(SQLModel, table=True):
    """A group that posts signals; `name` is what members type in /follow."""

    __tablename__ = "feeds"

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = _tg_id(unique=True)
    # Stored lower-case: names are matched case-insensitively.
    name: str = Field(max_length=32, unique=True)
    title: str | None = Field(default=None, max_length=128)
    active: bool = Field(default=True)
    created_by: int | None = _tg_id(nullable=True)
    created_at: datetime = _created()


class Signal(SQLModel, table=True):
    """A signal as first posted; later edits and updates live in signal_updates."""

    __tablename__ = "signals"

    id: int | None = Field(default=None, primary_key=True)
    feed_id: int = _fk("feeds.id")
    chat_id: int = _tg_id()
    # The forum topic it was set in (message_thread_id); None = General.
    thread_id: int | None = None
    message_id: int | None = None  # the admin's message in the group
    card_message_id: int | None = None  # the bot's signal card
    posted_by: int = _tg_id()
    symbol: str = Field(max_length=32)
    side: str = Field(max_length=8)  # long | short
    entry_low: Decimal = Field(sa_type=DecimalText)
    entry_high: Decimal = Field(sa_type=DecimalText)
    sl: Decimal = Field(sa_type=DecimalText)
    current_sl: Decimal = Field(sa_type=DecimalText)
    tps: list[str] = Field(default_factory=list, sa_type=JSON)
    leverage: Decimal | None = Field(default=None, sa_type=DecimalText)
    risk_percent: Decimal | None = Field(default=None, sa_type=DecimalText)
    source: str = Field(default="command", max_length=16)  # command | text
    text: str = Field(default="", max_length=4096)
    # open | closed
    state: str = Field(default="open", max_length=16)
    created_at: datetime = _created()
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SignalUpdate(SQLModel, table=True):
    __tablename__ = "signal_updates"

    id: int | None = Field(default=None, primary_key=True)
    signal_id: int = _fk("signals.id")
    # close | move_sl | edited | deleted
    kind: str = Field(max_length=16)
    price: Decimal | None = Field(default=None, sa_type=DecimalText)
    text: str | None = Field(default=None, max_length=4096)
    by_user: int | None = _tg_id(nullable=True)
    created_at: datetime = _created()


class Follow(SQLModel, table=True):
    __tablename__ = "follows"
    __table_args__ = (UniqueConstraint("user_id", "feed_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _user_fk()
    feed_id: int = _fk("feeds.id")
    # risk (value % of available margin lost at the stop) | usd | contracts
    mode: str = Field(max_length=16)
    value: Decimal = Field(sa_type=DecimalText)
    max_usd: Decimal | None = Field(default=None, sa_type=DecimalText)
    # Apply risk-reducing updates (stop tightened, close) without a press.
    auto: bool = Field(default=False)
    active: bool = Field(default=True)
    created_at: datetime = _created()


class FollowerOrder(SQLModel, table=True):
    """One member's entry from one signal; its clOrdID prefixes the exits' ids too."""

    __tablename__ = "follower_orders"
    __table_args__ = (UniqueConstraint("signal_id", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    signal_id: int = _fk("signals.id")
    user_id: int = _user_fk()
    intent_id: int | None = Field(default=None, index=True)
    cl_ord_id: str = Field(max_length=36, index=True)
    network: str = Field(max_length=16)
    # clOrdIDs of update cards (closes) confirmed for this entry, for /feedstats.
    related: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = _created()


__all__ = [
    "NETWORKS",
    "Alert",
    "ApiCredential",
    "AuditLog",
    "Feed",
    "Follow",
    "FollowerOrder",
    "LiqFeedSubscription",
    "OrderCard",
    "Schedule",
    "Signal",
    "SignalUpdate",
    "User",
]


class LeaderLease(SQLModel, table=True):
    """Who leads among instances sharing one PostgreSQL database (bot/leader.py).

    `expires_at` is set from the server's clock, so instances on machines whose clocks
    differ still agree on when a lease has run out.
    """

    __tablename__ = "leader_lease"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=128)
    epoch: int = Field(sa_type=BigInteger)  # +1 on every change of holder
    expires_at: datetime = Field(sa_type=UTCDateTime)
    renewed_at: datetime = Field(sa_type=UTCDateTime)


class HandledUpdate(SQLModel, table=True):
    """A Telegram update already taken by an instance (bot/leader.py `UpdateLog`).

    With polling, an update is confirmed only by the next getUpdates; a leader killed
    before that leaves updates the next one receives again, and this row skips them.
    """

    __tablename__ = "handled_updates"

    bot_id: int = Field(primary_key=True, sa_type=TelegramId)
    update_id: int = Field(primary_key=True, sa_type=TelegramId)
    handled_at: datetime = Field(sa_type=UTCDateTime, index=True)


class InboxUpdate(SQLModel, table=True):
    """A Telegram update fetched but not yet claimed (bot/inbox.py `UpdateInbox`).

    With polling, the next getUpdates confirms a batch while some of its updates still wait
    behind their chat's earlier one; this row is what remembers them across a kill. The
    update's JSON is sealed by the vault: a /connect message carries an API secret."""

    __tablename__ = "update_inbox"

    bot_id: int = Field(primary_key=True, sa_type=TelegramId)
    update_id: int = Field(primary_key=True, sa_type=TelegramId)
    sealed: bytes = Field(sa_type=LargeBinary)
    received_at: datetime = Field(sa_type=UTCDateTime, index=True)


class MonitorMessage(SQLModel, table=True):
    """One /monitor message the bot keeps editing, per open position (issue #14 item 7).

    Stored so a restarted bot goes on editing the same messages instead of posting new
    ones (bot/live/monitor.py); `text` is what the message shows now, so an update that
    would show the same is never sent."""

    __tablename__ = "monitor_messages"
    __table_args__ = (UniqueConstraint("user_id", "network", "symbol"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _user_fk()
    chat_id: int = _tg_id()
    network: str = Field(max_length=16)
    symbol: str = Field(max_length=32)
    message_id: int = Field(sa_type=BigInteger)
    text: str = Field(default="")
    # Pinned by /monitor pin: /monitor off unpins it, also after a restart.
    pinned: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    updated_at: datetime = _created()


class PresetMenu(SQLModel, table=True):
    """A size-preset menu (`/buy btc @ 60k` without a size, issue #14 item 5): the order
    as typed, so a preset press opens exactly that with the chosen size. Button data holds
    64 bytes, too few for a command; the buttons carry this row's id and the size token.
    Expires like a card; the daily purge deletes expired ones."""

    __tablename__ = "preset_menus"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _user_fk()
    chat_id: int = _tg_id()
    # bot/parse/trading.py order_to_json: the typed order, its size NO_SIZE
    order: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = _created()
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
