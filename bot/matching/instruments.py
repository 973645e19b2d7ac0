"""The contracts the engine lists: their specs, and when a perpetual's funding falls due."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal


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


def next_funding(now: datetime) -> datetime:
    """The next of 04:00, 12:00, 20:00 UTC strictly after `now`."""
    base = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for hours in range(25):
        candidate = base + timedelta(hours=hours)
        if candidate > now and candidate.hour in (4, 12, 20):
            return candidate
    raise AssertionError("unreachable")
