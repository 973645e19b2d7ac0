"""The BitMEX matching and margin engine behind the simulator.

Pure Python, no I/O: time comes from a `Clock` the caller controls, prices from
`set_mark` (tests) or a `PriceDriver` (sandbox). Every state change is reported
as an `Event(table, action, data, account)` so the server can fan it out on the
WebSocket exactly like BitMEX does.

Money follows the exchange: integers in the settlement currency's smallest unit
(XBt = 1e-8 XBT, USDt = 1e-6 USDT). Position cost is kept exact (Decimal) and
only rounded when shown, so an average entry is exactly the harmonic (inverse)
or arithmetic (linear) mean of the fills.

Simplifications, documented because tests rely on them:
- The book is synthetic: a marketable order takes liquidity at ask (buy) or bid
  (sell) and, when `depth` is set for a symbol, walks further levels one tick
  apart with `depth` contracts each. Resting limits fill at their own price when
  the opposite quote reaches them, at most `depth` per price update.
- Cross margin liquidation price: the position is backed by the wallet balance
  minus the margin reserved for open orders and the other positions of the same
  currency (unrealised PnL of other positions is ignored), turned into an
  effective initial-margin rate for the isolated formulas.
- availableMargin = marginBalance - position margin - open-order margin.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

Row = dict[str, Any]

FUNDING_INTERVAL = timedelta(hours=8)
TAKER_FEE = Decimal("0.00075")
MAKER_FEE = Decimal("-0.0001")
PRICE_CAP = Decimal(100000000)
OPEN_STATUSES = ("New", "PartiallyFilled")
STOP_TYPES = ("Stop", "StopLimit", "MarketIfTouched", "LimitIfTouched")
ORD_TYPES = ("Market", "Limit", *STOP_TYPES)
TIME_IN_FORCE = ("GoodTillCancel", "ImmediateOrCancel", "FillOrKill", "Day")
EXEC_INSTS = (
    "ParticipateDoNotInitiate",
    "ReduceOnly",
    "Close",
    "MarkPrice",
    "LastPrice",
    "IndexPrice",
    "AllOrNone",
)
CURRENCY_UNITS = {"XBt": (Decimal(100000000), "XBT"), "USDt": (Decimal(1000000), "USDT")}
# GET /wallet/assets as the live API answers it (abridged to the fields the spec lists).
ASSETS: list[Row] = [
    {"asset": "XBT", "currency": "XBt", "majorCurrency": "XBT", "name": "Bitcoin",
     "currencyType": "Crypto", "scale": 8, "enabled": True, "isMarginCurrency": True,
     "memoRequired": False},
    {"asset": "USDT", "currency": "USDt", "majorCurrency": "USDT", "name": "Tether",
     "currencyType": "Crypto", "scale": 6, "enabled": True, "isMarginCurrency": True,
     "memoRequired": False},
    {"asset": "BMEX", "currency": "BMEx", "majorCurrency": "BMEX", "name": "BMEX Token",
     "currencyType": "Crypto", "scale": 6, "enabled": True, "isMarginCurrency": False,
     "memoRequired": False},
    {"asset": "USDC", "currency": "USDc", "majorCurrency": "USDC", "name": "USD Coin",
     "currencyType": "Crypto", "scale": 6, "enabled": True, "isMarginCurrency": False,
     "memoRequired": False},
    {"asset": "ETH", "currency": "Gwei", "majorCurrency": "ETH", "name": "Ethereum",
     "currencyType": "Crypto", "scale": 9, "enabled": True, "isMarginCurrency": False,
     "memoRequired": False},
]

Q_AVG = Decimal("0.0001")


class EngineError(Exception):
    """A request the exchange refuses; the server maps it to an HTTP error body."""

    def __init__(self, message: str, status: int = 400, name: str = "HTTPError") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.name = name


def iso(ts: datetime) -> str:
    """BitMEX timestamps: UTC, millisecond precision, `Z` suffix."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def to_int(value: Decimal) -> int:
    return int(value.to_integral_value(ROUND_HALF_EVEN))


def _dec(value: Any, what: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError) as e:
        raise EngineError(f"Invalid {what}", name="ValidationError") from e
    if not result.is_finite():
        raise EngineError(f"Invalid {what}", name="ValidationError")
    return result


class Clock:
    """Simulated time. Tests `advance()` it; the sandbox lets it follow wall time.

    Listeners run after every advance so funding, dead-man switches and stop
    triggers happen deterministically at the simulated instant.
    """

    def __init__(self, start: datetime | None = None, *, follow_wall: bool = False) -> None:
        self.follow_wall = follow_wall
        self._offset = timedelta(0)
        self._t = (start or datetime.now(UTC)).astimezone(UTC)
        self._listeners: list[Callable[[], None]] = []

    def __getstate__(self) -> dict[str, Any]:
        # Listeners are live callbacks of this process; whoever loads re-registers its own.
        state = dict(self.__dict__)
        state["_listeners"] = []
        return state

    def now(self) -> datetime:
        if self.follow_wall:
            return datetime.now(UTC) + self._offset
        return self._t

    def advance(self, seconds: float) -> None:
        delta = timedelta(seconds=seconds)
        if self.follow_wall:
            self._offset += delta
        else:
            self._t += delta
        for listener in list(self._listeners):
            listener()

    def on_advance(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)


@dataclass
class Instrument:
    symbol: str
    root: str
    quote: str
    settl: str
    is_inverse: bool
    is_quanto: bool
    multiplier: Decimal
    lot_size: int
    tick_size: Decimal
    max_order_qty: int
    init_margin: Decimal
    maint_margin: Decimal
    price: Decimal
    underlying_to_position: int | None = None
    quote_to_settle: int | None = None
    funding_rate: Decimal = Decimal("0.0001")
    spread: Decimal | None = None  # None = two ticks
    depth: int | None = None  # None = unlimited liquidity at the touch
    last: Decimal = Decimal(0)
    mark: Decimal = Decimal(0)
    bid: Decimal = Decimal(0)
    ask: Decimal = Decimal(0)
    prev_price_24h: Decimal = Decimal(0)
    volume_24h: int = 0
    funding_ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    tick_direction: str = "ZeroPlusTick"
    # FFWCSX perpetual, FFCCSX future, FFSCSX stock perpetual, FFICSX prediction market,
    # IFXXXP spot pair: /instrument/active lists them all, so the bot must tell them apart.
    typ: str = "FFWCSX"
    state: str = "Open"
    # A future's expiry as an offset from the engine's start (the clock is the tests'),
    # turned into `expiry` when the engine is built.
    expires_in: timedelta | None = None
    expiry: datetime | None = None
    max_price: Decimal = Decimal(1000000)

    @property
    def is_perpetual(self) -> bool:
        return self.typ in ("FFWCSX", "FFSCSX")

    @property
    def tradeable(self) -> bool:
        return self.state == "Open"

    def value(self, qty: int | Decimal, price: Decimal) -> Decimal:
        """Signed contract value in settlement units (exact, unrounded)."""
        if self.is_inverse:
            return Decimal(qty) * self.multiplier / price
        return Decimal(qty) * self.multiplier * price

    def round_tick(self, price: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        steps = (price / self.tick_size).to_integral_value(rounding)
        return (steps * self.tick_size).quantize(self.tick_size)


def default_instruments() -> list[Instrument]:
    """BitMEX's live specs (2026) of the contracts the bot trades, plus one of each kind
    it must refuse (prediction market, spot pair) and a future that expires in 6 hours."""
    return [
        Instrument(
            "XBTUSD", "XBT", "USD", "XBt", True, False, Decimal(-100000000), 100,
            Decimal("0.1"), 10000000, Decimal("0.01"), Decimal("0.005"), Decimal(50000),
        ),
        # Quanto: 1 contract = price * 100 XBt whatever the XBT price.
        Instrument(
            "ETHUSD", "ETH", "USD", "XBt", False, True, Decimal(100), 1,
            Decimal("0.01"), 10000000, Decimal("0.02"), Decimal("0.01"), Decimal(3000),
            quote_to_settle=1279,
        ),
        # Linear: 1 contract = 1e-6 XBT.
        Instrument(
            "XBTUSDT", "XBT", "USDT", "USDt", False, False, Decimal(1), 100,
            Decimal("0.1"), 1000000000, Decimal("0.01"), Decimal("0.005"), Decimal(50000),
            underlying_to_position=1000000, quote_to_settle=1000000,
        ),
        # 1 contract = 1e-5 ETH (multiplier 10 USDt per USDT of price).
        Instrument(
            "ETHUSDT", "ETH", "USDT", "USDt", False, False, Decimal(10), 1000,
            Decimal("0.01"), 1000000000, Decimal("0.02"), Decimal("0.01"), Decimal(3000),
            underlying_to_position=100000, quote_to_settle=1000000,
        ),
        # 1 contract = 1e-4 SOL.
        Instrument(
            "SOLUSDT", "SOL", "USDT", "USDt", False, False, Decimal(100), 100,
            Decimal("0.01"), 1000000000, Decimal("0.02"), Decimal("0.01"), Decimal(150),
            underlying_to_position=10000, quote_to_settle=1000000,
        ),
        # Linear but XBt-settled: priced in XBT, 1 contract = 0.01 ETH.
        Instrument(
            "ETHXBT", "ETH", "XBT", "XBt", False, False, Decimal(1000000), 1,
            Decimal("0.00001"), 10000000, Decimal("0.02"), Decimal("0.01"), Decimal("0.06"),
            underlying_to_position=100, quote_to_settle=100000000,
        ),
        # An inverse future: 1 contract = 1 USD, settles at expiry.
        Instrument(
            "XBTZ26", "XBT", "USD", "XBt", True, False, Decimal(-100000000), 100,
            Decimal("0.5"), 10000000, Decimal("0.01"), Decimal("0.005"), Decimal(50500),
            funding_rate=Decimal(0), typ="FFCCSX", expires_in=timedelta(hours=6),
        ),
        # A stock perpetual: 1 contract = 0.01 share.
        Instrument(
            "TSLAUSDT", "TSLA", "USDT", "USDt", False, False, Decimal(10000), 1,
            Decimal("0.01"), 1000000, Decimal("0.1"), Decimal("0.05"), Decimal(250),
            underlying_to_position=100, quote_to_settle=1000000, typ="FFSCSX",
        ),
        # A prediction market: priced 0-100, 1 contract pays 1 USDT at 100.
        Instrument(
            "PXBT150KZ26", "PXBT150K", "USDT", "USDt", False, False, Decimal(10000), 1,
            Decimal("0.1"), 1000000, Decimal(1), Decimal("0.5"), Decimal(42),
            funding_rate=Decimal(0), typ="FFICSX", max_price=Decimal(100),
        ),
        # A spot pair: no settlement currency, no margin.
        Instrument(
            "XBT_USDT", "XBT", "USDT", "", False, False, Decimal(1), 100,
            Decimal("0.1"), 1000000000, Decimal(1), Decimal(1), Decimal(50000),
            funding_rate=Decimal(0), typ="IFXXXP",
            underlying_to_position=1000000, quote_to_settle=1000000,
        ),
    ]


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
            "pegOffsetValue": None,
            "pegPriceType": "",
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


class Engine:
    """Accounts, orders, positions, margin and market data of a simulated BitMEX."""

    def __init__(
        self, clock: Clock | None = None, instruments: Iterable[Instrument] | None = None
    ) -> None:
        self.clock = clock or Clock()
        self.instruments: dict[str, Instrument] = {}
        for inst in instruments or default_instruments():
            self.instruments[inst.symbol] = inst
        self.accounts: dict[int, Account] = {}
        self._by_key: dict[str, Account] = {}
        self.orders: dict[str, Order] = {}
        self._open: dict[str, dict[str, Order]] = {s: {} for s in self.instruments}
        self._by_account: dict[int, list[Order]] = {}
        self._cl_ids: dict[int, dict[str, Order]] = {}
        self.positions: dict[tuple[int, str], Position] = {}
        self.executions: dict[int, list[Row]] = {}
        self.history: dict[str, deque[PricePoint]] = {
            s: deque(maxlen=200000) for s in self.instruments
        }
        self.fundings: list[Row] = []
        self.liquidations: dict[str, Row] = {}
        self._liq_schedule: list[tuple[datetime, str, str]] = []
        self._listeners: list[Callable[[Event], None]] = []
        self._next_account = 100001
        self._last_time = self.clock.now()
        now = self.clock.now()
        for inst in self.instruments.values():
            inst.funding_ts = next_funding(now)
            if inst.expires_in is not None and inst.expiry is None:
                inst.expiry = now + inst.expires_in
            self._set_prices(inst, inst.price)
            inst.prev_price_24h = inst.last
        self.clock.on_advance(self.tick)

    # ------------------------------------------------------------------ persistence
    def __getstate__(self) -> dict[str, Any]:
        """Accounts, orders, positions and fills; not listeners, not the tick history.

        Paper accounts are kept across restarts this way. The price history is rebuilt
        by the feed (and would make the snapshot hundreds of MB).
        """
        state = dict(self.__dict__)
        state["_listeners"] = []
        state["history"] = {s: deque(maxlen=200000) for s in self.instruments}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # A snapshot from an earlier version lacks newer instruments and account fields.
        # Listed instruments keep their saved specs: positions' costs were built on them.
        for inst in default_instruments():
            if inst.symbol not in self.instruments:
                self.add_instrument(inst)
        for acct in self.accounts.values():
            for name in ("other_keys", "cidrs"):
                if name not in acct.__dict__:
                    setattr(acct, name, [])
        self.clock.on_advance(self.tick)

    # ------------------------------------------------------------------ events
    def listen(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def _emit(self, table: str, action: str, data: list[Row], account: int | None = None) -> None:
        if not data:
            return
        event = Event(table, action, data, account)
        for callback in list(self._listeners):
            callback(event)

    # ---------------------------------------------------------------- accounts
    def add_account(
        self,
        key: str,
        secret: str,
        permissions: Iterable[str] = ("order", "orderCancel"),
        *,
        xbt: Decimal | float | int = 1,
        usdt: Decimal | float | int = 10000,
        enabled: bool = True,
        bmex: Decimal | float | int = 0,
    ) -> Account:
        account = Account(
            id=self._next_account,
            key=key,
            secret=secret,
            permissions=list(permissions),
            enabled=enabled,
            key_id=key,
            created=self.clock.now(),
        )
        self._next_account += 1
        account.wallet["XBt"] = to_int(Decimal(str(xbt)) * 100000000)
        account.wallet["USDt"] = to_int(Decimal(str(usdt)) * 1000000)
        # Every live account has a BMEx wallet (the exchange token), usually empty.
        account.wallet["BMEx"] = to_int(Decimal(str(bmex)) * 1000000)
        account.deposited = dict(account.wallet)
        # Strict by default: an older key of the same account, with withdraw permission,
        # is listed before the caller's own, so judging by the first row is caught.
        account.other_keys.append({
            "id": uuid.uuid4().hex[:24], "name": "withdrawals", "nonce": 0, "cidr": "",
            "cidrs": [], "permissions": ["order", "orderCancel", "withdraw"], "enabled": True,
            "userId": account.id, "created": iso(self.clock.now() - timedelta(days=400)),
        })
        self.accounts[account.id] = account
        self._by_key[key] = account
        self._by_account[account.id] = []
        self._cl_ids[account.id] = {}
        self.executions[account.id] = []
        return account

    def add_instrument(self, inst: Instrument) -> Instrument:
        """List a new instrument (a future series opening, or a test's own contract)."""
        if inst.symbol in self.instruments:
            raise ValueError(f"{inst.symbol} is already listed")
        now = self.clock.now()
        self.instruments[inst.symbol] = inst
        self._open[inst.symbol] = {}
        self.history[inst.symbol] = deque(maxlen=200000)
        inst.funding_ts = next_funding(now)
        if inst.expires_in is not None and inst.expiry is None:
            inst.expiry = now + inst.expires_in
        self._set_prices(inst, inst.price)
        inst.prev_price_24h = inst.last
        return inst

    def api_key_rows(self, account_id: int) -> list[Row]:
        """GET /apiKey: every key of the account, the caller's own among them."""
        acct = self.accounts[account_id]
        rows = [dict(r) for r in acct.other_keys]
        if not acct.hide_own_key:
            rows.append({
                "id": acct.key, "name": "simulator", "nonce": 0,
                "cidr": acct.cidrs[0] if acct.cidrs else "", "cidrs": list(acct.cidrs),
                "permissions": list(acct.permissions), "enabled": acct.enabled,
                "userId": acct.id, "created": iso(acct.created or self.clock.now()),
            })
        return rows

    def account_by_key(self, key: str) -> Account | None:
        return self._by_key.get(key)

    def instrument(self, symbol: Any) -> Instrument:
        inst = self.instruments.get(str(symbol)) if symbol else None
        if inst is None:
            raise EngineError("Invalid symbol")
        return inst

    # ------------------------------------------------------------ market data
    def _set_prices(self, inst: Instrument, mark: Decimal, last: Decimal | None = None) -> None:
        mark = max(inst.round_tick(mark), inst.tick_size)
        price = max(inst.round_tick(last), inst.tick_size) if last is not None else mark
        if price > inst.last:
            inst.tick_direction = "PlusTick"
        elif price < inst.last:
            inst.tick_direction = "MinusTick"
        spread = inst.spread if inst.spread is not None else inst.tick_size * 2
        half = spread / 2
        inst.last = price
        inst.mark = mark
        inst.bid = max(inst.round_tick(price - half, ROUND_FLOOR), inst.tick_size)
        inst.ask = inst.round_tick(price + half, ROUND_CEILING)
        if inst.ask < inst.bid or (spread > 0 and inst.ask == inst.bid):
            inst.ask = inst.bid + inst.tick_size

    def set_spread(self, symbol: str, spread: Decimal | None) -> None:
        """Bid-ask spread around the mark; None restores the default of two ticks."""
        inst = self.instrument(symbol)
        inst.spread = spread
        self._set_prices(inst, inst.mark, inst.last)

    def set_depth(self, symbol: str, depth: int | None) -> None:
        """Contracts available per price level; None means unlimited (no partial fills)."""
        self.instrument(symbol).depth = depth

    def set_funding_rate(self, symbol: str, rate: Decimal) -> None:
        inst = self.instrument(symbol)
        inst.funding_rate = rate
        self._emit("instrument", "update", [self._instrument_delta(inst, ("fundingRate",))])

    def set_mark(
        self,
        symbol: str,
        price: Decimal | int | str,
        trade_size: int = 0,
        last: Decimal | int | str | None = None,
    ) -> None:
        """Move the market: prices, then stops, crossing limits and liquidations.

        `last` (default: the mark) lets tests separate the two trigger sources;
        bid and ask sit around the last price.
        """
        inst = self.instrument(symbol)
        self._set_prices(inst, Decimal(str(price)), None if last is None else Decimal(str(last)))
        now = self.clock.now()
        self.history[symbol].append(PricePoint(now, inst.last, 0))
        if trade_size > 0:
            side = "Buy" if inst.tick_direction == "PlusTick" else "Sell"
            self._public_trade(inst, side, trade_size, inst.last)
        self._emit(
            "instrument",
            "update",
            [
                self._instrument_delta(
                    inst,
                    (
                        "lastPrice", "markPrice", "bidPrice", "askPrice", "midPrice",
                        "fairPrice", "lastTickDirection", "lastChangePcnt",
                    ),
                )
            ],
        )
        self._emit("quote", "insert", [self.quote_row(inst)])
        self._on_price(inst)

    def _on_price(self, inst: Instrument) -> None:
        self._check_triggers(inst)
        self._match_resting(inst)
        self._check_liquidations(inst)
        self._refresh_accounts_on(inst)

    def _refresh_accounts_on(self, inst: Instrument) -> None:
        accounts = {acct for (acct, sym), pos in self.positions.items()
                    if sym == inst.symbol and pos.qty != 0}
        for acct in sorted(accounts):
            pos = self.positions[(acct, inst.symbol)]
            self._emit("position", "update", [self.position_row(pos)], acct)
            self._emit("margin", "update", [self.margin_row(acct, inst.settl)], acct)

    def instrument_row(self, inst: Instrument) -> Row:
        change = (
            (inst.last - inst.prev_price_24h) / inst.prev_price_24h
            if inst.prev_price_24h
            else Decimal(0)
        )
        now = self.clock.now()
        row: Row = {
            "symbol": inst.symbol,
            "rootSymbol": inst.root,
            "state": inst.state,
            "typ": inst.typ,
            "listing": "2016-05-13T12:00:00.000Z",
            "front": "2016-05-13T12:00:00.000Z",
            "positionCurrency": "USD" if inst.is_inverse or inst.is_quanto else inst.root,
            "underlying": inst.root,
            "quoteCurrency": inst.quote,
            "underlyingSymbol": f"{inst.root}=",
            "reference": "BMEX",
            "referenceSymbol": f".B{inst.root}",
            "maxOrderQty": inst.max_order_qty,
            "maxPrice": inst.max_price,
            "lotSize": inst.lot_size,
            "tickSize": inst.tick_size,
            "multiplier": inst.multiplier,
            "settlCurrency": inst.settl,
            "underlyingToPositionMultiplier": inst.underlying_to_position,
            "quoteToSettleMultiplier": inst.quote_to_settle,
            "isQuanto": inst.is_quanto,
            "isInverse": inst.is_inverse,
            "initMargin": inst.init_margin,
            "maintMargin": inst.maint_margin,
            "riskLimit": 20000000000,
            "riskStep": 15000000000,
            "makerFee": MAKER_FEE,
            "takerFee": TAKER_FEE,
            "settlementFee": 0,
            "prevClosePrice": inst.prev_price_24h,
            "totalVolume": inst.volume_24h,
            "volume": inst.volume_24h,
            "volume24h": inst.volume_24h,
            "prevPrice24h": inst.prev_price_24h,
            "lastPrice": inst.last,
            "lastPriceProtected": inst.last,
            "lastTickDirection": inst.tick_direction,
            "lastChangePcnt": change.quantize(Q_AVG),
            "bidPrice": inst.bid,
            "midPrice": (inst.bid + inst.ask) / 2,
            "askPrice": inst.ask,
            "impactBidPrice": inst.bid,
            "impactMidPrice": (inst.bid + inst.ask) / 2,
            "impactAskPrice": inst.ask,
            "openInterest": 0,
            "openValue": 0,
            "fairMethod": "FundingRate",
            "fairPrice": inst.mark,
            "markMethod": "FairPrice",
            "markPrice": inst.mark,
            "indicativeSettlePrice": inst.mark,
            "timestamp": iso(now),
        }
        # Fields a kind does not have are absent, not null (as on the live API).
        if inst.is_perpetual:
            row.update({
                "fundingBaseSymbol": f".{inst.root}BON8H",
                "fundingQuoteSymbol": f".{inst.quote}BON8H",
                "fundingPremiumSymbol": f".{inst.symbol}PI8H",
                "fundingTimestamp": iso(inst.funding_ts),
                "fundingInterval": "2000-01-01T08:00:00.000Z",
                "fundingRate": inst.funding_rate,
                "indicativeFundingRate": inst.funding_rate,
            })
        if inst.expiry is not None:
            row["expiry"] = iso(inst.expiry)
            row["settle"] = iso(inst.expiry)
        if inst.quote_to_settle is None:
            del row["quoteToSettleMultiplier"]
        if inst.underlying_to_position is None:
            del row["underlyingToPositionMultiplier"]
        if inst.is_inverse:
            row["underlyingToSettleMultiplier"] = -inst.multiplier
        return row

    def _instrument_delta(self, inst: Instrument, fields: Iterable[str]) -> Row:
        full = self.instrument_row(inst)
        row = {"symbol": inst.symbol}
        for name in fields:
            row[name] = full[name]
        row["timestamp"] = full["timestamp"]
        return row

    def quote_row(self, inst: Instrument) -> Row:
        size = inst.depth if inst.depth is not None else 100 * inst.lot_size
        return {
            "timestamp": iso(self.clock.now()),
            "symbol": inst.symbol,
            "bidSize": size,
            "bidPrice": inst.bid,
            "askPrice": inst.ask,
            "askSize": size,
        }

    def _public_trade(self, inst: Instrument, side: str, size: int, price: Decimal) -> Row:
        now = self.clock.now()
        gross = abs(to_int(inst.value(size, price)))
        point = PricePoint(now, price, size, side, str(uuid.uuid4()), gross)
        self.history[inst.symbol].append(point)
        inst.volume_24h += size
        row = self.trade_row(inst, point)
        self._emit("trade", "insert", [row])
        return row

    def trade_row(self, inst: Instrument, point: PricePoint) -> Row:
        home, foreign = self._notionals(inst, point.size, point.price)
        return {
            "timestamp": iso(point.timestamp),
            "symbol": inst.symbol,
            "side": point.side,
            "size": point.size,
            "price": point.price,
            "tickDirection": inst.tick_direction,
            "trdMatchID": point.match_id,
            "grossValue": point.gross,
            "homeNotional": abs(home),
            "foreignNotional": abs(foreign),
        }

    def trades(self, symbol: str | None = None) -> list[Row]:
        rows: list[Row] = []
        for sym, points in self.history.items():
            if symbol and sym != symbol:
                continue
            inst = self.instruments[sym]
            rows.extend(self.trade_row(inst, p) for p in points if p.size > 0)
        rows.sort(key=lambda r: r["timestamp"])
        return rows

    def backfill(self, hours: float = 24 * 7, step: float = 300.0, volatility: float = 0.002,
                 seed: int | None = None) -> None:
        """Invent a plausible past: a random walk that ends at today's price.

        The sandbox starts with no history, so /chart would draw one candle and /price
        would show no 24 h change; a seeded walk fixes both without touching balances.
        """
        rng = random.Random(seed)
        now = self.clock.now()
        n = int(hours * 3600 // step)
        for symbol, inst in self.instruments.items():
            price = float(inst.last)
            points: list[PricePoint] = []
            for k in range(1, n + 1):
                # Walk backwards from the present so the series ends exactly at `last`.
                price *= math.exp(-rng.gauss(0.0, volatility))
                ts = now - timedelta(seconds=k * step)
                px = inst.round_tick(Decimal(str(round(price, 8))))
                size = rng.randint(1, 40) * int(inst.lot_size)
                points.append(PricePoint(ts, px, size, rng.choice(("Buy", "Sell"))))
            points.reverse()  # walked backwards; the deque wants oldest first
            old = list(self.history[symbol])
            self.history[symbol].clear()
            self.history[symbol].extend(points + old)
            day_ago = now - timedelta(hours=24)
            before = [p for p in points if p.timestamp <= day_ago]
            if before:
                inst.prev_price_24h = before[-1].price

    def bucketed(self, symbol: str, bin_size: str, partial: bool) -> list[Row]:
        """OHLCV from trades and price updates; a bucket's timestamp is its END."""
        widths = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
        if bin_size not in widths:
            raise EngineError("binSize is invalid", name="ValidationError")
        width = widths[bin_size]
        inst = self.instrument(symbol)
        now = self.clock.now()
        buckets: dict[int, Row] = {}
        for p in self.history[symbol]:
            epoch = p.timestamp.timestamp()
            # (end - width, end]: a point exactly on a boundary closes that bucket.
            end = int(-(-epoch // width)) * width
            row = buckets.get(end)
            if row is None:
                row = buckets[end] = {
                    "timestamp": iso(datetime.fromtimestamp(end, UTC)),
                    "symbol": symbol,
                    "open": p.price,
                    "high": p.price,
                    "low": p.price,
                    "close": p.price,
                    "trades": 0,
                    "volume": 0,
                    "vwap": None,
                    "lastSize": None,
                    "turnover": 0,
                    "homeNotional": Decimal(0),
                    "foreignNotional": Decimal(0),
                    "_notional": Decimal(0),
                }
            row["high"] = max(row["high"], p.price)
            row["low"] = min(row["low"], p.price)
            row["close"] = p.price
            if p.size:
                home, foreign = self._notionals(inst, p.size, p.price)
                row["trades"] += 1
                row["volume"] += p.size
                row["lastSize"] = p.size
                row["turnover"] += p.gross
                row["homeNotional"] += abs(home)
                row["foreignNotional"] += abs(foreign)
                row["_notional"] += p.price * p.size
        ends = sorted(buckets)
        result: list[Row] = []
        prev_close: Decimal | None = None
        if ends:
            end = ends[0]
            while end <= ends[-1]:
                row = buckets.get(end)
                if row is None and prev_close is not None:
                    row = {
                        "timestamp": iso(datetime.fromtimestamp(end, UTC)),
                        "symbol": symbol, "open": prev_close, "high": prev_close,
                        "low": prev_close, "close": prev_close, "trades": 0, "volume": 0,
                        "vwap": None, "lastSize": None, "turnover": 0,
                        "homeNotional": Decimal(0), "foreignNotional": Decimal(0),
                        "_notional": Decimal(0),
                    }
                if row is not None:
                    notional = row.pop("_notional")
                    if row["volume"]:
                        row["vwap"] = inst.round_tick(notional / row["volume"])
                    prev_close = row["close"]
                    if end > now.timestamp() and not partial:
                        break
                    result.append(row)
                end += width
        return result

    # ------------------------------------------------------------------ orders
    def place_order(self, account_id: int, params: Row) -> Row:
        inst = self.instrument(params.get("symbol"))
        if not inst.tradeable:
            raise EngineError(f"Instrument {inst.symbol} is not open for trading: {inst.state}")
        if not inst.settl:
            # Spot needs a spot wallet; the simulated accounts only have margin wallets.
            raise EngineError(f"Spot trading of {inst.symbol} is not enabled for this account")
        now = self.clock.now()
        ord_type = str(params.get("ordType") or "")
        price = _dec(params["price"], "price") if params.get("price") is not None else None
        stop_px = _dec(params["stopPx"], "stopPx") if params.get("stopPx") is not None else None
        if not ord_type:
            ord_type = (
                ("StopLimit" if price is not None else "Stop") if stop_px is not None
                else ("Limit" if price is not None else "Market")
            )
        if ord_type not in ORD_TYPES:
            raise EngineError("Invalid ordType")
        exec_inst = str(params.get("execInst") or "")
        insts = [x.strip() for x in exec_inst.split(",") if x.strip()]
        for x in insts:
            if x not in EXEC_INSTS:
                raise EngineError("Invalid execInst")
        exec_inst = ",".join(insts)
        cl_ord_id = str(params.get("clOrdID") or "")
        if len(cl_ord_id) > 36:
            raise EngineError("Invalid clOrdID", name="ValidationError")
        if cl_ord_id and self._open_with_cl(account_id, cl_ord_id):
            raise EngineError("Duplicate clOrdID")
        pos = self._position(account_id, inst.symbol)
        side = str(params.get("side") or "")
        qty_raw = params.get("orderQty")
        if side and side not in ("Buy", "Sell"):
            raise EngineError("Invalid side")
        if "Close" in insts and qty_raw is None:
            if not side:
                if pos.qty == 0:
                    raise EngineError("Invalid side")
                side = "Sell" if pos.qty > 0 else "Buy"
            qty = abs(pos.qty)
        else:
            if qty_raw is None:
                raise EngineError("Invalid orderQty")
            qty_dec = _dec(qty_raw, "orderQty")
            if qty_dec != qty_dec.to_integral_value():
                raise EngineError("Invalid orderQty")
            qty = int(qty_dec)
            if qty < 0 and not side:
                side, qty = "Sell", -qty
            if not side:
                side = "Buy"
            if qty <= 0:
                raise EngineError("Invalid orderQty")
        if qty % inst.lot_size:
            raise EngineError(
                f"Order quantity must be a multiple of lot size: {inst.lot_size}"
            )
        if qty > inst.max_order_qty:
            raise EngineError(f"Invalid orderQty: maximum is {inst.max_order_qty}")
        if ord_type in ("Limit", "StopLimit", "LimitIfTouched") and price is None:
            raise EngineError("Invalid price")
        if ord_type in STOP_TYPES and stop_px is None:
            raise EngineError("Invalid stopPx")
        if ord_type in ("Market", "Stop", "MarketIfTouched") and price is not None:
            raise EngineError("Invalid price")
        for name, value in (("price", price), ("stopPx", stop_px)):
            if value is None:
                continue
            if value <= 0 or value > inst.max_price:
                raise EngineError(f"Invalid {name}")
            if value % inst.tick_size:
                raise EngineError(f"Invalid {name} tickSize")
        tif = str(params.get("timeInForce") or "")
        if not tif:
            tif = "ImmediateOrCancel" if ord_type in ("Market", "Stop", "MarketIfTouched") else (
                "GoodTillCancel"
            )
        if tif not in TIME_IN_FORCE:
            raise EngineError("Invalid timeInForce")
        if "ParticipateDoNotInitiate" in insts and ord_type not in ("Limit", "StopLimit",
                                                                   "LimitIfTouched"):
            raise EngineError("ParticipateDoNotInitiate is only valid for limit orders")
        order = Order(
            order_id=str(uuid.uuid4()),
            cl_ord_id=cl_ord_id,
            account=account_id,
            symbol=inst.symbol,
            side=side,
            order_qty=qty,
            price=price,
            stop_px=stop_px,
            ord_type=ord_type,
            time_in_force=tif,
            exec_inst=exec_inst,
            currency=inst.quote,
            settl=inst.settl,
            text=str(params.get("text") or "Submitted via API."),
            created=now,
            leaves_qty=qty,
            transact_time=now,
            timestamp=now,
        )
        if not order.reduce_only:
            required = self._order_margin(order, inst, pos, extra=True)
            available = self.margin_row(account_id, inst.settl)["availableMargin"]
            if required > available:
                unit, name = CURRENCY_UNITS[inst.settl]
                amount = (Decimal(required) / unit).normalize()
                raise EngineError(
                    f"Account has insufficient Available Balance, {amount:f} {name} required"
                )
        self.orders[order.order_id] = order
        self._by_account[account_id].append(order)
        if cl_ord_id:
            self._cl_ids[account_id][cl_ord_id] = order
        self._open[inst.symbol][order.order_id] = order
        self._emit("order", "insert", [order.row()], account_id)
        self._execution(order, "New")
        if ord_type in STOP_TYPES:
            self._check_triggers(inst, only=order)
        else:
            self._activate(order, inst)
        self._after_change(account_id, inst)
        return order.row()

    def _activate(self, order: Order, inst: Instrument) -> None:
        """Trade a live order against the synthetic book: taker part, then rest or cancel."""
        is_market = order.ord_type in ("Market", "Stop", "MarketIfTouched")
        limit = None if is_market else order.price
        touch = inst.ask if order.side == "Buy" else inst.bid
        crosses = limit is None or (limit >= touch if order.side == "Buy" else limit <= touch)
        if crosses and "ParticipateDoNotInitiate" in order.exec_inst:
            self._cancel(order, "Canceled: Order had execInst of ParticipateDoNotInitiate")
            return
        if order.reduce_only:
            room = self._reducible(order)
            if room <= 0:
                self._cancel(order, "Canceled: Order had execInst of ReduceOnly")
                return
        if crosses:
            levels = self._levels(inst, order.side, limit)
            if order.time_in_force == "FillOrKill":
                available = sum(q for _, q in levels)
                if available < order.leaves_qty:
                    self._cancel(order, "Canceled: Order had timeInForce of FillOrKill")
                    return
            for px, avail in levels:
                if not order.is_open:
                    break
                take = min(avail, order.leaves_qty)
                if order.reduce_only:
                    take = min(take, self._reducible(order))
                    if take <= 0:
                        break
                self._fill(order, take, px, maker=False)
        if not order.is_open:
            return
        if order.reduce_only and self._reducible(order) <= 0:
            self._cancel(order, "Canceled: Order had execInst of ReduceOnly")
        elif is_market or order.time_in_force in ("ImmediateOrCancel", "FillOrKill"):
            self._cancel(order, f"Canceled: Order had timeInForce of {order.time_in_force}")

    def _levels(self, inst: Instrument, side: str, limit: Decimal | None) -> list[tuple[Decimal,
                                                                                     int]]:
        start = inst.ask if side == "Buy" else inst.bid
        step = inst.tick_size if side == "Buy" else -inst.tick_size
        if inst.depth is None:
            return [(start, 10**15)]
        levels = []
        px = start
        for _ in range(50):
            if px <= 0 or (limit is not None and (px > limit if side == "Buy" else px < limit)):
                break
            levels.append((px, inst.depth))
            px += step
        return levels

    def _reducible(self, order: Order) -> int:
        pos = self._position(order.account, order.symbol)
        if pos.qty * order.sign >= 0:
            return 0
        return min(abs(pos.qty), order.leaves_qty)

    def _match_resting(self, inst: Instrument) -> None:
        for order in sorted(self._open[inst.symbol].values(), key=lambda o: o.created):
            if not order.working or order.price is None or order.ord_type == "Market":
                continue
            if order.ord_type in ("Stop", "MarketIfTouched"):
                continue
            crossed = inst.ask <= order.price if order.side == "Buy" else inst.bid >= order.price
            if not crossed:
                continue
            take = order.leaves_qty if inst.depth is None else min(inst.depth, order.leaves_qty)
            if order.reduce_only:
                take = min(take, self._reducible(order))
                if take <= 0:
                    self._cancel(order, "Canceled: Order had execInst of ReduceOnly")
                    continue
            self._fill(order, take, order.price, maker=True)

    def fill_order(self, order_id: str, qty: int, price: Decimal | None = None) -> Row:
        """Test/sandbox control: let a resting order trade `qty` (a partial fill if less)."""
        order = self.orders[order_id]
        if not order.is_open:
            raise EngineError("Invalid ordStatus")
        inst = self.instruments[order.symbol]
        px = price if price is not None else (order.price or inst.last)
        self._fill(order, min(qty, order.leaves_qty), px, maker=True)
        self._after_change(order.account, inst)
        return order.row()

    def _check_triggers(self, inst: Instrument, only: Order | None = None) -> None:
        candidates = [only] if only else list(self._open[inst.symbol].values())
        for order in candidates:
            if order.ord_type not in STOP_TYPES or order.triggered or not order.is_open:
                continue
            assert order.stop_px is not None
            ref = inst.last if "LastPrice" in order.exec_inst else inst.mark
            if order.ord_type in ("Stop", "StopLimit"):
                hit = ref >= order.stop_px if order.side == "Buy" else ref <= order.stop_px
            else:
                hit = ref <= order.stop_px if order.side == "Buy" else ref >= order.stop_px
            if not hit:
                continue
            order.triggered = "StopOrderTriggered"
            order.timestamp = self.clock.now()
            self._emit(
                "order",
                "update",
                [self._order_delta(order, ("triggered", "workingIndicator", "ordStatus"))],
                order.account,
            )
            # BitMEX's exec type for a stop that fired (there is no "Trigger").
            self._execution(order, "TriggeredOrActivatedBySystem")
            self._activate(order, inst)
            self._after_change(order.account, inst)

    def _order_delta(self, order: Order, fields: Iterable[str]) -> Row:
        full = order.row()
        row = {"orderID": order.order_id, "clOrdID": order.cl_ord_id, "account": order.account,
               "symbol": order.symbol}
        for name in fields:
            row[name] = full[name]
        row["timestamp"] = full["timestamp"]
        return row

    def _cancel(self, order: Order, text: str) -> None:
        now = self.clock.now()
        order.ord_status = "Canceled"
        order.leaves_qty = 0
        order.text = text
        order.timestamp = now
        order.transact_time = now
        self._open[order.symbol].pop(order.order_id, None)
        self._emit(
            "order",
            "update",
            [self._order_delta(order, ("ordStatus", "leavesQty", "text", "workingIndicator"))],
            order.account,
        )
        self._execution(order, "Canceled")

    def _open_with_cl(self, account_id: int, cl_ord_id: str) -> bool:
        """BitMEX keeps a clOrdID unique only among OPEN orders (untriggered stops
        included): once filled or cancelled it may be used again, so a re-sent market
        order is not refused but fills a second time."""
        order = self._cl_ids[account_id].get(cl_ord_id)
        return order is not None and order.is_open and order.cl_ord_id == cl_ord_id

    def _find(self, account_id: int, order_id: str | None, cl_ord_id: str | None) -> Order | None:
        if order_id:
            order = self.orders.get(order_id)
            return order if order and order.account == account_id else None
        if cl_ord_id:
            return self._cl_ids[account_id].get(cl_ord_id)
        return None

    def cancel_orders(
        self,
        account_id: int,
        order_ids: Iterable[str] = (),
        cl_ord_ids: Iterable[str] = (),
        text: str = "",
    ) -> list[Row]:
        rows: list[Row] = []
        touched: set[str] = set()
        targets = [(oid, None) for oid in order_ids] + [(None, cid) for cid in cl_ord_ids]
        for oid, cid in targets:
            order = self._find(account_id, oid, cid)
            if order is None:
                row: Row = {"orderID": oid, "clOrdID": cid or "", "error": "Not Found"}
                rows.append(row)
                continue
            if not order.is_open:
                row = order.row()
                row["error"] = f"Unable to cancel order due to existing state: {order.ord_status}"
                rows.append(row)
                continue
            self._cancel(order, text or "Canceled via API.")
            touched.add(order.symbol)
            rows.append(order.row())
        for sym in touched:
            self._after_change(account_id, self.instruments[sym])
        return rows

    def cancel_all(self, account_id: int, symbol: str | None = None, text: str = "") -> list[Row]:
        rows: list[Row] = []
        touched: set[str] = set()
        for order in list(self._by_account[account_id]):
            if order.is_open and (not symbol or order.symbol == symbol):
                self._cancel(order, text or "Canceled via API.")
                touched.add(order.symbol)
                rows.append(order.row())
        for sym in touched:
            self._after_change(account_id, self.instruments[sym])
        return rows

    def cancel_all_after(self, account_id: int, timeout_ms: int) -> Row:
        """The dead-man's switch, measured on the simulated clock."""
        acct = self.accounts[account_id]
        now = self.clock.now()
        if timeout_ms < 0:
            raise EngineError("Invalid timeout", name="ValidationError")
        if timeout_ms == 0:
            acct.cancel_at = None
            return {"now": iso(now), "cancelTime": None}
        acct.cancel_at = now + timedelta(milliseconds=timeout_ms)
        return {"now": iso(now), "cancelTime": iso(acct.cancel_at)}

    def amend_order(self, account_id: int, params: Row) -> Row:
        order = self._find(account_id, params.get("orderID"), params.get("origClOrdID"))
        if order is None:
            raise EngineError("Invalid orderID" if params.get("orderID") else "Invalid origClOrdID")
        if not order.is_open:
            raise EngineError("Invalid ordStatus")
        inst = self.instruments[order.symbol]
        new_cl = params.get("clOrdID")
        if new_cl:
            new_cl = str(new_cl)
            if len(new_cl) > 36:
                raise EngineError("Invalid clOrdID", name="ValidationError")
            if self._open_with_cl(account_id, new_cl):
                raise EngineError("Duplicate clOrdID")
        qty = order.order_qty
        if params.get("orderQty") is not None:
            qty = int(_dec(params["orderQty"], "orderQty"))
        elif params.get("leavesQty") is not None:
            qty = order.cum_qty + int(_dec(params["leavesQty"], "leavesQty"))
        if qty <= order.cum_qty or qty % inst.lot_size or qty > inst.max_order_qty:
            raise EngineError("Invalid orderQty")
        price = order.price
        if params.get("price") is not None:
            if order.price is None:
                raise EngineError("Invalid price")
            price = _dec(params["price"], "price")
            if price <= 0 or price % inst.tick_size:
                raise EngineError("Invalid price tickSize")
        stop_px = order.stop_px
        if params.get("stopPx") is not None:
            if order.stop_px is None:
                raise EngineError("Invalid stopPx")
            stop_px = _dec(params["stopPx"], "stopPx")
            if stop_px <= 0 or stop_px % inst.tick_size:
                raise EngineError("Invalid stopPx tickSize")
        order.order_qty = qty
        order.leaves_qty = qty - order.cum_qty
        order.price = price
        order.stop_px = stop_px
        if new_cl:
            order.cl_ord_id = new_cl
            self._cl_ids[account_id][new_cl] = order
        if params.get("text"):
            order.text = str(params["text"])
        now = self.clock.now()
        order.timestamp = now
        order.transact_time = now
        self._emit(
            "order",
            "update",
            [self._order_delta(order, ("orderQty", "leavesQty", "price", "stopPx", "text"))],
            account_id,
        )
        self._execution(order, "Replaced")
        if order.ord_type in STOP_TYPES and not order.triggered:
            self._check_triggers(inst, only=order)
        elif order.ord_type not in ("Market",):
            touch = inst.ask if order.side == "Buy" else inst.bid
            if order.price is not None and (
                order.price >= touch if order.side == "Buy" else order.price <= touch
            ):
                self._activate(order, inst)
        self._after_change(account_id, inst)
        return order.row()

    # ------------------------------------------------------------------- fills
    def _position(self, account_id: int, symbol: str) -> Position:
        key = (account_id, symbol)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position(account_id, symbol)
        return pos

    def _fill(self, order: Order, qty: int, px: Decimal, *, maker: bool) -> None:
        if qty <= 0:
            return
        inst = self.instruments[order.symbol]
        now = self.clock.now()
        pos = self._position(order.account, order.symbol)
        signed = qty * order.sign
        realised_gross = self._apply_to_position(pos, inst, signed, px)
        exec_cost = to_int(inst.value(signed, px))
        rate = MAKER_FEE if maker else TAKER_FEE
        comm = to_int(abs(Decimal(exec_cost)) * rate)
        acct = self.accounts[order.account]
        acct.wallet[inst.settl] += realised_gross - comm
        pos.realised += realised_gross - comm
        pos.timestamp = now
        order.cum_qty += qty
        order.leaves_qty -= qty
        order.notional += px * qty
        order.avg_px = inst.round_tick(order.notional / order.cum_qty) if not inst.is_inverse \
            else (order.notional / order.cum_qty).quantize(Q_AVG).normalize()
        order.ord_status = "Filled" if order.leaves_qty == 0 else "PartiallyFilled"
        order.timestamp = now
        order.transact_time = now
        if not order.is_open:
            self._open[order.symbol].pop(order.order_id, None)
        self._emit(
            "order",
            "update",
            [self._order_delta(order, ("ordStatus", "leavesQty", "cumQty", "avgPx",
                                       "workingIndicator"))],
            order.account,
        )
        self._execution(
            order, "Trade", last_qty=qty, last_px=px, exec_cost=exec_cost, exec_comm=comm,
            commission=rate, realised=realised_gross - comm,
            liquidity="AddedLiquidity" if maker else "RemovedLiquidity",
        )
        self._public_trade(inst, order.side, qty, px)

    def _apply_to_position(self, pos: Position, inst: Instrument, signed: int,
                           px: Decimal) -> int:
        """Add a fill to a position; returns the gross realised PnL (settlement units)."""
        if signed > 0:
            pos.exec_buy += signed
        else:
            pos.exec_sell += -signed
        realised = Decimal(0)
        if pos.qty != 0 and pos.qty * signed < 0:
            closing = min(abs(signed), abs(pos.qty)) * (1 if pos.qty > 0 else -1)
            closed_cost = pos.cost * Decimal(closing) / Decimal(pos.qty)
            realised = inst.value(closing, px) - closed_cost
            pos.cost -= closed_cost
            pos.qty -= closing
            signed += closing
            if pos.qty == 0:
                pos.cost = Decimal(0)
        if signed != 0:
            if pos.qty == 0:
                pos.realised = 0
                pos.realised_gross = 0
            pos.qty += signed
            pos.cost += inst.value(signed, px)
        gross = to_int(realised)
        pos.realised_gross += gross
        return gross

    def _execution(
        self,
        order: Order,
        exec_type: str,
        *,
        last_qty: int = 0,
        last_px: Decimal | None = None,
        exec_cost: int = 0,
        exec_comm: int = 0,
        commission: Decimal | None = None,
        realised: int = 0,
        liquidity: str = "",
    ) -> Row:
        now = self.clock.now()
        row = order.row()
        row.update(
            {
                "execID": str(uuid.uuid4()),
                "lastQty": last_qty,
                "lastPx": last_px,
                "lastLiquidityInd": liquidity,
                "execType": exec_type,
                "execCost": exec_cost,
                "execComm": exec_comm,
                "commission": commission,
                "homeNotional": None,
                "foreignNotional": None,
                "tradePublishIndicator": "PublishTrade" if last_qty else "",
                "trdMatchID": str(uuid.uuid4()) if last_qty else "00000000-0000-0000-0000-"
                "000000000000",
                "realisedPnl": realised,
                "timestamp": iso(now),
                "transactTime": iso(now),
            }
        )
        if last_qty and last_px is not None:
            inst = self.instruments[order.symbol]
            home, foreign = self._notionals(inst, last_qty * order.sign, last_px)
            row["homeNotional"] = home
            row["foreignNotional"] = foreign
        self.executions[order.account].append(row)
        self._emit("execution", "insert", [row], order.account)
        return row

    def _after_change(self, account_id: int, inst: Instrument) -> None:
        pos = self._position(account_id, inst.symbol)
        action = "update" if pos.created else "insert"
        pos.created = True
        self._emit("position", action, [self.position_row(pos)], account_id)
        self._emit("margin", "update", [self.margin_row(account_id, inst.settl)], account_id)
        self._emit("wallet", "update", [self.wallet_row(account_id, inst.settl)], account_id)

    # ------------------------------------------------------------------ margin
    def _im_rate(self, inst: Instrument, pos: Position) -> Decimal:
        if pos.leverage > 0:
            return max(Decimal(1) / pos.leverage, inst.init_margin)
        return inst.init_margin

    def _order_margin(self, order: Order, inst: Instrument, pos: Position, extra: bool = False
                      ) -> int:
        """Initial margin an order reserves; a reducing part reserves nothing."""
        if order.reduce_only or (order.ord_type in STOP_TYPES and not order.triggered and
                                 not extra):
            return 0
        qty = order.leaves_qty
        if pos.qty * order.sign < 0:
            qty = max(0, qty - abs(pos.qty))
        if qty == 0:
            return 0
        price = order.price or (inst.ask if order.side == "Buy" else inst.bid)
        if order.stop_px is not None and order.price is None:
            price = order.stop_px
        notional = abs(inst.value(qty, price))
        fee = notional * TAKER_FEE if extra else Decimal(0)
        return to_int(notional * self._im_rate(inst, pos) + fee)

    def _pos_figures(self, pos: Position, inst: Instrument) -> tuple[int, int, int, int]:
        """(markValue, unrealisedPnl, posMargin, maintMargin) of one position."""
        if pos.qty == 0:
            return 0, 0, 0, 0
        mark_value = to_int(inst.value(pos.qty, inst.mark))
        upnl = to_int(inst.value(pos.qty, inst.mark) - pos.cost)
        pos_margin = to_int(abs(pos.cost) * self._im_rate(inst, pos))
        maint = to_int(abs(Decimal(mark_value)) * inst.maint_margin)
        return mark_value, upnl, pos_margin, maint

    def margin_row(self, account_id: int, currency: str) -> Row:
        acct = self.accounts[account_id]
        wallet = acct.wallet.get(currency, 0)
        upnl = pos_margin = maint = order_margin = 0
        for (acc, sym), pos in self.positions.items():
            inst = self.instruments[sym]
            if acc != account_id or inst.settl != currency:
                continue
            _, u, pm, mm = self._pos_figures(pos, inst)
            upnl += u
            pos_margin += pm
            maint += mm
        for order in self._by_account[account_id]:
            if order.is_open and order.settl == currency:
                inst = self.instruments[order.symbol]
                order_margin += self._order_margin(
                    order, inst, self._position(account_id, order.symbol)
                )
        margin_balance = wallet + upnl
        available = max(0, margin_balance - pos_margin - order_margin)
        now = iso(self.clock.now())
        return {
            "account": account_id,
            "currency": currency,
            "riskLimit": 1000000000000,
            "amount": wallet,
            "prevRealisedPnl": 0,
            "grossComm": 0,
            "grossOpenCost": order_margin,
            "grossOpenPremium": 0,
            "grossExecCost": 0,
            "grossMarkValue": 0,
            "riskValue": 0,
            "initMargin": order_margin,
            "maintMargin": maint,
            "targetExcessMargin": 0,
            "realisedPnl": wallet - acct.deposited.get(currency, 0),
            "unrealisedPnl": upnl,
            "walletBalance": wallet,
            "marginBalance": margin_balance,
            "marginLeverage": 0,
            "marginUsedPcnt": 0,
            "excessMargin": available,
            "availableMargin": available,
            "withdrawableMargin": max(0, min(available, wallet)),
            "makerFeeDiscount": None,
            "takerFeeDiscount": None,
            "timestamp": now,
        }

    def margins(self, account_id: int) -> list[Row]:
        return [self.margin_row(account_id, c) for c in self.accounts[account_id].wallet]

    def wallet_row(self, account_id: int, currency: str) -> Row:
        acct = self.accounts[account_id]
        return {
            "account": account_id,
            "currency": currency,
            "deposited": acct.deposited.get(currency, 0),
            "withdrawn": 0,
            "transferIn": 0,
            "transferOut": 0,
            "amount": acct.wallet.get(currency, 0),
            "pendingCredit": 0,
            "pendingDebit": 0,
            "confirmedDebit": 0,
            "timestamp": iso(self.clock.now()),
        }

    def _notionals(self, inst: Instrument, qty: int, price: Decimal) -> tuple[Decimal, Decimal]:
        """(homeNotional, foreignNotional) with BitMEX's signs: long = +home, -foreign."""
        if inst.is_inverse:
            home = Decimal(qty) / price
            return home.quantize(Decimal("1e-8")), Decimal(-qty)
        if inst.is_quanto:
            # Quanto: the underlying is ETH; 1 contract tracks price*multiplier XBt.
            home = Decimal(qty) * inst.multiplier * price / Decimal(100000000) / price
            return home.quantize(Decimal("1e-8")), -(home * price).quantize(Decimal("1e-8"))
        u2p = Decimal(inst.underlying_to_position or 1)
        home = Decimal(qty) / u2p
        return home, -(home * price)

    def _liq_prices(self, pos: Position, inst: Instrument) -> tuple[Decimal | None,
                                                                  Decimal | None]:
        if pos.qty == 0 or pos.cost == 0:
            return None, None
        entry = self._avg_entry(pos, inst)
        mm = inst.maint_margin
        if pos.leverage > 0:
            im = self._im_rate(inst, pos)
        else:
            im = self._cross_backing(pos, inst) / abs(pos.cost)
            im = max(im, mm)
        long = pos.qty > 0
        if inst.is_inverse:
            if long:
                liq, bk = entry / (1 + im - mm), entry / (1 + im)
            else:
                liq = entry / (1 - im + mm) if 1 - im + mm > 0 else PRICE_CAP
                bk = entry / (1 - im) if 1 - im > 0 else PRICE_CAP
        elif long:
            liq, bk = entry * (1 - im + mm), entry * (1 - im)
        else:
            liq, bk = entry * (1 + im - mm), entry * (1 + im)
        liq = min(max(inst.round_tick(liq), inst.tick_size), PRICE_CAP)
        bk = min(max(inst.round_tick(bk), inst.tick_size), PRICE_CAP)
        return liq, bk

    def _cross_backing(self, pos: Position, inst: Instrument) -> Decimal:
        acct = self.accounts[pos.account]
        backing = Decimal(acct.wallet.get(inst.settl, 0))
        for (acc, sym), other in self.positions.items():
            other_inst = self.instruments[sym]
            if acc != pos.account or other_inst.settl != inst.settl or other is pos:
                continue
            backing -= self._pos_figures(other, other_inst)[2]
        for order in self._by_account[pos.account]:
            if order.is_open and order.settl == inst.settl:
                backing -= self._order_margin(
                    order, self.instruments[order.symbol],
                    self._position(pos.account, order.symbol),
                )
        return max(backing, Decimal(0))

    def _avg_entry(self, pos: Position, inst: Instrument) -> Decimal:
        if inst.is_inverse:
            return Decimal(pos.qty) * inst.multiplier / pos.cost
        return pos.cost / (Decimal(pos.qty) * inst.multiplier)

    def position_row(self, pos: Position) -> Row:
        inst = self.instruments[pos.symbol]
        mark_value, upnl, pos_margin, maint = self._pos_figures(pos, inst)
        is_open = pos.qty != 0
        entry = self._avg_entry(pos, inst).quantize(Q_AVG).normalize() if is_open else None
        liq, bk = self._liq_prices(pos, inst)
        home, foreign = self._notionals(inst, pos.qty, inst.mark) if is_open else (Decimal(0),
                                                                                  Decimal(0))
        buy_q = sum(o.leaves_qty for o in self._open[pos.symbol].values()
                    if o.account == pos.account and o.side == "Buy" and o.working)
        sell_q = sum(o.leaves_qty for o in self._open[pos.symbol].values()
                     if o.account == pos.account and o.side == "Sell" and o.working)
        cost = to_int(pos.cost)
        roe = (Decimal(upnl) / pos_margin).quantize(Q_AVG) if pos_margin else Decimal(0)
        pcnt = (Decimal(upnl) / abs(cost)).quantize(Q_AVG) if cost else Decimal(0)
        leverage = pos.leverage if pos.leverage > 0 else Decimal(1) / inst.init_margin
        return {
            "account": pos.account,
            "symbol": pos.symbol,
            "currency": inst.settl,
            "underlying": inst.root,
            "quoteCurrency": inst.quote,
            "commission": TAKER_FEE,
            "initMarginReq": self._im_rate(inst, pos),
            "maintMarginReq": inst.maint_margin,
            "riskLimit": 20000000000,
            "leverage": leverage.normalize(),
            "crossMargin": pos.leverage == 0,
            "deleveragePercentile": 1 if is_open else None,
            "rebalancedPnl": 0,
            "prevRealisedPnl": 0,
            "openOrderBuyQty": buy_q,
            "openOrderSellQty": sell_q,
            "currentQty": pos.qty,
            "currentCost": cost,
            "realisedCost": 0,
            "unrealisedCost": cost,
            "isOpen": is_open,
            "markPrice": inst.mark if is_open else None,
            "markValue": mark_value,
            "riskValue": abs(mark_value),
            "homeNotional": home,
            "foreignNotional": foreign,
            "posCost": cost,
            "posComm": 0,
            "posMargin": pos_margin,
            "posMaint": maint,
            "initMargin": 0,
            "maintMargin": maint if pos.leverage == 0 else pos_margin,
            "realisedPnl": pos.realised,
            "unrealisedPnl": upnl,
            "unrealisedPnlPcnt": pcnt,
            "unrealisedRoePcnt": roe,
            "avgCostPrice": entry,
            "avgEntryPrice": entry,
            "breakEvenPrice": entry,
            "marginCallPrice": liq,
            "liquidationPrice": liq,
            "bankruptPrice": bk,
            "timestamp": iso(pos.timestamp or self.clock.now()),
        }

    def position_rows(self, account_id: int) -> list[Row]:
        return [self.position_row(p) for (acc, _), p in self.positions.items()
                if acc == account_id]

    def set_leverage(self, account_id: int, symbol: str, leverage: Any) -> Row:
        inst = self.instrument(symbol)
        lev = _dec(leverage, "leverage")
        if lev < 0 or (lev > 0 and (lev < Decimal("0.01") or lev > 1 / inst.init_margin)):
            raise EngineError("Invalid leverage")
        pos = self._position(account_id, inst.symbol)
        old = pos.leverage
        pos.leverage = lev
        if pos.qty:
            margin = self.margin_row(account_id, inst.settl)
            if margin["availableMargin"] <= 0 and lev > old:
                pos.leverage = old
                raise EngineError("Account has insufficient Available Balance")
        pos.timestamp = self.clock.now()
        self._after_change(account_id, inst)
        return self.position_row(pos)

    # ------------------------------------------------------------- liquidation
    def _check_liquidations(self, inst: Instrument) -> None:
        for (_, sym), pos in list(self.positions.items()):
            if sym != inst.symbol or pos.qty == 0:
                continue
            liq, bk = self._liq_prices(pos, inst)
            if liq is None or bk is None:
                continue
            if (pos.qty > 0 and inst.mark <= liq) or (pos.qty < 0 and inst.mark >= liq):
                self._liquidate(pos, inst, bk)

    def _liquidate(self, pos: Position, inst: Instrument, bankrupt: Decimal) -> None:
        """Close at the bankruptcy price: the account loses the position's margin."""
        acc = pos.account
        for order in list(self._open[inst.symbol].values()):
            if order.account == acc:
                self._cancel(order, "Canceled: Liquidation")
        now = self.clock.now()
        side = "Sell" if pos.qty > 0 else "Buy"
        qty = abs(pos.qty)
        order = Order(
            order_id=str(uuid.uuid4()), cl_ord_id="", account=acc, symbol=inst.symbol,
            side=side, order_qty=qty, price=bankrupt, stop_px=None, ord_type="Limit",
            time_in_force="ImmediateOrCancel", exec_inst="Close", currency=inst.quote,
            settl=inst.settl, text="Liquidation", created=now, leaves_qty=qty,
            transact_time=now, timestamp=now,
        )
        self.orders[order.order_id] = order
        self._by_account[acc].append(order)
        self._open[inst.symbol][order.order_id] = order
        self._emit("order", "insert", [order.row()], acc)
        self._emit_liquidation(inst, side, qty, bankrupt, order.order_id)
        signed = qty * order.sign
        realised = self._apply_to_position(pos, inst, signed, bankrupt)
        account = self.accounts[acc]
        account.wallet[inst.settl] = max(0, account.wallet[inst.settl] + realised)
        pos.realised += realised
        pos.timestamp = now
        order.cum_qty = qty
        order.leaves_qty = 0
        order.notional = bankrupt * qty
        order.avg_px = bankrupt
        order.ord_status = "Filled"
        self._open[inst.symbol].pop(order.order_id, None)
        self._emit("order", "update", [order.row()], acc)
        self._execution(
            order, "Trade", last_qty=qty, last_px=bankrupt,
            exec_cost=to_int(inst.value(signed, bankrupt)), commission=Decimal(0),
            realised=realised, liquidity="RemovedLiquidity",
        )
        self._after_change(acc, inst)

    def liquidate_market(
        self, symbol: str, side: str, qty: int, price: Decimal | int | str,
        duration: float = 2.0,
    ) -> Row:
        """Inject a public liquidation (someone else's) into the `liquidation` feed."""
        inst = self.instrument(symbol)
        return self._emit_liquidation(inst, side, qty, Decimal(str(price)), str(uuid.uuid4()),
                                      duration)

    def _emit_liquidation(self, inst: Instrument, side: str, qty: int, price: Decimal,
                          order_id: str, duration: float = 2.0) -> Row:
        row: Row = {"orderID": order_id, "symbol": inst.symbol, "side": side,
                    "price": inst.round_tick(price), "leavesQty": qty}
        self.liquidations[order_id] = row
        self._emit("liquidation", "insert", [dict(row)])
        now = self.clock.now()
        self._liq_schedule.append((now + timedelta(seconds=duration / 2), order_id, "update"))
        self._liq_schedule.append((now + timedelta(seconds=duration), order_id, "delete"))
        return dict(row)

    def _run_liquidation_feed(self, now: datetime) -> None:
        due = [item for item in self._liq_schedule if item[0] <= now]
        if not due:
            return
        self._liq_schedule = [item for item in self._liq_schedule if item[0] > now]
        for _, order_id, action in sorted(due, key=lambda item: item[0]):
            row = self.liquidations.get(order_id)
            if row is None:
                continue
            inst = self.instruments[row["symbol"]]
            if action == "update":
                left = (row["leavesQty"] // 2 // inst.lot_size) * inst.lot_size
                if left <= 0 or left == row["leavesQty"]:
                    continue
                taken = row["leavesQty"] - left
                row["leavesQty"] = left
                self._emit("liquidation", "update",
                           [{"orderID": order_id, "symbol": row["symbol"], "leavesQty": left}])
                self._public_trade(inst, row["side"], taken, row["price"])
            else:
                del self.liquidations[order_id]
                self._emit("liquidation", "delete",
                           [{"orderID": order_id, "symbol": row["symbol"]}])

    # -------------------------------------------------------------------- time
    def tick(self) -> None:
        """Run everything due at the clock's current time (funding, dead-man, feeds)."""
        now = self.clock.now()
        for acct in self.accounts.values():
            if acct.cancel_at is not None and now >= acct.cancel_at:
                acct.cancel_at = None
                self.cancel_all(acct.id, text="Canceled: Cancel all after triggered")
        for inst in self.instruments.values():
            if inst.expiry is not None and inst.state == "Open" and now >= inst.expiry:
                self._settle_future(inst)
            while inst.is_perpetual and now >= inst.funding_ts:
                self._funding(inst, inst.funding_ts)
                inst.funding_ts += FUNDING_INTERVAL
                self._emit("instrument", "update",
                           [self._instrument_delta(inst, ("fundingTimestamp", "fundingRate"))])
        if now - self._last_time >= timedelta(hours=24):
            for inst in self.instruments.values():
                inst.prev_price_24h = inst.last
                inst.volume_24h = 0
            self._last_time = now
        self._run_liquidation_feed(now)

    def _settle_future(self, inst: Instrument) -> None:
        """Expiry: open orders cancelled, positions closed at the mark, state Settled."""
        assert inst.expiry is not None
        for order in list(self._open[inst.symbol].values()):
            self._cancel(order, "Canceled: Instrument settled")
        inst.state = "Settled"
        for (acc, sym), pos in list(self.positions.items()):
            if sym != inst.symbol or pos.qty == 0:
                continue
            qty = pos.qty
            gross = self._apply_to_position(pos, inst, -qty, inst.mark)
            self.accounts[acc].wallet[inst.settl] += gross
            pos.realised += gross
            pos.timestamp = inst.expiry
            row = {
                "execID": str(uuid.uuid4()), "orderID": "00000000-0000-0000-0000-000000000000",
                "clOrdID": "", "account": acc, "symbol": sym, "side": "Sell" if qty > 0 else "Buy",
                "lastQty": abs(qty), "lastPx": inst.mark, "price": inst.mark,
                "orderQty": abs(qty), "ordType": "Settlement", "execType": "Settlement",
                "ordStatus": "Filled", "execInst": "", "timeInForce": "", "leavesQty": 0,
                "cumQty": abs(qty), "avgPx": inst.mark,
                "execCost": to_int(inst.value(-qty, inst.mark)), "execComm": 0,
                "commission": Decimal(0), "realisedPnl": gross, "currency": inst.quote,
                "settlCurrency": inst.settl, "text": "Settlement", "lastLiquidityInd": "",
                "trdMatchID": str(uuid.uuid4()), "transactTime": iso(inst.expiry),
                "timestamp": iso(inst.expiry),
            }
            self.executions[acc].append(row)
            self._emit("execution", "insert", [row], acc)
            self._after_change(acc, inst)
        self._emit("instrument", "update", [self._instrument_delta(inst, ("state",))])

    def active_instruments(self) -> list[Instrument]:
        """What /instrument/active lists: open ones and those expired within 24 hours."""
        now = self.clock.now()
        return [i for i in self.instruments.values()
                if i.state == "Open" or (i.expiry is not None
                                         and now - i.expiry < timedelta(hours=24))]

    def _funding(self, inst: Instrument, when: datetime) -> None:
        rate = inst.funding_rate
        row = {"timestamp": iso(when), "symbol": inst.symbol, "fundingInterval":
               "2000-01-01T08:00:00.000Z", "fundingRate": rate, "fundingRateDaily": rate * 3}
        self.fundings.append(row)
        self._emit("funding", "insert", [row])
        for (acc, sym), pos in list(self.positions.items()):
            if sym != inst.symbol or pos.qty == 0:
                continue
            mark_value = to_int(inst.value(pos.qty, inst.mark))
            # Longs pay shorts when the rate is positive, whatever the contract's sign.
            payment = to_int(abs(Decimal(mark_value)) * rate) * (1 if pos.qty > 0 else -1)
            self.accounts[acc].wallet[inst.settl] -= payment
            pos.realised -= payment
            pos.timestamp = when
            now = when
            execution = {
                "execID": str(uuid.uuid4()), "orderID": "00000000-0000-0000-0000-000000000000",
                "clOrdID": "", "account": acc, "symbol": sym,
                "side": "", "lastQty": pos.qty, "lastPx": inst.mark, "price": inst.mark,
                "orderQty": pos.qty, "ordType": "Funding", "execType": "Funding",
                "ordStatus": "Filled", "execInst": "", "timeInForce": "",
                "leavesQty": 0, "cumQty": pos.qty, "avgPx": inst.mark,
                "execCost": mark_value, "execComm": payment, "commission": rate,
                "realisedPnl": -payment, "currency": inst.quote, "settlCurrency": inst.settl,
                "text": "Funding", "lastLiquidityInd": "", "homeNotional": None,
                "foreignNotional": None, "trdMatchID": str(uuid.uuid4()),
                "transactTime": iso(now), "timestamp": iso(now),
            }
            self.executions[acc].append(execution)
            self._emit("execution", "insert", [execution], acc)
            self._after_change(acc, inst)

    # ----------------------------------------------------------------- queries
    def order_rows(self, account_id: int) -> list[Row]:
        return [o.row() for o in self._by_account[account_id]]

    def open_order_rows(self, account_id: int) -> list[Row]:
        return [o.row() for o in self._by_account[account_id] if o.is_open]

    def execution_rows(self, account_id: int) -> list[Row]:
        return list(self.executions[account_id])

    def trade_history(self, account_id: int) -> list[Row]:
        return [r for r in self.executions[account_id] if r["execType"] in ("Trade", "Funding")]


def next_funding(now: datetime) -> datetime:
    """The next of 04:00, 12:00, 20:00 UTC strictly after `now`."""
    base = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for hours in range(25):
        candidate = base + timedelta(hours=hours)
        if candidate > now and candidate.hour in (4, 12, 20):
            return candidate
    raise AssertionError("unreachable")


class PriceDriver:
    """Seedable random walk of every instrument, with occasional market liquidations.

    `step()` is synchronous for tests; `run()` is the sandbox's background loop.
    Floats are only the random source; prices become Decimal on the tick grid.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        symbols: Iterable[str] | None = None,
        volatility: float = 0.0005,
        interval: float = 1.0,
        seed: int | None = None,
        liquidation_chance: float = 0.05,
    ) -> None:
        self.engine = engine
        self.symbols = list(symbols or engine.instruments)
        self.volatility = volatility
        self.interval = interval
        self.liquidation_chance = liquidation_chance
        self.rng = random.Random(seed)
        self._running = False

    def step(self) -> None:
        for symbol in self.symbols:
            inst = self.engine.instruments[symbol]
            if not inst.tradeable:
                continue  # a settled future's price is final
            move = Decimal(str(round(self.rng.gauss(0.0, self.volatility), 8)))
            price = min(inst.mark * (1 + move), inst.max_price)
            size = self.rng.randint(1, 50) * inst.lot_size
            self.engine.set_mark(symbol, price, trade_size=size)
            # Only margined contracts are liquidated; a spot pair has no positions to lose.
            if inst.settl and self.rng.random() < self.liquidation_chance:
                side = self.rng.choice(("Buy", "Sell"))
                qty = self.rng.randint(1, 200) * inst.lot_size
                self.engine.liquidate_market(symbol, side, qty, inst.mark)

    async def run(self) -> None:
        import asyncio

        self._running = True
        while self._running:
            self.step()
            self.engine.tick()
            await asyncio.sleep(self.interval)

    def stop(self) -> None:
        self._running = False
