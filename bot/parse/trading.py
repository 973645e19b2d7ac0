"""Orders and positions: /buy (/long), /sell (/short), /close, /cancel, /orders,
/positions, /balance, /leverage."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, Literal

from bot.errors import UserError
from bot.parse.stops import Trail, trail_value
from bot.parse.table import NUMBERS, SIZES, SYMBOLS, Command, Intent, Menu, plain
from bot.parse.values import (
    SizeSpec,
    SymbolBook,
    looks_like_size,
    parse_price,
    parse_price_list,
    parse_size,
    shown,
)
from bot.parse.words import (
    LEV_WORD_RE,
    Args,
    Spec,
    check_exits,
    leverage_value,
    split_options,
    symbol_or_none,
    unexpected,
)
from bot.side import Side

# What `bot.parse` exports from this area (its intents and their value types).
__all__ = [
    "Balance", "CancelAll", "CancelOrder", "Close", "Leverage", "Order", "OrderType", "Orders",
    "Positions", "Side",
]


OrderType = Literal["market", "limit", "stop", "stop_limit"]


@dataclass(frozen=True, slots=True)
class Order(Intent):
    """A new order: `/buy`, `/sell`, `/long`, `/short`.

    order_type: market (no price), limit (price), stop (stop_px: stop-market), stop_limit
    (both). `tps`/`sl` are reduce-only exits placed after entry; `post_only` maps to
    ParticipateDoNotInitiate, `reduce_only` to ReduceOnly.
    """

    command: ClassVar[str] = "order"
    side: Side
    size: SizeSpec
    symbol: str | None = None
    order_type: OrderType = "market"
    price: Decimal | None = None
    stop_px: Decimal | None = None
    tps: tuple[Decimal, ...] = ()
    sl: Decimal | None = None
    leverage: Decimal | None = None
    post_only: bool = False
    reduce_only: bool = False
    # `sl 58k trail 1%` (issue #14 item 3): the stop placed at entry trails by this.
    trail: Trail | None = None

    @property
    def entry(self) -> Decimal | None:
        """The price the position is expected to open at, when the order says """
        return self.price if self.price is not None else self.stop_px


@dataclass(frozen=True, slots=True)
class Close(Intent):
    command: ClassVar[str] = "close"
    symbol: str | None = None
    size: SizeSpec | None = None  # None: the whole position; percent: that share of it
    price: Decimal | None = None  # None: market


@dataclass(frozen=True, slots=True)
class CancelOrder(Intent):
    command: ClassVar[str] = "cancel"
    ref: str  # an orderID/clOrdID prefix, or a number from the /orders list

    @property
    def list_number(self) -> int | None:
        """The /orders list position when the ref is a short plain number."""
        return int(self.ref) if self.ref.isdigit() and len(self.ref) <= 3 else None


@dataclass(frozen=True, slots=True)
class CancelAll(Intent):
    command: ClassVar[str] = "cancel"
    symbol: str | None = None  # None: every symbol


@dataclass(frozen=True, slots=True)
class Orders(Intent):
    command: ClassVar[str] = "orders"
    symbol: str | None = None  # None: every symbol


@dataclass(frozen=True, slots=True)
class Positions(Intent):
    command: ClassVar[str] = "positions"


@dataclass(frozen=True, slots=True)
class Balance(Intent):
    command: ClassVar[str] = "balance"


@dataclass(frozen=True, slots=True)
class Leverage(Intent):
    command: ClassVar[str] = "leverage"
    symbol: str | None = None
    value: Decimal | None = None  # None: cross margin

    @property
    def cross(self) -> bool:
        return self.value is None


_ORDER_SPEC: Spec = {
    "@": ("price", "price"),
    "at": ("price", "price"),
    "limit": ("price", "price"),
    "stop": ("stop", "price"),
    "trigger": ("stop", "price"),
    "tp": ("tp", "prices"),
    "sl": ("sl", "price"),
    "lev": ("lev", "number"),
    "leverage": ("lev", "number"),
    "post": ("post", "flag"),
    "reduce": ("reduce", "flag"),
    "market": ("market", "flag"),
    "trail": ("trail", "number"),
}


def _order(name: str, args: Args, book: SymbolBook) -> Order:
    side: Side = "Buy" if name in ("buy", "long") else "Sell"
    opts, positional = split_options(args, _ORDER_SPEC)
    size: SizeSpec | None = None
    symbol: str | None = None
    leverage = leverage_value(opts["lev"][1]) if "lev" in opts else None
    for t in positional:
        if LEV_WORD_RE.match(t.low):
            if leverage is not None:
                raise UserError("Leverage is given twice.")
            leverage = leverage_value(t.low)
        elif looks_like_size(t.low):
            if size is not None:
                raise UserError(
                    f"Two sizes: {size} and {shown(t.raw)}. "
                    f"For a limit price write @ {shown(t.raw)}."
                )
            size = parse_size(t.raw, book)
        elif t.low in ("buy", "sell", "long", "short"):
            raise unexpected(t)
        else:
            resolved = book.resolve(t.raw)
            if symbol is not None:
                raise UserError(f"Two symbols: {symbol} and {resolved}.")
            symbol = resolved
    if size is None:
        raise UserError("How much? Give a size: 100 contracts, $500, 0.01btc or 10%.")

    price = parse_price(opts["price"][1], "limit price") if "price" in opts else None
    stop_px = parse_price(opts["stop"][1], "stop price") if "stop" in opts else None
    tps = parse_price_list(opts["tp"][1]) if "tp" in opts else ()
    sl = parse_price(opts["sl"][1], "stop-loss") if "sl" in opts else None
    trail = trail_value(opts["trail"][1]) if "trail" in opts else None
    if trail is not None and sl is None:
        raise UserError("trail needs a stop to start from: sl 58k trail 1%.")
    post, reduce = "post" in opts, "reduce" in opts
    if "market" in opts and price is not None:
        raise UserError("A market order has no limit price: drop 'market' or the price.")
    if post and price is None:
        raise UserError("Post-only needs a limit price: add @ PRICE.")
    if reduce and (tps or sl is not None):
        raise UserError("tp/sl add exits to a new position; a reduce-only order opens none.")
    if len(set(tps)) != len(tps):
        raise UserError("The same take-profit price is given twice.")

    order_type: OrderType
    if stop_px is not None:
        order_type = "stop_limit" if price is not None else "stop"
    else:
        order_type = "limit" if price is not None else "market"
    check_exits(side == "Buy", price if price is not None else stop_px, tps, sl)
    return Order(
        side=side,
        size=size,
        symbol=symbol,
        order_type=order_type,
        price=price,
        stop_px=stop_px,
        tps=tps,
        sl=sl,
        leverage=leverage,
        post_only=post,
        reduce_only=reduce,
        trail=trail,
    )


def _close(name: str, args: Args, book: SymbolBook) -> Close:
    opts, positional = split_options(args, {k: ("price", "price") for k in ("@", "at", "limit")})
    symbol: str | None = None
    size: SizeSpec | None = None
    whole = False
    for t in positional:
        if t.low == "all":
            whole = True
        elif looks_like_size(t.low):
            if size is not None:
                raise UserError(f"Two sizes: {size} and {shown(t.raw)}.")
            size = parse_size(t.raw, book)
        else:
            resolved = book.resolve(t.raw)
            if symbol is not None:
                raise UserError(f"Two symbols: {symbol} and {resolved}.")
            symbol = resolved
    if whole and size is not None:
        raise UserError("'all' and a size conflict — give one.")
    price = parse_price(opts["price"][1], "limit price") if "price" in opts else None
    return Close(symbol=symbol, size=size, price=price)


_REF_RE = re.compile(r"^#?([0-9A-Za-z][0-9A-Za-z_\-]{0,63})$")


def _cancel(name: str, args: Args, book: SymbolBook) -> CancelOrder | CancelAll:
    toks = list(args.toks)
    if not toks:
        raise UserError("Cancel what? Give an order id, its number from /orders, or 'all'.")
    if toks[0].low == "all":
        return CancelAll(symbol=symbol_or_none(toks[1:], book, name))
    if len(toks) >= 2 and toks[1].low == "all":  # `/cancel btc all`
        if len(toks) > 2:
            raise unexpected(toks[2])
        return CancelAll(symbol=book.resolve(toks[0].raw))
    if len(toks) > 1:
        raise unexpected(toks[1])
    m = _REF_RE.match(toks[0].raw)
    if m is None:
        raise UserError(f"{shown(toks[0].raw)} is not an order id.")
    if m.group(1).isdigit() and int(m.group(1)) == 0:
        raise UserError("Order numbers start at 1.")
    return CancelOrder(ref=m.group(1))


def _leverage_cmd(name: str, args: Args, book: SymbolBook) -> Leverage:
    symbol: str | None = None
    value: Decimal | None = None
    have_value = False
    for t in args.toks:
        if t.low == "cross" or looks_like_size(t.low) or LEV_WORD_RE.match(t.low):
            if have_value:
                raise UserError("Leverage is given twice.")
            have_value = True
            value = None if t.low == "cross" else leverage_value(t.low)
        elif symbol is None:
            symbol = book.resolve(t.raw)
        else:
            raise unexpected(t)
    if not have_value:
        raise UserError("Which leverage? Give N (1 to 100) or 'cross'.")
    return Leverage(symbol=symbol, value=value)


def _orders(name: str, args: Args, book: SymbolBook) -> Orders:
    return Orders(symbol=symbol_or_none(list(args.toks), book, name))


_ORDER_USAGE = ("SIZE [SYM] [@ PRICE | limit PRICE] [stop PX] [tp PX[,PX...]] [sl PX] [lev N] "
                "[post] [reduce] [trail N% | trail $N]")

COMMANDS = (
    Command(
        "buy", (Order,), _order, f"/buy {_ORDER_USAGE}", "/buy 100 btc @ 60k sl 58k",
        ("/long is the same as /buy. A preview with Confirm/Cancel comes first.",
         "Market order unless a price is given; stop PX makes a stop (or stop-limit with @).",
         "tp/sl add reduce-only exits after entry; post = post-only; reduce = reduce-only.",
         "sl 58k trail 1% (or trail $500): the stop trails the price from entry (see /help sl).",
         "Keywords may come in any order: /buy btc 100 sl 58k @ 60k",
         SIZES, NUMBERS, SYMBOLS,
         "More: /buy 0.01btc xbtusdt stop 65k · /long 10% btc lev 5 tp 65k,70k sl 58k"),
        where="private", aliases=("long",), menu=Menu(2, "buy / long: preview then confirm"),
    ),
    Command(
        "sell", (Order,), _order, f"/sell {_ORDER_USAGE}", "/sell $500 eth limit 3000 post",
        ("/short is the same as /sell. A preview with Confirm/Cancel comes first.",
         "Market order unless a price is given; stop PX makes a stop (or stop-limit with @).",
         "For a short, sl is above entry and take-profits below.",
         SIZES, NUMBERS, SYMBOLS,
         "More: /sell 0.01btc xbtusd stop 58000 · /short 10% btc lev 5 tp 55k,52k sl 62k"),
        where="private", aliases=("short",), menu=Menu(3, "sell / short: preview then confirm"),
    ),
    Command(
        "close", (Close,), _close,
        "/close [SYM] [PCT% | SIZE] [@ PRICE]", "/close xbtusd 50% @ 61000",
        ("Closes all or part of a position with a reduce-only order; market unless @ PRICE.",
         "More: /close · /close 50% · /close eth 100"),
        where="private", menu=Menu(4, "close a position"),
    ),
    Command(
        "cancel", (CancelOrder, CancelAll), _cancel, "/cancel ID | all [SYM]",
        "/cancel all xbtusd", ("ID is an order id prefix or the number from /orders.",),
        where="private",
    ),
    Command(
        "orders", (Orders,), _orders, "/orders [SYM]", "/orders btc",
        ("Open orders, each with a Cancel button.",),
        where="private", menu=Menu(6, "open orders"),
    ),
    Command(
        "positions", (Positions,), plain(Positions), "/positions (or /pos)", "/pos",
        ("One card per position: size, entry, mark, liquidation price, uPnL, ROE, its SL "
         "and TPs, with buttons: Close 25/50/100 %, SL → break-even, Trail SL, Edit SL, "
         "Edit TP, Refresh. Each opens a preview; nothing changes without Confirm.",),
        where="private", aliases=("pos",), menu=Menu(5, "open positions"),
    ),
    Command(
        "balance", (Balance,), plain(Balance), "/balance", "/balance",
        ("Wallet, margin balance, available and uPnL per currency.",),
        where="private", menu=Menu(7, "wallet and margin"),
    ),
    Command(
        "leverage", (Leverage,), _leverage_cmd, "/leverage SYM N | cross", "/leverage btc 10",
        ("N from 0.01 to 100, or cross.",), where="private",
    ),
)
