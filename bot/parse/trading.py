"""Orders and positions: /buy (/long), /sell (/short), /close, /cancel, /orders,
/positions, /balance, /leverage."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Literal

from bot.errors import UserError
from bot.parse.stops import Trail, price_ref, trail_value
from bot.parse.table import NUMBERS, SIZES, SYMBOLS, Command, Intent, Menu, plain
from bot.parse.values import (
    SizeSpec,
    SymbolBook,
    looks_like_size,
    parse_percent,
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
    "DEFAULT_PRESETS", "NO_SIZE", "RISK_LIMIT", "Balance", "CancelAll", "CancelOrder", "Close",
    "Leverage", "Order", "OrderType", "Orders", "PickSize", "Positions", "Side", "fmt_pct",
    "order_from_json", "order_to_json", "parse_presets", "preset_label", "preset_order",
    "preset_token", "size_from_token",
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
    force: bool = False  # a risk size above RISK_LIMIT % was asked for on purpose
    # `sl 58k trail 1%` (issue #14 item 3): the stop placed at entry trails by this.
    trail: Trail | None = None
    # `sl -2%`: the stop as a signed percent from the entry, resolved against the entry
    # price (the limit, the stop, or the quote of a market order) when the card is sized.
    sl_pct: Decimal | None = None

    @property
    def entry(self) -> Decimal | None:
        """The price the position is expected to open at, when the order says """
        return self.price if self.price is not None else self.stop_px


# The size of an order typed without one (`/buy btc @ 60k`), until a preset press picks it.
NO_SIZE = SizeSpec("contracts", Decimal(0))


@dataclass(frozen=True, slots=True)
class PickSize(Intent):
    """`/buy btc` without a size: the user's size presets as buttons (issue #14 item 5).
    `order` is everything else that was typed (price, sl, tp, trail, flags), checked like
    any order, its size NO_SIZE: a press opens exactly that with the preset's size."""

    command: ClassVar[str] = "order"
    order: Order

    @property
    def side(self) -> Side:
        return self.order.side

    @property
    def symbol(self) -> str | None:
        return self.order.symbol

    @property
    def has_stop(self) -> bool:
        return self.order.sl is not None or self.order.sl_pct is not None


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
    "risk": ("risk", "percent"),
    "force": ("force", "flag"),
    "trail": ("trail", "number"),
}

# Above this share of the margin balance a risk size needs `force`: 15 % is more often a
# typo for 1.5 % than a plan (issue #14).
RISK_LIMIT = Decimal(10)


def _order(name: str, args: Args, book: SymbolBook) -> Order | PickSize:
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
    sl, sl_pct = _stop(opts["sl"][1], side) if "sl" in opts else (None, None)
    force = "force" in opts
    if "risk" in opts:
        if size is not None:
            raise UserError(f"Give a size or risk, not both: risk {shown(opts['risk'][1])} "
                            "works the size out from the stop.")
        size = SizeSpec("risk", _risk_percent(opts["risk"][1],
                                              sl is not None or sl_pct is not None, force))
    elif force:
        raise UserError("force only goes with a risk above 10 %: risk 15% force.")

    price = parse_price(opts["price"][1], "limit price") if "price" in opts else None
    stop_px = parse_price(opts["stop"][1], "stop price") if "stop" in opts else None
    tps = parse_price_list(opts["tp"][1]) if "tp" in opts else ()
    trail = trail_value(opts["trail"][1]) if "trail" in opts else None
    if trail is not None and sl is None and sl_pct is None:
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
    order = Order(
        side=side,
        size=NO_SIZE if size is None else size,
        symbol=symbol,
        order_type=order_type,
        price=price,
        stop_px=stop_px,
        tps=tps,
        sl=sl,
        leverage=leverage,
        post_only=post,
        reduce_only=reduce,
        force=force,
        trail=trail,
        sl_pct=sl_pct,
    )
    # No size: the presets, carrying everything else typed (checked above like any order).
    return PickSize(order=order) if size is None else order


def _stop(word: str, side: Side) -> tuple[Decimal | None, Decimal | None]:
    """`sl 58k` (a price) or `sl -2%` (that far from the entry): (price, None) or
    (None, signed percent). A relative stop on the winning side is refused here, where the
    sign alone tells."""
    ref = price_ref(word, "stop-loss")
    if not ref.relative:
        return ref.value, None
    if side == "Buy" and ref.value > 0:
        raise UserError(f"The stop-loss must be below entry for a long: sl -{fmt_pct(ref.value)}.")
    if side == "Sell" and ref.value < 0:
        raise UserError(f"The stop-loss must be above entry for a short: "
                        f"sl +{fmt_pct(-ref.value)}.")
    return None, ref.value


def _risk_percent(word: str, has_stop: bool, force: bool) -> Decimal:
    """The share of the margin balance a risk size may lose, checked like the issue asks:
    refused without a stop (nothing to size from) and above RISK_LIMIT without force."""
    risk = parse_percent(word, "risk", high=Decimal(100))
    if not has_stop:
        raise UserError(f"Risk sizing needs a stop-loss: add sl PRICE, and the size is what "
                        f"loses {fmt_pct(risk)} of your margin balance there.")
    if risk > RISK_LIMIT and not force:
        raise UserError(f"Risk {fmt_pct(risk)} is over {fmt_pct(RISK_LIMIT)} of your margin "
                        f"balance. If you mean it: risk {fmt_pct(risk)} force.")
    return risk


def fmt_pct(value: Decimal) -> str:
    return f"{format(value.normalize(), 'f')}%"


# --- size presets (issue #14 item 5) -------------------------------------------------------

# $100 · $500 · 1 % risk · 5 % of margin
DEFAULT_PRESETS: tuple[SizeSpec, ...] = (
    SizeSpec("usd", Decimal(100)), SizeSpec("usd", Decimal(500)),
    SizeSpec("risk", Decimal(1)), SizeSpec("percent", Decimal(5)),
)
MAX_PRESETS = 4
# How a preset is stored and carried in a button: `$100`, `5%`, `1%risk`, `100`, `0.01xbt`.
_TOKEN_RE = re.compile(r"^(?:\$(?P<usd>[0-9.]+)|(?P<pct>[0-9.]+)%(?P<r>(?:risk)?)|(?P<n>[0-9.]+)"
                       r"(?P<coin>[a-z]{2,6})?)$")


def preset_token(spec: SizeSpec) -> str:
    v = format(spec.value.normalize(), "f")
    return {"usd": f"${v}", "percent": f"{v}%", "risk": f"{v}%risk", "contracts": v,
            "coin": f"{v}{(spec.coin or '').lower()}"}[spec.kind]


def size_from_token(token: str) -> SizeSpec | None:
    """A stored or pressed preset back as a size; None when it is no token of ours."""
    m = _TOKEN_RE.match(token)
    if m is None:
        return None
    try:
        if m["usd"]:
            return SizeSpec("usd", Decimal(m["usd"]))
        if m["pct"]:
            return SizeSpec("risk" if m["r"] else "percent", Decimal(m["pct"]))
        if m["coin"]:
            return SizeSpec("coin", Decimal(m["n"]), m["coin"].upper())
        return SizeSpec("contracts", Decimal(m["n"]))
    except ArithmeticError:
        return None


def preset_label(spec: SizeSpec) -> str:
    v = format(spec.value.normalize(), "f")
    return {"usd": f"${v}", "percent": f"{v}% of margin", "risk": f"{v}% risk",
            "contracts": f"{v} contracts", "coin": f"{v} {spec.coin or ''}"}[spec.kind]


def parse_presets(words: list[str], book: SymbolBook) -> tuple[SizeSpec, ...]:
    """`$50 $200 2% risk 10%` -> four presets: any size /buy accepts, and `N% risk`."""
    out: list[SizeSpec] = []
    i = 0
    while i < len(words):
        w = words[i]
        risk_next = i + 1 < len(words) and words[i + 1].lower() == "risk"
        if w.lower().endswith("%risk") or (risk_next and w.endswith("%")):
            pct = parse_percent(w.lower().removesuffix("risk"), "risk", high=Decimal(100))
            if pct > RISK_LIMIT:
                raise UserError(f"A risk preset is at most {fmt_pct(RISK_LIMIT)}; for more, "
                                "type risk N% force on the order itself.")
            out.append(SizeSpec("risk", pct))
            i += 2 if risk_next else 1
            continue
        if w.lower() == "risk":
            raise UserError("Write a risk preset as 1% risk.")
        if not looks_like_size(w.lower()):
            raise UserError(f"{shown(w)} is not a size: write $100, 100, 0.01btc, 5% or "
                            "1% risk.")
        out.append(parse_size(w, book))
        i += 1
    if not 1 <= len(out) <= MAX_PRESETS:
        raise UserError(f"Give 1 to {MAX_PRESETS} presets (you gave {len(out)}), or default.")
    if len(set(out)) != len(out):
        raise UserError("The same preset is given twice.")
    for spec in out:
        if len(preset_token(spec)) > 12:  # it rides in a button (bot/buttons.py PresetPress)
            raise UserError(f"{shown(str(spec))} is too long for a button.")
    return tuple(out)


def preset_order(side: Side, symbol: str, token: str, sl: Decimal | None,
                 typed: Order | None = None) -> Order:
    """The order a preset button asks for: what was typed (`typed`, stored with the menu)
    with the preset's size; refused (one line) when it cannot be sized. Without `typed`
    (a menu from before the menus were stored) it is the symbol and the stop alone."""
    size = size_from_token(token)
    if size is None:
        raise UserError("That button is out of date; send the order again.")
    base = typed if typed is not None else Order(side=side, size=NO_SIZE, symbol=symbol, sl=sl)
    if size.kind == "risk" and base.sl is None and base.sl_pct is None:
        word = "buy" if side == "Buy" else "sell"
        raise UserError(f"{preset_label(size)} sizes from the stop: send /{word} "
                        f"{symbol.lower()} sl PRICE, or /{word} {symbol.lower()} risk "
                        f"{fmt_pct(size.value)} sl PRICE.")
    return dataclasses.replace(base, side=side, symbol=symbol, size=size)


def order_to_json(o: Order) -> dict[str, Any]:
    """An order as plain JSON (a size menu's stored command, bot/prefs.py)."""
    def enc(v: Any) -> Any:
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, tuple):
            return [enc(x) for x in v]
        if isinstance(v, SizeSpec | Trail):
            return {f: enc(getattr(v, f)) for f in v.__slots__}
        return v

    return {f.name: enc(getattr(o, f.name)) for f in dataclasses.fields(o)}


def order_from_json(data: dict[str, Any]) -> Order:
    """The order `order_to_json` stored; ValueError when it is no order of ours."""
    def dec(v: Any) -> Decimal | None:
        return None if v is None else Decimal(str(v))

    try:
        size, trail = data["size"], data.get("trail")
        return Order(
            side=data["side"], size=SizeSpec(size["kind"], Decimal(size["value"]),
                                             size.get("coin")),
            symbol=data.get("symbol"), order_type=data.get("order_type", "market"),
            price=dec(data.get("price")), stop_px=dec(data.get("stop_px")),
            tps=tuple(Decimal(x) for x in data.get("tps") or ()), sl=dec(data.get("sl")),
            leverage=dec(data.get("leverage")), post_only=bool(data.get("post_only")),
            reduce_only=bool(data.get("reduce_only")), force=bool(data.get("force")),
            trail=None if trail is None else Trail(Decimal(trail["value"]),
                                                   bool(trail["percent"])),
            sl_pct=dec(data.get("sl_pct")))
    except (KeyError, TypeError, ArithmeticError) as e:
        raise ValueError(f"not a stored order: {e}") from e


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


_ORDER_USAGE = ("SIZE|risk N% [SYM] [@ PRICE | limit PRICE] [stop PX] [tp PX[,PX...]] [sl PX] "
                "[lev N] [post] [reduce] [force] [trail N% | trail $N]")
_RISK_HELP = ("risk N% sl PX: the size whose loss at the stop (taker fees included) is N% of "
              "your margin balance; over 10% needs force (risk 15% force). The card shows the "
              "loss at the stop in coin and USD, and each TP's R-multiple.")
_STOP_HELP = ("sl -2% (+2% for a short): the stop that far from the entry (the limit price, "
              "or the quote for a market order), so risk 1% sl -2% sizes from it.")
_PRESET_HELP = ("No size: your preset buttons ($100 · $500 · 1% risk · 5% of margin; change "
                "them with /settings presets). A press opens the preview of what you typed "
                "with that size: /buy btc @ 59k sl -2% keeps the price and the stop.")

COMMANDS = (
    Command(
        "buy", (Order, PickSize), _order, f"/buy {_ORDER_USAGE}", "/buy 100 btc @ 60k sl 58k",
        ("/long is the same as /buy. A preview with Confirm/Cancel comes first.",
         "Market order unless a price is given; stop PX makes a stop (or stop-limit with @).",
         "tp/sl add reduce-only exits after entry; post = post-only; reduce = reduce-only.",
         "sl 58k trail 1% (or trail $500): BitMEX's trailing stop, set when the entry fills, "
         "1% (or $500) behind the mark and following it your way (see /help sl).",
         "Keywords may come in any order: /buy btc 100 sl 58k @ 60k",
         _RISK_HELP, _STOP_HELP, _PRESET_HELP, SIZES, NUMBERS, SYMBOLS,
         "More: /buy 0.01btc xbtusdt stop 65k · /long 10% btc lev 5 tp 65k,70k sl 58k · "
         "/buy btc risk 1% sl -2% · /buy eth risk 0.5% sl 2900 tp 3300 · "
         "/buy 100 btc sl 58k trail 1% · /buy btc @ 59k sl -2%"),
        where="private", aliases=("long",), menu=Menu(2, "buy / long: preview then confirm"),
    ),
    Command(
        "sell", (Order, PickSize), _order, f"/sell {_ORDER_USAGE}",
        "/sell $500 eth limit 3000 post",
        ("/short is the same as /sell. A preview with Confirm/Cancel comes first.",
         "Market order unless a price is given; stop PX makes a stop (or stop-limit with @).",
         "For a short, sl is above entry and take-profits below.",
         _RISK_HELP, _STOP_HELP, _PRESET_HELP.replace("/buy", "/sell").replace("59k", "61k")
         .replace("-2%", "+2%"), SIZES, NUMBERS, SYMBOLS,
         "More: /sell 0.01btc xbtusd stop 58000 · /short 10% btc lev 5 tp 55k,52k sl 62k · "
         "/sell eth risk 1% sl +2% @ 3000 · /sell btc sl 62k trail $500"),
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
