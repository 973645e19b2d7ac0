"""Signal feeds: /feed, /signal, /feedstats in groups; /follow, /unfollow, /feeds in private.
(The free-text signals of a feed group are `bot/parse/signals.py`.)"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Literal

from bot.errors import UserError
from bot.parse.table import Command, Intent, Menu, plain
from bot.parse.values import (
    SymbolBook,
    looks_like_size,
    parse_percent,
    parse_price,
    parse_price_list,
    parse_range,
    parse_size,
    shown,
)
from bot.parse.words import (
    LEV_WORD_RE,
    Args,
    Spec,
    Tok,
    check_exits,
    leverage_value,
    record_id,
    split_options,
    unexpected,
    usd_amount,
)

# What `bot.parse` exports from this area (its intents and their value types).
__all__ = [
    "Feed", "FeedStats", "Feeds", "Follow", "Signal", "SignalClose", "SignalMoveSl", "Unfollow",
]


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


_NAME_RE = re.compile(r"^@?([A-Za-z0-9][A-Za-z0-9_\-]{0,31})$")


def _feed_name(tok: Tok) -> str:
    m = _NAME_RE.match(tok.raw)
    if m is None:
        raise UserError(f"{shown(tok.raw)} is not a feed name (letters, digits, _ and -).")
    return m.group(1)


def _feed(name: str, args: Args, book: SymbolBook) -> Feed:
    toks = list(args.toks)
    if not toks or toks[0].low not in ("on", "off"):
        raise UserError("on or off?")
    on = toks.pop(0).low == "on"
    if len(toks) > 1 or (toks and not on):
        raise unexpected(toks[-1])
    return Feed(on=on, name=_feed_name(toks[0]) if toks else None)


_SIGNAL_SPEC: Spec = {
    "entry": ("entry", "range"),
    "@": ("entry", "range"),
    "at": ("entry", "range"),
    "tp": ("tp", "prices"),
    "sl": ("sl", "price"),
    "lev": ("lev", "number"),
    "leverage": ("lev", "number"),
    "risk": ("risk", "percent"),
}


def _signal(
    name: str, args: Args, book: SymbolBook
) -> Signal | SignalClose | SignalMoveSl:
    toks = list(args.toks)
    if not toks:
        raise UserError("long, short, close or move-sl?")
    head = toks[0].low
    if head == "close":
        if len(toks) != 2:
            raise UserError("Write signal close ID.")
        return SignalClose(signal_id=record_id(toks[1], "signal"))
    if head in ("move-sl", "movesl", "move_sl", "move"):
        rest = toks[1:]
        if head == "move" and rest and rest[0].low == "sl":
            rest = rest[1:]
        if len(rest) != 2:
            raise UserError("Write signal move-sl ID PRICE.")
        return SignalMoveSl(
            signal_id=record_id(rest[0], "signal"), sl=parse_price(rest[1].raw, "stop-loss")
        )
    if head not in ("long", "short", "buy", "sell"):
        raise UserError("long, short, close or move-sl?")
    side: Literal["long", "short"] = "long" if head in ("long", "buy") else "short"
    opts, positional = split_options(Args(args.text, tuple(toks[1:])), _SIGNAL_SPEC)
    symbol: str | None = None
    leverage = leverage_value(opts["lev"][1]) if "lev" in opts else None
    for t in positional:
        if LEV_WORD_RE.match(t.low) and leverage is None:
            leverage = leverage_value(t.low)
        elif symbol is None and not looks_like_size(t.low):
            symbol = book.resolve(t.raw)
        else:
            raise unexpected(t)
    if symbol is None:
        raise UserError("Which symbol?")
    if "entry" not in opts:
        raise UserError("The entry is missing: entry P or entry P1-P2.")
    if "sl" not in opts:
        raise UserError("A signal needs a stop-loss: sl P.")
    low, high = parse_range(opts["entry"][1])
    sl = parse_price(opts["sl"][1], "stop-loss")
    tps = parse_price_list(opts["tp"][1]) if "tp" in opts else ()
    if len(set(tps)) != len(tps):
        raise UserError("The same take-profit price is given twice.")
    risk = parse_percent(opts["risk"][1], "risk") if "risk" in opts else None
    check_exits(side == "long", low, tps, sl, entry_high=high)
    return Signal(
        side=side,
        symbol=symbol,
        entry_low=low,
        entry_high=high,
        sl=sl,
        tps=tps,
        leverage=leverage,
        risk_percent=risk,
    )


def _follow(name: str, args: Args, book: SymbolBook) -> Follow:
    toks = list(args.toks)
    if not toks:
        raise UserError("Which feed?")
    feed = _feed_name(toks.pop(0))
    auto: bool | None = None
    for word, value in (("auto", True), ("manual", False)):
        hits = [t for t in toks if t.low == word]
        if hits:
            if auto is not None or len(hits) > 1:
                raise UserError("Say auto or manual once.")
            auto = value
            toks = [t for t in toks if t.low != word]
    opts, positional = split_options(
        Args(args.text, tuple(toks)),
        {"risk": ("mode", "percent"), "size": ("mode", "usd"), "max": ("max", "usd")},
    )
    if positional:
        raise unexpected(positional[0])
    if "mode" not in opts:
        raise UserError("How big? risk N%, size $N or size N (contracts).")
    kw, raw = opts["mode"]
    max_usd = usd_amount(opts["max"][1], "maximum") if "max" in opts else None
    if kw == "risk":
        return Follow(feed=feed, mode="risk", value=parse_percent(raw, "risk"),
                         max_usd=max_usd, auto=auto)
    if max_usd is not None:
        raise UserError("'max' goes with risk N%; a fixed size needs no cap.")
    low = raw.lower()
    if low.startswith("$") or low.endswith(("usd", "usdt", "$")):
        return Follow(feed=feed, mode="usd", value=usd_amount(raw, "size"), auto=auto)
    size = parse_size(raw, book)
    if size.kind != "contracts":
        raise UserError("A follow size is $N (USD) or N (contracts).")
    return Follow(feed=feed, mode="contracts", value=size.value, auto=auto)


def _feedstats(name: str, args: Args, book: SymbolBook) -> FeedStats:
    if len(args.toks) > 1:
        raise UserError("One feed name at most.")
    return FeedStats(feed=_feed_name(args.toks[0]).lower() if args.toks else None)


def _unfollow(name: str, args: Args, book: SymbolBook) -> Unfollow:
    if len(args.toks) != 1:
        raise UserError("Which feed?")
    return Unfollow(feed=_feed_name(args.toks[0]))


COMMANDS = (
    Command(
        "feed", (Feed,), _feed, "/feed on [NAME] | off", "/feed on alpha",
        ("Group admins: make this group a signal feed.",),
        where="group", admin_menu=Menu(2, "turn the signal feed on or off"),
    ),
    Command(
        "signal", (Signal, SignalClose, SignalMoveSl), _signal,
        "/signal long|short SYM entry P[-P2] [tp P,P...] sl P [lev N] [risk N%] | "
        "close ID | move-sl ID PRICE",
        "/signal long btc entry 60k-61k tp 65k,70k sl 58k lev 5 risk 1%",
        ("Feed admins post signals; followers get a preview sized by their follow settings.",
         "For a long, sl is below entry and targets above; the reverse for a short."),
        where="group", admin_menu=Menu(1, "post a signal"),
    ),
    Command(
        "feedstats", (FeedStats,), _feedstats, "/feedstats [FEED]", "/feedstats alpha",
        ("The feed's record from real follower fills.",),
        where="group", group_read=True, group_menu=Menu(1, "the feed's record"),
        admin_menu=Menu(5, "the feed's record"),
    ),
    Command(
        "follow", (Follow,), _follow,
        "/follow FEED risk N% [max $N] | size $N | size N", "/follow alpha risk 1% max $500",
        ("risk N%: size so that hitting sl loses N% of equity, optionally capped at max $N.",
         "size $N: fixed USD notional · size N: fixed contracts.",
         "auto: stop moves toward the price and closes from the feed apply without a press "
         "(never opens or adds); manual (default): each update comes as a card to confirm."),
        where="private",
    ),
    Command(
        "unfollow", (Unfollow,), _unfollow, "/unfollow FEED", "/unfollow alpha",
        ("Stops following a feed.",), where="private",
    ),
    Command(
        "feeds", (Feeds,), plain(Feeds), "/feeds", "/feeds",
        ("Feeds you follow and their settings.",), where="private",
    ),
)
