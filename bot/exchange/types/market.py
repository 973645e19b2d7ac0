"""What the market says: instruments, tickers, trade buckets, liquidations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from bot.exchange.types.values import dec, dec0, int0, parse_time, str0

Kind = Literal["inverse", "quanto", "linear"]
# Perpetual swaps, futures and stock perpetuals: margined contracts the bot can size.
TRADEABLE_TYPES = ("FFWCSX", "FFCCSX", "FFSCSX")


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
    funding_at: datetime | None = None  # the next funding (fundingTimestamp), perpetuals

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
            symbol=str0(row, "symbol"),
            kind=kind,
            state=str0(row, "state"),
            typ=str0(row, "typ"),
            tick_size=dec0(row, "tickSize"),
            lot_size=dec(row, "lotSize") or Decimal(1),
            multiplier=dec0(row, "multiplier"),
            settl_currency=str0(row, "settlCurrency"),
            underlying=str0(row, "underlying"),
            quote_currency=str0(row, "quoteCurrency"),
            underlying_to_position_multiplier=dec(row, "underlyingToPositionMultiplier"),
            quote_to_settle_multiplier=dec(row, "quoteToSettleMultiplier"),
            init_margin=dec0(row, "initMargin"),
            maint_margin=dec0(row, "maintMargin"),
            max_order_qty=dec0(row, "maxOrderQty"),
            last_price=dec(row, "lastPrice"),
            mark_price=dec(row, "markPrice"),
            bid_price=dec(row, "bidPrice"),
            ask_price=dec(row, "askPrice"),
            # BitMEX dropped `indexPrice` from instruments in 2023; the indicative settle
            # price is the index the mark is built on.
            index_price=dec(row, "indicativeSettlePrice") or dec(row, "fairPrice"),
            funding_rate=dec(row, "fundingRate"),
            timestamp=parse_time(row.get("timestamp")),
            prev_price_24h=dec(row, "prevPrice24h"),
            funding_at=parse_time(row.get("fundingTimestamp")),
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
            symbol=str0(row, "symbol"),
            timestamp=ts,
            open=dec(row, "open"),
            high=dec(row, "high"),
            low=dec(row, "low"),
            close=dec(row, "close"),
            volume=dec0(row, "volume"),
            trades=int0(row, "trades"),
        )


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
            order_id=str0(row, "orderID"),
            symbol=str0(row, "symbol"),
            side=str0(row, "side"),
            price=dec(row, "price"),
            leaves_qty=dec0(row, "leavesQty"),
            action=action,
        )
