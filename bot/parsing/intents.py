"""Typed intents: what a chat message asks for, before any I/O.

One frozen dataclass per command form. `symbol=None` always means "the user's default
symbol" (a setting the parser does not know). Percentages are kept as the number the
user typed (`10%` -> Decimal("10")), never as a fraction, except where a property says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, tzinfo
from decimal import Decimal
from typing import ClassVar, Literal

from bot.parsing.values import SizeSpec, zone_info
from bot.side import Side

Network = Literal["testnet", "mainnet", "paper"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]
Timeframe = Literal["1m", "5m", "1h", "1d"]
PnlPeriod = Literal["1d", "7d", "30d", "all"]
MoveWindow = Literal["15m", "1h", "4h", "24h"]
Direction = Literal["above", "below"]


@dataclass(frozen=True, slots=True)
class Intent:
    """Base of every parsed command; `command` is the canonical command word."""

    command: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Start(Intent):
    command: ClassVar[str] = "start"
    payload: str | None = None  # deep-link argument (t.me/bot?start=PAYLOAD)


@dataclass(frozen=True, slots=True)
class Help(Intent):
    command: ClassVar[str] = "help"
    topic: str | None = None  # canonical command name, or None for the overview


@dataclass(frozen=True, slots=True)
class Connect(Intent):
    command: ClassVar[str] = "connect"
    network: Network = "testnet"
    # Present only for the one-message form; the handler must delete the message.
    key_id: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)

    @property
    def has_secret(self) -> bool:
        return self.secret is not None


@dataclass(frozen=True, slots=True)
class Accounts(Intent):
    command: ClassVar[str] = "accounts"


@dataclass(frozen=True, slots=True)
class Use(Intent):
    command: ClassVar[str] = "use"
    network: Network = "testnet"


@dataclass(frozen=True, slots=True)
class Disconnect(Intent):
    command: ClassVar[str] = "disconnect"
    network: Network | None = None  # None: the active account


@dataclass(frozen=True, slots=True)
class Price(Intent):
    command: ClassVar[str] = "price"
    symbols: tuple[str, ...] = ()  # empty: the default symbol


@dataclass(frozen=True, slots=True)
class Chart(Intent):
    command: ClassVar[str] = "chart"
    symbol: str | None = None
    timeframe: Timeframe = "1h"
    candles: int = 100


@dataclass(frozen=True, slots=True)
class Order(Intent):
    """A new order: `/buy`, `/sell`, `/long`, `/short`.

    order_type: market (no price), limit (price), stop (stop_px: stop-market), stop_limit
    (both). `tps`/`sl` are reduce-only exits placed after entry; `post_only` maps to
    ParticipateDoNotInitiate, `reduce_only` to ReduceOnly.
    """

    command: ClassVar[str] = "order"
    side: Side
    size: SizeSpec
    symbol: str | None = None
    order_type: OrderType = "market"
    price: Decimal | None = None
    stop_px: Decimal | None = None
    tps: tuple[Decimal, ...] = ()
    sl: Decimal | None = None
    leverage: Decimal | None = None
    post_only: bool = False
    reduce_only: bool = False

    @property
    def entry(self) -> Decimal | None:
        """The price the position is expected to open at, when the order says it."""
        return self.price if self.price is not None else self.stop_px


@dataclass(frozen=True, slots=True)
class Close(Intent):
    command: ClassVar[str] = "close"
    symbol: str | None = None
    size: SizeSpec | None = None  # None: the whole position; percent: that share of it
    price: Decimal | None = None  # None: market


@dataclass(frozen=True, slots=True)
class CancelOrder(Intent):
    command: ClassVar[str] = "cancel"
    ref: str  # an orderID/clOrdID prefix, or a number from the /orders list

    @property
    def list_number(self) -> int | None:
        """The /orders list position when the ref is a short plain number."""
        return int(self.ref) if self.ref.isdigit() and len(self.ref) <= 3 else None


@dataclass(frozen=True, slots=True)
class CancelAll(Intent):
    command: ClassVar[str] = "cancel"
    symbol: str | None = None  # None: every symbol


@dataclass(frozen=True, slots=True)
class Orders(Intent):
    command: ClassVar[str] = "orders"
    symbol: str | None = None  # None: every symbol


@dataclass(frozen=True, slots=True)
class Positions(Intent):
    command: ClassVar[str] = "positions"


@dataclass(frozen=True, slots=True)
class Balance(Intent):
    command: ClassVar[str] = "balance"


@dataclass(frozen=True, slots=True)
class Leverage(Intent):
    command: ClassVar[str] = "leverage"
    symbol: str | None = None
    value: Decimal | None = None  # None: cross margin

    @property
    def cross(self) -> bool:
        return self.value is None


@dataclass(frozen=True, slots=True)
class Pnl(Intent):
    command: ClassVar[str] = "pnl"
    period: PnlPeriod = "7d"


@dataclass(frozen=True, slots=True)
class PriceAlert(Intent):
    command: ClassVar[str] = "alert"
    symbol: str | None
    direction: Direction
    price: Decimal
    note: str | None = None


@dataclass(frozen=True, slots=True)
class MoveAlert(Intent):
    command: ClassVar[str] = "alert"
    symbol: str | None
    percent: Decimal
    window: MoveWindow = "1h"


@dataclass(frozen=True, slots=True)
class FundingAlert(Intent):
    command: ClassVar[str] = "alert"
    symbol: str | None
    direction: Direction
    percent: Decimal  # 0.05 means 0.05 %; may be negative

    @property
    def rate(self) -> Decimal:
        """As BitMEX reports fundingRate (0.0005 for 0.05 %)."""
        return self.percent / 100


@dataclass(frozen=True, slots=True)
class Alerts(Intent):
    command: ClassVar[str] = "alerts"


@dataclass(frozen=True, slots=True)
class Unalert(Intent):
    command: ClassVar[str] = "unalert"
    alert_id: int | None = None  # None: all alerts


@dataclass(frozen=True, slots=True)
class LiqAlert(Intent):
    command: ClassVar[str] = "liqalert"
    percent: Decimal | None = None  # None: off


@dataclass(frozen=True, slots=True)
class LiqFeed(Intent):
    command: ClassVar[str] = "liqfeed"
    symbol: str | None = None  # None: every symbol
    min_usd: Decimal | None = None  # None: off


@dataclass(frozen=True, slots=True)
class Summary(Intent):
    command: ClassVar[str] = "summary"
    schedule: Literal["daily", "weekly", "off"] = "off"
    at: time | None = None  # local time in the user's zone
    weekday: int | None = None  # 0 = Monday; weekly only


@dataclass(frozen=True, slots=True)
class Tz(Intent):
    command: ClassVar[str] = "tz"
    zone: str = "UTC"  # IANA name (canonical case) or "UTC+03:00"
    offset_minutes: int | None = None  # set for fixed offsets only

    def tzinfo(self) -> tzinfo:
        return zone_info(self.zone, self.offset_minutes)


@dataclass(frozen=True, slots=True)
class Deadman(Intent):
    command: ClassVar[str] = "deadman"
    seconds: int | None = None  # None: off


@dataclass(frozen=True, slots=True)
class Settings(Intent):
    """`/settings` alone shows them; `key value` changes one (value already validated)."""

    command: ClassVar[str] = "settings"
    key: str | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Feed(Intent):
    command: ClassVar[str] = "feed"
    on: bool = True
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Signal(Intent):
    """`/signal long|short ...`; for a long sl < entry_low and every tp > entry_high."""

    command: ClassVar[str] = "signal"
    side: Literal["long", "short"]
    symbol: str
    entry_low: Decimal
    entry_high: Decimal
    sl: Decimal
    tps: tuple[Decimal, ...] = ()
    leverage: Decimal | None = None
    risk_percent: Decimal | None = None


@dataclass(frozen=True, slots=True)
class SignalClose(Intent):
    command: ClassVar[str] = "signal"
    signal_id: int


@dataclass(frozen=True, slots=True)
class SignalMoveSl(Intent):
    command: ClassVar[str] = "signal"
    signal_id: int
    sl: Decimal


@dataclass(frozen=True, slots=True)
class FeedStats(Intent):
    command: ClassVar[str] = "feedstats"
    feed: str | None = None  # a feed by name (look before following); None: this group/mine


@dataclass(frozen=True, slots=True)
class Follow(Intent):
    """risk: `value`% of equity risked per signal (capped by max_usd notional);
    usd: fixed `value` USD notional; contracts: fixed `value` contracts."""

    command: ClassVar[str] = "follow"
    feed: str
    mode: Literal["risk", "usd", "contracts"]
    value: Decimal
    max_usd: Decimal | None = None
    auto: bool | None = None  # `auto`/`manual`: apply risk-reducing updates unasked; None: as is


@dataclass(frozen=True, slots=True)
class Unfollow(Intent):
    command: ClassVar[str] = "unfollow"
    feed: str


@dataclass(frozen=True, slots=True)
class Feeds(Intent):
    command: ClassVar[str] = "feeds"


@dataclass(frozen=True, slots=True)
class Stats(Intent):
    command: ClassVar[str] = "stats"


@dataclass(frozen=True, slots=True)
class Broadcast(Intent):
    command: ClassVar[str] = "broadcast"
    text: str


Command = Intent
