"""Typed results of the exchange boundary and the `Exchange` protocol.

Rows from BitMEX are parsed with `parse_float=Decimal`, so prices arrive here as
Decimal and money as int (XBt / USDt); nothing in this module uses float.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

from bot.side import Side

Kind = Literal["inverse", "quanto", "linear"]
# Perpetual swaps, futures and stock perpetuals: margined contracts the bot can size.
TRADEABLE_TYPES = ("FFWCSX", "FFCCSX", "FFSCSX")

# Smallest unit per currency as BitMEX names them, and the display name. XBt and USDt
# are known up front (every contract settles in one); the rest (BMEx, USDc, ...) come
# from GET /wallet/assets through `register_assets`.
CURRENCY_SCALE: dict[str, tuple[int, str]] = {
    "XBt": (100_000_000, "XBT"),
    "USDt": (1_000_000, "USDT"),
}


def register_assets(rows: Sequence[Mapping[str, Any]]) -> None:
    """Learn each currency's scale from /wallet/assets rows (`scale` = decimals)."""
    for row in rows:
        currency, scale = row.get("currency"), row.get("scale")
        if not isinstance(currency, str) or not currency or scale is None:
            continue
        try:
            decimals = int(Decimal(str(scale)))
        except ArithmeticError:
            continue
        if not 0 <= decimals <= 18:
            continue
        name = str(row.get("majorCurrency") or row.get("asset") or currency).upper()
        CURRENCY_SCALE[currency] = (10**decimals, name)


def known_currency(currency: str) -> bool:
    return currency in CURRENCY_SCALE


def to_unit(amount: int | Decimal, currency: str) -> Decimal:
    """Exchange units (XBt, USDt) -> coin amount (XBT, USDT) as an exact Decimal."""
    scale, _ = CURRENCY_SCALE.get(currency, (1, currency))
    return Decimal(amount) / Decimal(scale)


def from_unit(amount: Decimal, currency: str) -> int:
    """Coin amount -> integer exchange units, truncated toward zero (never over-spend)."""
    scale, _ = CURRENCY_SCALE.get(currency, (1, currency))
    return int(amount * scale)


def display_currency(currency: str) -> str:
    return CURRENCY_SCALE.get(currency, (1, currency))[1]


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def format_money(amount: int | Decimal, currency: str) -> str:
    """102000 XBt -> "0.00102 XBT"; 12340000 USDt -> "12.34 USDT"."""
    return f"{_plain(to_unit(amount, currency))} {display_currency(currency)}"


def format_price(price: Decimal | None) -> str:
    return "-" if price is None else _plain(price)


# --- row parsing helpers -------------------------------------------------------


def _dec(row: Mapping[str, Any], key: str) -> Decimal | None:
    value = row.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        # Only reached when a caller parsed JSON without parse_float=Decimal:
        # repr() round-trips the shortest decimal, which is what was on the wire.
        return Decimal(repr(value))
    return Decimal(str(value))


def _dec0(row: Mapping[str, Any], key: str) -> Decimal:
    value = _dec(row, key)
    return Decimal(0) if value is None else value


def _int(row: Mapping[str, Any], key: str) -> int:
    value = row.get(key)
    if value is None or value == "":
        return 0
    return int(value)


def _str(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value)


def parse_time(value: Any) -> datetime | None:
    """BitMEX timestamps ("2020-08-03T12:01:01.246Z") -> aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    """Aware datetime -> BitMEX wire format (ms precision, Z)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# --- results -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    kind: Kind
    state: str
    typ: str
    tick_size: Decimal
    lot_size: Decimal
    multiplier: Decimal
    settl_currency: str
    underlying: str
    quote_currency: str
    underlying_to_position_multiplier: Decimal | None
    quote_to_settle_multiplier: Decimal | None
    init_margin: Decimal
    maint_margin: Decimal
    max_order_qty: Decimal
    last_price: Decimal | None
    mark_price: Decimal | None
    bid_price: Decimal | None
    ask_price: Decimal | None
    index_price: Decimal | None
    funding_rate: Decimal | None
    timestamp: datetime | None = None
    prev_price_24h: Decimal | None = None  # the 24 h change's reference, as BitMEX sends it

    @property
    def is_perpetual(self) -> bool:
        return self.typ == "FFWCSX"

    @property
    def refusal(self) -> str | None:
        """Why the bot will not trade this instrument, or None when it will.

        /instrument/active also lists spot pairs, prediction markets and futures that
        expired within the last day; their maths (or their absence of a margin wallet)
        is not what the bot's sizing and cards assume.
        """
        if self.typ == "FFCCSX" and self.state != "Open":
            return f"{self.symbol} is a future that has expired ({self.state.lower()})"
        if self.state != "Open":
            return f"{self.symbol} is not open for trading ({self.state.lower()})"
        if self.typ == "FFICSX":
            return f"{self.symbol} is a prediction market (priced 0–100), which I don't trade"
        if self.typ.startswith("IF") or not self.settl_currency:
            return f"{self.symbol} is a spot pair; I only trade futures and perpetual swaps"
        if self.typ not in TRADEABLE_TYPES:
            return f"{self.symbol} is a kind of contract I don't trade ({self.typ})"
        return None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Instrument:
        if row.get("isInverse"):
            kind: Kind = "inverse"
        elif row.get("isQuanto"):
            kind = "quanto"
        else:
            kind = "linear"
        return cls(
            symbol=_str(row, "symbol"),
            kind=kind,
            state=_str(row, "state"),
            typ=_str(row, "typ"),
            tick_size=_dec0(row, "tickSize"),
            lot_size=_dec(row, "lotSize") or Decimal(1),
            multiplier=_dec0(row, "multiplier"),
            settl_currency=_str(row, "settlCurrency"),
            underlying=_str(row, "underlying"),
            quote_currency=_str(row, "quoteCurrency"),
            underlying_to_position_multiplier=_dec(row, "underlyingToPositionMultiplier"),
            quote_to_settle_multiplier=_dec(row, "quoteToSettleMultiplier"),
            init_margin=_dec0(row, "initMargin"),
            maint_margin=_dec0(row, "maintMargin"),
            max_order_qty=_dec0(row, "maxOrderQty"),
            last_price=_dec(row, "lastPrice"),
            mark_price=_dec(row, "markPrice"),
            bid_price=_dec(row, "bidPrice"),
            ask_price=_dec(row, "askPrice"),
            # BitMEX dropped `indexPrice` from instruments in 2023; the indicative settle
            # price is the index the mark is built on.
            index_price=_dec(row, "indicativeSettlePrice") or _dec(row, "fairPrice"),
            funding_rate=_dec(row, "fundingRate"),
            timestamp=parse_time(row.get("timestamp")),
            prev_price_24h=_dec(row, "prevPrice24h"),
        )


@dataclass(frozen=True, slots=True)
class Ticker:
    symbol: str
    last: Decimal | None
    bid: Decimal | None
    ask: Decimal | None
    mark: Decimal | None
    index: Decimal | None
    funding_rate: Decimal | None
    timestamp: datetime | None

    @classmethod
    def from_instrument(cls, inst: Instrument) -> Ticker:
        return cls(
            symbol=inst.symbol, last=inst.last_price, bid=inst.bid_price, ask=inst.ask_price,
            mark=inst.mark_price, index=inst.index_price, funding_rate=inst.funding_rate,
            timestamp=inst.timestamp,
        )


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    cl_ord_id: str
    symbol: str
    side: str
    order_qty: Decimal
    price: Decimal | None
    stop_px: Decimal | None
    ord_type: str
    time_in_force: str
    exec_inst: tuple[str, ...]
    ord_status: str
    leaves_qty: Decimal
    cum_qty: Decimal
    avg_px: Decimal | None
    text: str
    account: int = 0
    timestamp: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.ord_status in ("New", "PartiallyFilled", "Untriggered", "Triggered")

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Order:
        inst = _str(row, "execInst")
        return cls(
            order_id=_str(row, "orderID"),
            cl_ord_id=_str(row, "clOrdID"),
            symbol=_str(row, "symbol"),
            side=_str(row, "side"),
            order_qty=_dec0(row, "orderQty"),
            price=_dec(row, "price"),
            stop_px=_dec(row, "stopPx"),
            ord_type=_str(row, "ordType"),
            time_in_force=_str(row, "timeInForce"),
            exec_inst=tuple(x for x in inst.split(",") if x),
            ord_status=_str(row, "ordStatus"),
            leaves_qty=_dec0(row, "leavesQty"),
            cum_qty=_dec0(row, "cumQty"),
            avg_px=_dec(row, "avgPx"),
            text=_str(row, "text"),
            account=_int(row, "account"),
            timestamp=parse_time(row.get("transactTime") or row.get("timestamp")),
        )


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill (execType Trade) or other execution report row."""

    exec_id: str
    order_id: str
    cl_ord_id: str
    symbol: str
    side: str
    last_qty: Decimal
    last_px: Decimal | None
    exec_type: str
    ord_type: str
    ord_status: str
    exec_cost: int
    exec_comm: int
    realised_pnl: int
    settl_currency: str
    text: str
    account: int = 0
    timestamp: datetime | None = None

    @property
    def is_fill(self) -> bool:
        return self.exec_type == "Trade" and self.last_qty != 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Execution:
        return cls(
            exec_id=_str(row, "execID"),
            order_id=_str(row, "orderID"),
            cl_ord_id=_str(row, "clOrdID"),
            symbol=_str(row, "symbol"),
            side=_str(row, "side"),
            last_qty=_dec0(row, "lastQty"),
            last_px=_dec(row, "lastPx"),
            exec_type=_str(row, "execType"),
            ord_type=_str(row, "ordType"),
            ord_status=_str(row, "ordStatus"),
            exec_cost=_int(row, "execCost"),
            exec_comm=_int(row, "execComm"),
            realised_pnl=_int(row, "realisedPnl"),
            settl_currency=_str(row, "settlCurrency") or _str(row, "currency"),
            text=_str(row, "text"),
            account=_int(row, "account"),
            timestamp=parse_time(row.get("transactTime") or row.get("timestamp")),
        )


@dataclass(frozen=True, slots=True)
class Position:
    account: int
    symbol: str
    currency: str
    current_qty: Decimal
    avg_entry_price: Decimal | None
    mark_price: Decimal | None
    liquidation_price: Decimal | None
    bankrupt_price: Decimal | None
    leverage: Decimal
    cross_margin: bool
    unrealised_pnl: int
    realised_pnl: int
    pos_margin: int
    maint_margin: int
    is_open: bool
    home_notional: Decimal | None
    foreign_notional: Decimal | None
    timestamp: datetime | None = None

    @property
    def side(self) -> str:
        return "Long" if self.current_qty > 0 else "Short" if self.current_qty < 0 else "Flat"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Position:
        qty = _dec0(row, "currentQty")
        return cls(
            account=_int(row, "account"),
            symbol=_str(row, "symbol"),
            currency=_str(row, "currency"),
            current_qty=qty,
            avg_entry_price=_dec(row, "avgEntryPrice"),
            mark_price=_dec(row, "markPrice"),
            liquidation_price=_dec(row, "liquidationPrice"),
            bankrupt_price=_dec(row, "bankruptPrice"),
            leverage=_dec0(row, "leverage"),
            cross_margin=bool(row.get("crossMargin")),
            unrealised_pnl=_int(row, "unrealisedPnl"),
            realised_pnl=_int(row, "realisedPnl"),
            pos_margin=_int(row, "posMargin"),
            maint_margin=_int(row, "maintMargin"),
            is_open=bool(row.get("isOpen", qty != 0)),
            home_notional=_dec(row, "homeNotional"),
            foreign_notional=_dec(row, "foreignNotional"),
            timestamp=parse_time(row.get("timestamp")),
        )


@dataclass(frozen=True, slots=True)
class Margin:
    """Money in integer exchange units of `currency` (XBt, USDt)."""

    account: int
    currency: str
    wallet_balance: int
    margin_balance: int
    available_margin: int
    unrealised_pnl: int
    maint_margin: int
    withdrawable_margin: int
    timestamp: datetime | None = None

    def show(self, amount: int) -> str:
        return format_money(amount, self.currency)

    @property
    def available_display(self) -> str:
        return format_money(self.available_margin, self.currency)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Margin:
        return cls(
            account=_int(row, "account"),
            currency=_str(row, "currency"),
            wallet_balance=_int(row, "walletBalance"),
            margin_balance=_int(row, "marginBalance"),
            available_margin=_int(row, "availableMargin"),
            unrealised_pnl=_int(row, "unrealisedPnl"),
            maint_margin=_int(row, "maintMargin"),
            withdrawable_margin=_int(row, "withdrawableMargin"),
            timestamp=parse_time(row.get("timestamp")),
        )


# A binding to these is no binding at all.
_ANY_IP = ("", "0.0.0.0/0", "::/0")


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    key_id: str
    permissions: tuple[str, ...]
    enabled: bool
    name: str = ""
    ip_binding: tuple[str, ...] = ()  # the CIDRs the key may be used from; () = anywhere

    @property
    def can_trade(self) -> bool:
        return "order" in self.permissions

    @property
    def can_withdraw(self) -> bool:
        return "withdraw" in self.permissions

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ApiKeyInfo:
        perms: list[str] = []
        for p in row.get("permissions") or []:
            # Real BitMEX has sent both plain strings and {"name": ...} objects.
            perms.append(str(p.get("name", "")) if isinstance(p, Mapping) else str(p))
        cidrs = [str(row.get("cidr") or "")]
        cidrs += [str(c) for c in row.get("cidrs") or [] if isinstance(c, str)]
        binding = tuple(dict.fromkeys(c.strip() for c in cidrs if c.strip() not in _ANY_IP))
        return cls(
            key_id=_str(row, "id"),
            permissions=tuple(perms),
            # Fail closed: a row that does not say the key is enabled is not trusted.
            enabled=row.get("enabled") is True,
            name=_str(row, "name"),
            ip_binding=binding,
        )


@dataclass(frozen=True, slots=True)
class Candle:
    """A trade bucket; BitMEX stamps a bucket with its END time."""

    symbol: str
    timestamp: datetime
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    close: Decimal | None
    volume: Decimal
    trades: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Candle:
        ts = parse_time(row.get("timestamp"))
        if ts is None:
            raise ValueError("bucket without timestamp")
        return cls(
            symbol=_str(row, "symbol"),
            timestamp=ts,
            open=_dec(row, "open"),
            high=_dec(row, "high"),
            low=_dec(row, "low"),
            close=_dec(row, "close"),
            volume=_dec0(row, "volume"),
            trades=_int(row, "trades"),
        )


@dataclass(frozen=True, slots=True)
class CancelResult:
    """One row of a cancel answer: `error` set when that order could not be cancelled."""

    order_id: str
    cl_ord_id: str
    error: str | None
    order: Order | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Liquidation:
    order_id: str
    symbol: str
    side: str
    price: Decimal | None
    leaves_qty: Decimal
    action: str  # partial | insert | update | delete

    @classmethod
    def from_row(cls, row: Mapping[str, Any], action: str) -> Liquidation:
        return cls(
            order_id=_str(row, "orderID"),
            symbol=_str(row, "symbol"),
            side=_str(row, "side"),
            price=_dec(row, "price"),
            leaves_qty=_dec0(row, "leavesQty"),
            action=action,
        )


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What the caller asked for; kept to settle an unknown outcome by clOrdID."""

    symbol: str
    side: str
    qty: Decimal | int | None
    ord_type: str = "Limit"
    price: Decimal | None = None
    stop_px: Decimal | None = None
    time_in_force: str | None = None
    exec_inst: Sequence[str] = field(default_factory=tuple)
    cl_ord_id: str | None = None
    text: str | None = None


@runtime_checkable
class Exchange(Protocol):
    """Every call the bot makes on an account; BitmexClient and PaperExchange both fit."""

    async def instruments(self, *, refresh: bool = False) -> list[Instrument]: ...

    async def instrument(self, symbol: str) -> Instrument: ...

    async def round_price(self, symbol: str, price: Decimal) -> Decimal: ...

    async def round_qty(self, symbol: str, qty: Decimal) -> Decimal: ...

    async def ticker(self, symbol: str) -> Ticker: ...

    async def place_order(
        self,
        symbol: str,
        side: Side,
        qty: Decimal | int | None,
        ord_type: str = "Limit",
        price: Decimal | None = None,
        *,
        stop_px: Decimal | None = None,
        time_in_force: str | None = None,
        exec_inst: Sequence[str] = (),
        cl_ord_id: str | None = None,
        text: str | None = None,
        send_by: float | None = None,
    ) -> Order: ...

    async def amend_order(
        self,
        order_id: str | None = None,
        *,
        orig_cl_ord_id: str | None = None,
        qty: Decimal | int | None = None,
        price: Decimal | None = None,
        stop_px: Decimal | None = None,
    ) -> Order: ...

    async def cancel_orders(
        self,
        order_ids: Sequence[str] = (),
        *,
        cl_ord_ids: Sequence[str] = (),
    ) -> list[CancelResult]: ...

    async def cancel_all(self, symbol: str | None = None) -> list[Order]: ...

    async def cancel_all_after(self, timeout_ms: int) -> None: ...

    async def open_orders(self, symbol: str | None = None) -> list[Order]: ...

    async def order_by_cl_ord_id(self, cl_ord_id: str) -> Order | None: ...

    async def positions(self) -> list[Position]: ...

    async def set_leverage(self, symbol: str, leverage: Decimal | int) -> Position: ...

    async def margins(self) -> list[Margin]: ...

    async def executions(
        self,
        symbol: str | None = None,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        count: int = 100,
    ) -> list[Execution]: ...

    async def bucketed(
        self,
        symbol: str,
        bin_size: str = "1h",
        *,
        count: int = 100,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        partial: bool = False,
    ) -> list[Candle]: ...

    async def api_key_permissions(self) -> ApiKeyInfo: ...
