"""Alerts: /alert, /alerts, /unalert, and /liqfeed (big liquidations posted to a chat)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Literal, cast

from bot.errors import UserError
from bot.parse.table import Command, Intent, Menu, plain
from bot.parse.values import SymbolBook, looks_like_size, parse_percent, parse_price, shown
from bot.parse.words import Args, record_id, split_options, unexpected, usd_amount

# What `bot.parse` exports from this area (its intents and their value types).
__all__ = [
    "Alerts", "Direction", "FundingAlert", "LiqFeed", "MoveAlert", "MoveWindow", "PriceAlert",
    "Unalert",
]

MoveWindow = Literal["15m", "1h", "4h", "24h"]

Direction = Literal["above", "below"]


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
class LiqFeed(Intent):
    command: ClassVar[str] = "liqfeed"
    symbol: str | None = None  # None: every symbol
    min_usd: Decimal | None = None  # None: off


_DIRECTIONS = {"above": "above", ">": "above", ">=": "above", "over": "above",
               "below": "below", "<": "below", "<=": "below", "under": "below"}  # fmt: skip


_WINDOWS = {"15m": "15m", "1h": "1h", "60m": "1h", "4h": "4h", "24h": "24h", "1d": "24h"}

_ALERT_KINDS = {*_DIRECTIONS, "move", "funding"}


def _alert(
    name: str, args: Args, book: SymbolBook
) -> PriceAlert | MoveAlert | FundingAlert:
    toks = list(args.toks)
    symbol: str | None = None
    if toks and toks[0].low not in _ALERT_KINDS:
        symbol = book.resolve(toks.pop(0).raw)
    if not toks:
        raise UserError("Alert on what? above/below PRICE, move N% or funding above/below X%.")
    kind = toks.pop(0)
    if kind.low in _DIRECTIONS:
        if not toks:
            raise UserError(f"'{kind.raw}' needs a price after ")
        price = parse_price(toks[0].raw, "alert price")
        note = args.rest_from(toks[1]) if len(toks) > 1 else None
        if note is not None and len(note) > 200:
            raise UserError("The note is too long (200 characters at most).")
        direction = cast(Direction, _DIRECTIONS[kind.low])
        return PriceAlert(symbol=symbol, direction=direction, price=price, note=note or None)
    if kind.low == "move":
        if not toks:
            raise UserError("'move' needs a percentage, like move 5%.")
        percent = parse_percent(toks.pop(0).raw, "move")
        window = "1h"
        if toks and toks[0].low == "in":
            toks.pop(0)
            if not toks:
                raise UserError("'in' needs a window: 15m, 1h, 4h or 24h.")
        if toks:
            w = toks.pop(0)
            if w.low not in _WINDOWS:
                raise UserError(f"Window {shown(w.raw)}? Use 15m, 1h, 4h or 24h.")
            window = _WINDOWS[w.low]
        if toks:
            raise unexpected(toks[0])
        return MoveAlert(symbol=symbol, percent=percent, window=cast(MoveWindow, window))
    if kind.low == "funding":
        if len(toks) != 2 or toks[0].low not in _DIRECTIONS:
            raise UserError("Write funding above X% or funding below X%.")
        rate = parse_percent(toks[1].raw, "funding rate", high=Decimal(10), allow_negative=True)
        direction = cast(Direction, _DIRECTIONS[toks[0].low])
        return FundingAlert(symbol=symbol, direction=direction, percent=rate)
    raise unexpected(kind)


def _unalert(name: str, args: Args, book: SymbolBook) -> Unalert:
    if len(args.toks) != 1:
        raise UserError("Which alert? Give its id from /alerts, or 'all'.")
    t = args.toks[0]
    return Unalert(alert_id=None if t.low == "all" else record_id(t, "alert"))


def _liqfeed(name: str, args: Args, book: SymbolBook) -> LiqFeed:
    opts, positional = split_options(args, {"min": ("min", "usd")})
    symbol: str | None = None
    off = False
    amount = opts["min"][1] if "min" in opts else None
    for t in positional:
        if t.low == "off":
            off = True
        elif looks_like_size(t.low) and amount is None:
            amount = t.raw
        elif symbol is None and not looks_like_size(t.low):
            symbol = book.resolve(t.raw)
        else:
            raise unexpected(t)
    if off:
        if amount is not None:
            raise UserError("'off' and a minimum conflict — give one.")
        return LiqFeed(symbol=symbol, min_usd=None)
    if amount is None:
        raise UserError("Give a minimum USD size, like min $1m, or 'off'.")
    return LiqFeed(symbol=symbol, min_usd=usd_amount(amount, "minimum size"))


COMMANDS = (
    Command(
        "alert", (PriceAlert, MoveAlert, FundingAlert), _alert,
        "/alert SYM above|below PRICE [note] | SYM move N% [in 15m|1h|4h|24h] | "
        "SYM funding above|below X%",
        "/alert btc above 100k breakout",
        ("One-shot price alert: /alert btc below 90k (a note after the price is optional)",
         "Move within a window (default 1h): /alert eth move 5% in 1h",
         "Funding rate: /alert xbtusd funding above 0.05%"),
        where="group", menu=Menu(9, "set a price, move or funding alert"),
        admin_menu=Menu(3, "a shared alert"),
    ),
    Command(
        "alerts", (Alerts,), plain(Alerts), "/alerts", "/alerts",
        ("Active alerts, each with a Delete button.",), where="group",
    ),
    Command(
        "unalert", (Unalert,), _unalert, "/unalert ID | all", "/unalert 3",
        ("Deletes one alert by id, or all.",), where="group",
    ),
    Command(
        "liqfeed", (LiqFeed,), _liqfeed, "/liqfeed [SYM] min SIZE | off", "/liqfeed btc min $1m",
        ("Posts BitMEX liquidations of at least SIZE USD notional to this chat.",),
        where="group", admin_menu=Menu(4, "post big liquidations here"),
    ),
)
