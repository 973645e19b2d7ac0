"""Market data: listing instruments, prices and quotes, public trades, candles and notionals.

The book is synthetic: bid and ask sit half the spread (default two ticks) around the last
price, and a quote shows `depth` contracts a side (100 lots when depth is unlimited).
"""

from __future__ import annotations

import math
import random
import uuid
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from bot.matching.instruments import Instrument, next_funding
from bot.matching.records import PricePoint
from bot.matching.state import EngineState
from bot.matching.terms import MAKER_FEE, Q_AVG, TAKER_FEE, EngineError, Row, iso, to_int


class Market(EngineState):
    """Prices, quotes, the public trade tape and the instrument table."""

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
