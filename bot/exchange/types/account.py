"""What an account holds: orders, fills, positions, margin, the key's permissions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.exchange.types.values import dec, dec0, format_money, int0, parse_time, str0


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
    # A trailing stop's signed offset (pegPriceType TrailingStopPeg); None otherwise.
    peg_offset: Decimal | None = None

    @property
    def is_open(self) -> bool:
        return self.ord_status in ("New", "PartiallyFilled", "Untriggered", "Triggered")

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Order:
        inst = str0(row, "execInst")
        return cls(
            order_id=str0(row, "orderID"),
            cl_ord_id=str0(row, "clOrdID"),
            symbol=str0(row, "symbol"),
            side=str0(row, "side"),
            order_qty=dec0(row, "orderQty"),
            price=dec(row, "price"),
            stop_px=dec(row, "stopPx"),
            ord_type=str0(row, "ordType"),
            time_in_force=str0(row, "timeInForce"),
            exec_inst=tuple(x for x in inst.split(",") if x),
            ord_status=str0(row, "ordStatus"),
            leaves_qty=dec0(row, "leavesQty"),
            cum_qty=dec0(row, "cumQty"),
            avg_px=dec(row, "avgPx"),
            text=str0(row, "text"),
            account=int0(row, "account"),
            timestamp=parse_time(row.get("transactTime") or row.get("timestamp")),
            peg_offset=(dec(row, "pegOffsetValue")
                        if row.get("pegPriceType") == "TrailingStopPeg" else None),
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
    # The order's state as of this execution, for the fill notice ("30/100", "avg ...",
    # reduce-only): carried here so nothing has to keep the socket's rows to read it.
    order_qty: Decimal | None = None
    cum_qty: Decimal | None = None
    avg_px: Decimal | None = None
    exec_inst: str = ""

    @property
    def is_fill(self) -> bool:
        return self.exec_type == "Trade" and self.last_qty != 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Execution:
        return cls(
            exec_id=str0(row, "execID"),
            order_id=str0(row, "orderID"),
            cl_ord_id=str0(row, "clOrdID"),
            symbol=str0(row, "symbol"),
            side=str0(row, "side"),
            last_qty=dec0(row, "lastQty"),
            last_px=dec(row, "lastPx"),
            exec_type=str0(row, "execType"),
            ord_type=str0(row, "ordType"),
            ord_status=str0(row, "ordStatus"),
            exec_cost=int0(row, "execCost"),
            exec_comm=int0(row, "execComm"),
            realised_pnl=int0(row, "realisedPnl"),
            settl_currency=str0(row, "settlCurrency") or str0(row, "currency"),
            text=str0(row, "text"),
            account=int0(row, "account"),
            timestamp=parse_time(row.get("transactTime") or row.get("timestamp")),
            order_qty=dec(row, "orderQty"),
            cum_qty=dec(row, "cumQty"),
            avg_px=dec(row, "avgPx"),
            exec_inst=str0(row, "execInst"),
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
        qty = dec0(row, "currentQty")
        return cls(
            account=int0(row, "account"),
            symbol=str0(row, "symbol"),
            currency=str0(row, "currency"),
            current_qty=qty,
            avg_entry_price=dec(row, "avgEntryPrice"),
            mark_price=dec(row, "markPrice"),
            liquidation_price=dec(row, "liquidationPrice"),
            bankrupt_price=dec(row, "bankruptPrice"),
            leverage=dec0(row, "leverage"),
            cross_margin=bool(row.get("crossMargin")),
            unrealised_pnl=int0(row, "unrealisedPnl"),
            realised_pnl=int0(row, "realisedPnl"),
            pos_margin=int0(row, "posMargin"),
            maint_margin=int0(row, "maintMargin"),
            is_open=bool(row.get("isOpen", qty != 0)),
            home_notional=dec(row, "homeNotional"),
            foreign_notional=dec(row, "foreignNotional"),
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
            account=int0(row, "account"),
            currency=str0(row, "currency"),
            wallet_balance=int0(row, "walletBalance"),
            margin_balance=int0(row, "marginBalance"),
            available_margin=int0(row, "availableMargin"),
            unrealised_pnl=int0(row, "unrealisedPnl"),
            maint_margin=int0(row, "maintMargin"),
            withdrawable_margin=int0(row, "withdrawableMargin"),
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
            key_id=str0(row, "id"),
            permissions=tuple(perms),
            # Fail closed: a row that does not say the key is enabled is not trusted.
            enabled=row.get("enabled") is True,
            name=str0(row, "name"),
            ip_binding=binding,
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
