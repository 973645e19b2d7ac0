"""What the engine keeps per account: the account and its keys, orders, positions, and the
events and price points it reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from bot.matching.terms import OPEN_STATUSES, STOP_TYPES, Row, iso


@dataclass
class Account:
    id: int
    key: str
    secret: str
    permissions: list[str]
    enabled: bool = True
    wallet: dict[str, int] = field(default_factory=dict)
    deposited: dict[str, int] = field(default_factory=dict)
    cancel_at: datetime | None = None
    key_id: str = ""
    created: datetime | None = None
    # GET /apiKey lists every key of the account: `other_keys` come first (as on a live
    # account with older keys), the caller's own row last, or not at all when hidden.
    other_keys: list[Row] = field(default_factory=list)
    hide_own_key: bool = False
    cidrs: list[str] = field(default_factory=list)
    # Some accounts are refused pegged orders (community reports; BITMEX.md): a test or
    # the sandbox turns this off to exercise the bot's own trailing.
    pegged_allowed: bool = True


@dataclass
class Order:
    order_id: str
    cl_ord_id: str
    account: int
    symbol: str
    side: str
    order_qty: int
    price: Decimal | None
    stop_px: Decimal | None
    ord_type: str
    time_in_force: str
    exec_inst: str
    currency: str
    settl: str
    text: str
    created: datetime
    ord_status: str = "New"
    triggered: str = ""
    leaves_qty: int = 0
    cum_qty: int = 0
    avg_px: Decimal | None = None
    # A trailing stop (pegPriceType TrailingStopPeg): stop_px follows the reference price
    # at this signed offset, only in the position's favour (negative for a sell stop).
    peg_offset: Decimal | None = None
    notional: Decimal = Decimal(0)  # sum of qty*price for avgPx
    transact_time: datetime | None = None
    timestamp: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.ord_status in OPEN_STATUSES

    @property
    def working(self) -> bool:
        """True when the order can trade now (not a stop still waiting for its trigger)."""
        return self.is_open and (self.ord_type not in STOP_TYPES or self.triggered != "")

    @property
    def reduce_only(self) -> bool:
        return "ReduceOnly" in self.exec_inst or "Close" in self.exec_inst

    @property
    def sign(self) -> int:
        return 1 if self.side == "Buy" else -1

    def row(self) -> Row:
        return {
            "orderID": self.order_id,
            "clOrdID": self.cl_ord_id,
            "clOrdLinkID": "",
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side,
            "orderQty": self.order_qty,
            "price": self.price,
            "displayQty": None,
            "stopPx": self.stop_px,
            "pegOffsetValue": self.peg_offset,
            "pegPriceType": "TrailingStopPeg" if self.peg_offset is not None else "",
            "currency": self.currency,
            "settlCurrency": self.settl,
            "ordType": self.ord_type,
            "timeInForce": self.time_in_force,
            "execInst": self.exec_inst,
            "contingencyType": "",
            "ordStatus": self.ord_status,
            "triggered": self.triggered,
            "workingIndicator": self.working,
            "ordRejReason": "",
            "leavesQty": self.leaves_qty,
            "cumQty": self.cum_qty,
            "avgPx": self.avg_px,
            "text": self.text,
            "transactTime": iso(self.transact_time or self.created),
            "timestamp": iso(self.timestamp or self.created),
        }


@dataclass
class Position:
    account: int
    symbol: str
    leverage: Decimal = Decimal(0)  # 0 = cross
    qty: int = 0
    cost: Decimal = Decimal(0)  # exact signed value at entry prices
    realised: int = 0  # since open, fees and funding included
    realised_gross: int = 0
    exec_buy: int = 0
    exec_sell: int = 0
    created: bool = False
    timestamp: datetime | None = None


@dataclass
class Event:
    """One WebSocket-worthy change. `account` is None for public tables."""

    table: str
    action: str
    data: list[Row]
    account: int | None = None


@dataclass
class PricePoint:
    timestamp: datetime
    price: Decimal
    size: int
    side: str = ""
    match_id: str = ""
    gross: int = 0
