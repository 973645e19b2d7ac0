"""Market data and reports: /price, /chart, /pnl, /summary."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import ClassVar, Literal, cast

from bot.errors import UserError
from bot.parse.table import SYMBOLS, Command, Intent, Menu
from bot.parse.values import SymbolBook, parse_hhmm, parse_int, parse_weekday, shown
from bot.parse.words import Args, unexpected

# What `bot.parse` exports from this area (its intents and their value types).
__all__ = ["Chart", "Pnl", "PnlPeriod", "Price", "Summary", "Timeframe"]

Timeframe = Literal["1m", "5m", "1h", "1d"]

PnlPeriod = Literal["1d", "7d", "30d", "all"]


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
class Pnl(Intent):
    command: ClassVar[str] = "pnl"
    period: PnlPeriod = "7d"


@dataclass(frozen=True, slots=True)
class Summary(Intent):
    command: ClassVar[str] = "summary"
    schedule: Literal["daily", "weekly", "off"] = "off"
    at: time | None = None  # local time in the user's zone
    weekday: int | None = None  # 0 = Monday; weekly only


def _price(name: str, args: Args, book: SymbolBook) -> Price:
    symbols: list[str] = []
    for t in args.toks:
        s = book.resolve(t.raw)
        if s not in symbols:
            symbols.append(s)
    if len(symbols) > 10:
        raise UserError("At most 10 symbols at once.")
    return Price(symbols=tuple(symbols))


_TIMEFRAMES = {"1m": "1m", "5m": "5m", "1h": "1h", "60m": "1h", "1d": "1d", "24h": "1d"}


def _chart(name: str, args: Args, book: SymbolBook) -> Chart:
    symbol: str | None = None
    timeframe: str | None = None
    candles: int | None = None
    for t in args.toks:
        if t.low in _TIMEFRAMES:
            if timeframe is not None:
                raise UserError("The timeframe is given twice.")
            timeframe = _TIMEFRAMES[t.low]
        elif t.low[:1].isdigit():
            if re.match(r"^\d+[a-z]+$", t.low) and not re.match(r"^\d+k$", t.low):
                raise UserError(f"Timeframe {shown(t.raw)}? Use 1m, 5m, 1h or 1d.")
            if candles is not None:
                raise UserError("The number of candles is given twice.")
            candles = parse_int(t.raw, "number of candles", low=5, high=1000)
        elif symbol is None:
            symbol = book.resolve(t.raw)
        else:
            raise unexpected(t)
    return Chart(
        symbol=symbol,
        timeframe=cast(Timeframe, timeframe or "1h"),
        candles=candles if candles is not None else 100,
    )


_PERIODS = {
    "1d": "1d", "24h": "1d", "day": "1d", "today": "1d",
    "7d": "7d", "1w": "7d", "week": "7d",
    "30d": "30d", "month": "30d",
    "all": "all",
}  # fmt: skip


def _pnl(name: str, args: Args, book: SymbolBook) -> Pnl:
    if not args.toks:
        return Pnl()
    if len(args.toks) > 1:
        raise unexpected(args.toks[1])
    period = _PERIODS.get(args.toks[0].low)
    if period is None:
        raise UserError(f"Period {shown(args.toks[0].raw)}? Use 1d, 7d, 30d or all.")
    return Pnl(period=cast(PnlPeriod, period))


def _summary(name: str, args: Args, book: SymbolBook) -> Summary:
    toks = list(args.toks)
    if not toks:
        raise UserError("daily, weekly or off?")
    kind = toks.pop(0).low
    if kind == "off":
        if toks:
            raise unexpected(toks[0])
        return Summary(schedule="off")
    if kind not in ("daily", "weekly"):
        raise UserError("daily, weekly or off?")
    weekday: int | None = None
    at = None
    for t in toks:
        day = parse_weekday(t.low) if kind == "weekly" else None
        if day is not None:
            if weekday is not None:
                raise UserError("The day is given twice.")
            weekday = day
        elif at is None:
            at = parse_hhmm(t.raw)
        else:
            raise unexpected(t)
    if at is None:
        raise UserError("At what time? Give HH:MM, like 09:00.")
    if kind == "weekly" and weekday is None:
        raise UserError("Which day? mon, tue, wed, thu, fri, sat or sun.")
    return Summary(schedule=cast(Literal["daily", "weekly"], kind), at=at, weekday=weekday)


COMMANDS = (
    Command(
        "price", (Price,), _price, "/price [SYM ...]", "/price btc eth",
        ("Last, mark, bid/ask, 24 h change and funding rate.", SYMBOLS),
        menu=Menu(8, "prices and funding"),
    ),
    Command(
        "chart", (Chart,), _chart, "/chart SYM [1m|5m|1h|1d] [N]", "/chart btc 1h 200",
        ("Candlestick chart; default 1h and 100 candles (5 to 1000).", SYMBOLS),
    ),
    Command(
        "pnl", (Pnl,), _pnl, "/pnl [1d|7d|30d|all]", "/pnl 30d",
        ("Realised PnL, fees, funding and win rate with an equity chart (default 7d).",),
        where="private", menu=Menu(10, "realised PnL with chart"),
    ),
    Command(
        "summary", (Summary,), _summary,
        "/summary daily HH:MM | weekly DAY HH:MM | off", "/summary weekly mon 09:00",
        ("Scheduled PnL summary in your time zone (see /tz). DAY: mon ... sun.",),
        where="private",
    ),
)
