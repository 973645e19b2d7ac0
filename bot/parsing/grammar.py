"""Chat text -> typed intent. Pure: no I/O besides reading the zoneinfo index once.

Decisions (the handlers rely on them):
- `parse` returns None when the message is not for this bot: `/cmd@OtherBot`, plain text
  in a group, small talk in a private chat (first word not a command word), and, in
  groups, an unknown `/command` not addressed to us (it may belong to another bot).
- An unknown `/command` in a private chat, or addressed to us, is a UserError with a
  pointer to /help. A private message whose first word IS a command word (`buy what?`)
  is parsed strictly, so the user learns the grammar.
- `bot_username=None` means "unknown": `/cmd@Anything` is accepted.
- Private-only commands parse in groups too; refusing them is access control's job.
- Every error is a UserError whose message ends with the command's usage and an example;
  a /connect error never echoes what was typed (it may be a secret).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, cast

from bot.errors import UserError
from bot.parsing import intents as it
from bot.parsing.usage import USAGE, canonical
from bot.parsing.values import (
    SizeSpec,
    SymbolBook,
    looks_like_size,
    parse_hhmm,
    parse_int,
    parse_number,
    parse_percent,
    parse_price,
    parse_price_list,
    parse_range,
    parse_seconds,
    parse_size,
    parse_weekday,
    parse_zone,
    shown,
)

MAX_LEVERAGE = Decimal(100)
_NETWORKS = ("testnet", "mainnet", "paper")


@dataclass(frozen=True, slots=True)
class Tok:
    """One word of the message: as typed, lower-cased, and where it starts in the text."""

    raw: str
    low: str
    pos: int


@dataclass(frozen=True, slots=True)
class Args:
    """The words after the command word, plus the text they came from (for notes)."""

    text: str
    toks: tuple[Tok, ...]

    def rest_from(self, tok: Tok) -> str:
        return self.text[tok.pos :].strip()


def tokenize(text: str) -> Args:
    """Split on whitespace, then glue back what people type with stray spaces:
    `$ 500`, `10 %`, `55k, 52k`, `60000 - 61000`, and split `@60k` into `@ 60k`."""
    raw = [(m.group(), m.start()) for m in re.finditer(r"\S+", text)]
    out: list[tuple[str, int]] = []
    for word, pos in raw:
        if word.startswith("@") and _numlike(word[1:]):  # `@60k`, not a `@feed` name
            out.append(("@", pos))
            out.append((word[1:], pos + 1))
            continue
        if out:
            prev, ppos = out[-1]
            glue = (
                (prev == "$" and word[:1].isdigit())
                or (word == "%" and prev[-1:].isdigit())
                or (prev.endswith(",") and _numlike(word))
                or (word.startswith(",") and _numlike(prev))
                or (prev.endswith("-") and prev[:-1] and _numlike(prev[:-1]) and _numlike(word))
                or (word == "-" and _numlike(prev))
                or (prev.endswith("-") and len(prev) > 1 and _numlike(word))
            )
            if glue:
                out[-1] = (prev + word, ppos)
                continue
        out.append((word, pos))
    return Args(text, tuple(Tok(w, w.lower(), p) for w, p in out))


def _numlike(word: str) -> bool:
    return bool(word) and (word[0].isdigit() or word[0] in "$.") and len(word) < 60


# ------------------------------------------------------------------------- option parsing

# keyword -> (slot, kind). kind: flag | price | prices | range | number | percent | usd
_Spec = dict[str, tuple[str, str]]
_WHAT = {
    "price": "price",
    "prices": "price",
    "range": "price or range P1-P2",
    "number": "number",
    "percent": "percentage",
    "usd": "USD amount",
}


def split_options(args: Args, spec: _Spec) -> tuple[dict[str, tuple[str, str]], list[Tok]]:
    """Pull `keyword value` parts out in any order; the rest are positional words.

    Returns {slot: (keyword as typed, value)} and the positional words in order. A slot
    set twice (`sl 1 sl 2`, or `@ 1 limit 2`) is an error rather than last-one-wins.
    """
    found: dict[str, tuple[str, str]] = {}
    positional: list[Tok] = []
    toks = list(args.toks)
    i = 0
    while i < len(toks):
        t = toks[i]
        kw, value = t.low, None
        m = re.match(r"^([a-z@]+)[=:](.+)$", t.low)
        if kw not in spec and m and m.group(1) in spec:  # `sl=58k`, `tp:60k`
            kw, value = m.group(1), t.raw[len(m.group(1)) + 1 :]
        if kw not in spec:
            positional.append(t)
            i += 1
            continue
        slot, kind = spec[kw]
        if slot in found:
            prev = found[slot][0]
            if prev == kw:
                raise UserError(f"'{kw}' is given twice.")
            raise UserError(f"'{prev}' and '{kw}' say the same thing — give one.")
        if kind == "flag":
            found[slot] = (kw, "")
            i += 1
            continue
        if value is None:
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if nxt is None or nxt.low in spec:
                raise UserError(f"'{kw}' needs a {_WHAT[kind]} after it.")
            value = nxt.raw
            i += 1
        found[slot] = (kw, value)
        i += 1
    return found, positional


def _leverage(word: str) -> Decimal:
    w = word.strip().lower()
    w = w[:-1] if w.endswith("x") else w[1:] if w.startswith("x") else w
    value = parse_number(w, "leverage")
    if value > MAX_LEVERAGE:
        raise UserError(f"Leverage is at most {MAX_LEVERAGE}x.")
    if value < Decimal("0.01"):
        raise UserError("Leverage must be at least 0.01.")
    return value


_LEV_WORD_RE = re.compile(r"^(?:\d+(?:\.\d+)?x|x\d+(?:\.\d+)?)$")


def _usd(word: str, what: str) -> Decimal:
    w = word.strip().lower()
    w = w[1:] if w.startswith("$") else w
    for suffix in ("usdt", "usd", "$"):
        if w.endswith(suffix):
            w = w[: -len(suffix)]
            break
    return parse_number(w, what)


def _no_args(args: Args, name: str) -> None:
    if args.toks:
        raise UserError(f"/{name} takes no arguments.")


def _unexpected(tok: Tok) -> UserError:
    return UserError(f"I don't understand {shown(tok.raw)!r} here.")


def _symbol_or_none(toks: list[Tok], book: SymbolBook, name: str) -> str | None:
    if not toks:
        return None
    if len(toks) > 1:
        raise _unexpected(toks[1])
    return book.resolve(toks[0].raw)


# -------------------------------------------------------------------------------- orders

_ORDER_SPEC: _Spec = {
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
}


def _order(name: str, args: Args, book: SymbolBook) -> it.Order:
    side: it.Side = "Buy" if name in ("buy", "long") else "Sell"
    opts, positional = split_options(args, _ORDER_SPEC)
    size: SizeSpec | None = None
    symbol: str | None = None
    leverage = _leverage(opts["lev"][1]) if "lev" in opts else None
    for t in positional:
        if _LEV_WORD_RE.match(t.low):
            if leverage is not None:
                raise UserError("Leverage is given twice.")
            leverage = _leverage(t.low)
        elif looks_like_size(t.low):
            if size is not None:
                raise UserError(
                    f"Two sizes: {size} and {shown(t.raw)}. "
                    f"For a limit price write @ {shown(t.raw)}."
                )
            size = parse_size(t.raw, book)
        elif t.low in ("buy", "sell", "long", "short"):
            raise _unexpected(t)
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
    post, reduce = "post" in opts, "reduce" in opts
    if "market" in opts and price is not None:
        raise UserError("A market order has no limit price: drop 'market' or the price.")
    if post and price is None:
        raise UserError("Post-only needs a limit price: add @ PRICE.")
    if reduce and (tps or sl is not None):
        raise UserError("tp/sl add exits to a new position; a reduce-only order opens none.")
    if len(set(tps)) != len(tps):
        raise UserError("The same take-profit price is given twice.")

    order_type: it.OrderType
    if stop_px is not None:
        order_type = "stop_limit" if price is not None else "stop"
    else:
        order_type = "limit" if price is not None else "market"
    check_exits(side == "Buy", price if price is not None else stop_px, tps, sl)
    return it.Order(
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
    )


def check_exits(
    long: bool,
    entry: Decimal | None,
    tps: tuple[Decimal, ...],
    sl: Decimal | None,
    entry_high: Decimal | None = None,
) -> None:
    """Exits on the right side: a long's sl below entry and tps above (mirrored for a short).

    `entry` is the low end of an entry range, `entry_high` its high end (signals).
    """
    word = "long" if long else "short"
    low = entry
    high = entry_high if entry_high is not None else entry
    if sl is not None and low is not None and high is not None:
        if long and sl >= low:
            raise UserError("The stop-loss must be below entry for a long.")
        if not long and sl <= high:
            raise UserError("The stop-loss must be above entry for a short.")
    for tp in tps:
        if low is not None and high is not None:
            if long and tp <= high:
                raise UserError("Take-profit must be above entry for a long.")
            if not long and tp >= low:
                raise UserError("Take-profit must be below entry for a short.")
        if sl is not None and (tp <= sl if long else tp >= sl):
            side = "above" if long else "below"
            raise UserError(f"Take-profit must be {side} the stop-loss for a {word}.")


def _close(name: str, args: Args, book: SymbolBook) -> it.Close:
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
    return it.Close(symbol=symbol, size=size, price=price)


_REF_RE = re.compile(r"^#?([0-9A-Za-z][0-9A-Za-z_\-]{0,63})$")


def _cancel(name: str, args: Args, book: SymbolBook) -> it.CancelOrder | it.CancelAll:
    toks = list(args.toks)
    if not toks:
        raise UserError("Cancel what? Give an order id, its number from /orders, or 'all'.")
    if toks[0].low == "all":
        return it.CancelAll(symbol=_symbol_or_none(toks[1:], book, name))
    if len(toks) >= 2 and toks[1].low == "all":  # `/cancel btc all`
        if len(toks) > 2:
            raise _unexpected(toks[2])
        return it.CancelAll(symbol=book.resolve(toks[0].raw))
    if len(toks) > 1:
        raise _unexpected(toks[1])
    m = _REF_RE.match(toks[0].raw)
    if m is None:
        raise UserError(f"{shown(toks[0].raw)} is not an order id.")
    if m.group(1).isdigit() and int(m.group(1)) == 0:
        raise UserError("Order numbers start at 1.")
    return it.CancelOrder(ref=m.group(1))


def _leverage_cmd(name: str, args: Args, book: SymbolBook) -> it.Leverage:
    symbol: str | None = None
    value: Decimal | None = None
    have_value = False
    for t in args.toks:
        if t.low == "cross" or looks_like_size(t.low) or _LEV_WORD_RE.match(t.low):
            if have_value:
                raise UserError("Leverage is given twice.")
            have_value = True
            value = None if t.low == "cross" else _leverage(t.low)
        elif symbol is None:
            symbol = book.resolve(t.raw)
        else:
            raise _unexpected(t)
    if not have_value:
        raise UserError("Which leverage? Give N (1 to 100) or 'cross'.")
    return it.Leverage(symbol=symbol, value=value)


# ------------------------------------------------------------------------ account, market


def _network(tok: Tok) -> it.Network:
    if tok.low not in _NETWORKS:
        raise UserError(f"Unknown network {shown(tok.raw, 16)}; use testnet, mainnet or paper.")
    return cast(it.Network, tok.low)


_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]{8,128}$")


def _connect(name: str, args: Args, book: SymbolBook) -> it.Connect:
    # Plain whitespace words: the tokenizer's gluing of `60000 -` + `61000` would fuse a
    # key ending in '-' with a secret starting with a digit.
    toks = [Tok(w, w.lower(), 0) for w in args.text.split()]
    network: it.Network = "testnet"
    if toks and toks[0].low in _NETWORKS:
        network = cast(it.Network, toks.pop(0).low)
    if not toks:
        return it.Connect(network=network)
    # Never quote these words back: they may be the secret.
    if len(toks) != 2:
        raise UserError(
            "Send the network alone and I'll ask for the key, or the key id and the secret "
            "in one message."
        )
    if network == "paper":
        raise UserError("The paper account needs no key.")
    key, secret = toks[0].raw, toks[1].raw
    if not _KEY_RE.match(key) or not _KEY_RE.match(secret):
        raise UserError("That doesn't look like a BitMEX key id and secret.")
    return it.Connect(network=network, key_id=key, secret=secret)


def _use(name: str, args: Args, book: SymbolBook) -> it.Use:
    if len(args.toks) != 1:
        raise UserError("Which account? testnet, mainnet or paper.")
    return it.Use(network=_network(args.toks[0]))


def _disconnect(name: str, args: Args, book: SymbolBook) -> it.Disconnect:
    if len(args.toks) > 1:
        raise _unexpected(args.toks[1])
    return it.Disconnect(network=_network(args.toks[0]) if args.toks else None)


def _price(name: str, args: Args, book: SymbolBook) -> it.Price:
    symbols: list[str] = []
    for t in args.toks:
        s = book.resolve(t.raw)
        if s not in symbols:
            symbols.append(s)
    if len(symbols) > 10:
        raise UserError("At most 10 symbols at once.")
    return it.Price(symbols=tuple(symbols))


_TIMEFRAMES = {"1m": "1m", "5m": "5m", "1h": "1h", "60m": "1h", "1d": "1d", "24h": "1d"}


def _chart(name: str, args: Args, book: SymbolBook) -> it.Chart:
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
            raise _unexpected(t)
    return it.Chart(
        symbol=symbol,
        timeframe=cast(it.Timeframe, timeframe or "1h"),
        candles=candles if candles is not None else 100,
    )


_PERIODS = {
    "1d": "1d", "24h": "1d", "day": "1d", "today": "1d",
    "7d": "7d", "1w": "7d", "week": "7d",
    "30d": "30d", "month": "30d",
    "all": "all",
}  # fmt: skip


def _pnl(name: str, args: Args, book: SymbolBook) -> it.Pnl:
    if not args.toks:
        return it.Pnl()
    if len(args.toks) > 1:
        raise _unexpected(args.toks[1])
    period = _PERIODS.get(args.toks[0].low)
    if period is None:
        raise UserError(f"Period {shown(args.toks[0].raw)}? Use 1d, 7d, 30d or all.")
    return it.Pnl(period=cast(it.PnlPeriod, period))


# -------------------------------------------------------------------------------- alerts

_DIRECTIONS = {"above": "above", ">": "above", ">=": "above", "over": "above",
               "below": "below", "<": "below", "<=": "below", "under": "below"}  # fmt: skip
_WINDOWS = {"15m": "15m", "1h": "1h", "60m": "1h", "4h": "4h", "24h": "24h", "1d": "24h"}
_ALERT_KINDS = {*_DIRECTIONS, "move", "funding"}


def _alert(
    name: str, args: Args, book: SymbolBook
) -> it.PriceAlert | it.MoveAlert | it.FundingAlert:
    toks = list(args.toks)
    symbol: str | None = None
    if toks and toks[0].low not in _ALERT_KINDS:
        symbol = book.resolve(toks.pop(0).raw)
    if not toks:
        raise UserError("Alert on what? above/below PRICE, move N% or funding above/below X%.")
    kind = toks.pop(0)
    if kind.low in _DIRECTIONS:
        if not toks:
            raise UserError(f"'{kind.raw}' needs a price after it.")
        price = parse_price(toks[0].raw, "alert price")
        note = args.rest_from(toks[1]) if len(toks) > 1 else None
        if note is not None and len(note) > 200:
            raise UserError("The note is too long (200 characters at most).")
        direction = cast(it.Direction, _DIRECTIONS[kind.low])
        return it.PriceAlert(symbol=symbol, direction=direction, price=price, note=note or None)
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
            raise _unexpected(toks[0])
        return it.MoveAlert(symbol=symbol, percent=percent, window=cast(it.MoveWindow, window))
    if kind.low == "funding":
        if len(toks) != 2 or toks[0].low not in _DIRECTIONS:
            raise UserError("Write funding above X% or funding below X%.")
        rate = parse_percent(toks[1].raw, "funding rate", high=Decimal(10), allow_negative=True)
        direction = cast(it.Direction, _DIRECTIONS[toks[0].low])
        return it.FundingAlert(symbol=symbol, direction=direction, percent=rate)
    raise _unexpected(kind)


def _id(tok: Tok, what: str) -> int:
    w = tok.low.lstrip("#")
    if not w.isdigit() or len(w) > 12 or int(w) == 0:
        raise UserError(f"{shown(tok.raw)} is not a {what} id.")
    return int(w)


def _unalert(name: str, args: Args, book: SymbolBook) -> it.Unalert:
    if len(args.toks) != 1:
        raise UserError("Which alert? Give its id from /alerts, or 'all'.")
    t = args.toks[0]
    return it.Unalert(alert_id=None if t.low == "all" else _id(t, "alert"))


def _liqalert(name: str, args: Args, book: SymbolBook) -> it.LiqAlert:
    if len(args.toks) != 1:
        raise UserError("Give a distance like 10%, or 'off'.")
    t = args.toks[0]
    if t.low == "off":
        return it.LiqAlert(percent=None)
    percent = parse_percent(t.raw, "distance")
    if percent >= 100:
        raise UserError("The distance must be below 100%.")
    return it.LiqAlert(percent=percent)


def _liqfeed(name: str, args: Args, book: SymbolBook) -> it.LiqFeed:
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
            raise _unexpected(t)
    if off:
        if amount is not None:
            raise UserError("'off' and a minimum conflict — give one.")
        return it.LiqFeed(symbol=symbol, min_usd=None)
    if amount is None:
        raise UserError("Give a minimum USD size, like min $1m, or 'off'.")
    return it.LiqFeed(symbol=symbol, min_usd=_usd(amount, "minimum size"))


def _summary(name: str, args: Args, book: SymbolBook) -> it.Summary:
    toks = list(args.toks)
    if not toks:
        raise UserError("daily, weekly or off?")
    kind = toks.pop(0).low
    if kind == "off":
        if toks:
            raise _unexpected(toks[0])
        return it.Summary(schedule="off")
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
            raise _unexpected(t)
    if at is None:
        raise UserError("At what time? Give HH:MM, like 09:00.")
    if kind == "weekly" and weekday is None:
        raise UserError("Which day? mon, tue, wed, thu, fri, sat or sun.")
    return it.Summary(schedule=cast(Literal["daily", "weekly"], kind), at=at, weekday=weekday)


def _tz(name: str, args: Args, book: SymbolBook) -> it.Tz:
    if not args.toks:
        raise UserError("Which time zone?")
    word = "".join(t.raw for t in args.toks)  # `UTC + 3` is one zone
    if len(word) > 64:
        raise UserError("That is not a time zone.")
    zone, offset = parse_zone(word)
    return it.Tz(zone=zone, offset_minutes=offset)


def _deadman(name: str, args: Args, book: SymbolBook) -> it.Deadman:
    if len(args.toks) != 1:
        raise UserError("Give the timeout in seconds, or 'off'.")
    t = args.toks[0]
    if t.low == "off":
        return it.Deadman(seconds=None)
    return it.Deadman(seconds=parse_seconds(t.raw, "timeout", low=15, high=86400))


_SETTING_KEYS = ("symbol", "btc", "unit", "confirm", "quiet", "notify")
_NOTIFY_KINDS = ("fills", "orders", "liquidations", "alerts", "summaries", "feeds")


def _settings(name: str, args: Args, book: SymbolBook) -> it.Settings:
    toks = list(args.toks)
    if not toks:
        return it.Settings()
    key = toks.pop(0).low
    if key not in _SETTING_KEYS:
        raise UserError(f"Unknown setting {shown(key)}; keys: {', '.join(_SETTING_KEYS)}.")
    if not toks:
        raise UserError(f"'{key}' needs a value.")
    if key == "notify":
        if len(toks) != 2 or toks[0].low not in _NOTIFY_KINDS:
            raise UserError(f"Write notify KIND on|off|silent; KIND: {', '.join(_NOTIFY_KINDS)}.")
        if toks[1].low not in ("on", "off", "silent"):
            raise UserError("Write on, off or silent.")
        return it.Settings(key=key, value=f"{toks[0].low} {toks[1].low}")
    if len(toks) > 1:
        raise _unexpected(toks[1])
    t = toks[0]
    value: str
    if key == "symbol":
        value = book.resolve(t.raw)
    elif key == "btc":
        value = book.resolve(t.raw)
        if not value.startswith("XBT"):
            raise UserError(f"{value} is not a BTC contract.")
    elif key == "unit":
        if t.low not in ("contracts", "usd", "coin"):
            raise UserError("The size unit is contracts, usd or coin.")
        value = t.low
    elif key == "confirm":
        value = str(parse_seconds(t.raw, "confirmation timeout", low=10, high=600))
    else:  # quiet
        if t.low == "off":
            value = "off"
        else:
            parts = t.low.split("-")
            if len(parts) != 2:
                raise UserError("Write quiet hours as HH:MM-HH:MM, or off.")
            a, b = parse_hhmm(parts[0]), parse_hhmm(parts[1])
            value = f"{a:%H:%M}-{b:%H:%M}"
    return it.Settings(key=key, value=value)


# --------------------------------------------------------------------------------- feeds

_NAME_RE = re.compile(r"^@?([A-Za-z0-9][A-Za-z0-9_\-]{0,31})$")


def _feed_name(tok: Tok) -> str:
    m = _NAME_RE.match(tok.raw)
    if m is None:
        raise UserError(f"{shown(tok.raw)} is not a feed name (letters, digits, _ and -).")
    return m.group(1)


def _feed(name: str, args: Args, book: SymbolBook) -> it.Feed:
    toks = list(args.toks)
    if not toks or toks[0].low not in ("on", "off"):
        raise UserError("on or off?")
    on = toks.pop(0).low == "on"
    if len(toks) > 1 or (toks and not on):
        raise _unexpected(toks[-1])
    return it.Feed(on=on, name=_feed_name(toks[0]) if toks else None)


_SIGNAL_SPEC: _Spec = {
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
) -> it.Signal | it.SignalClose | it.SignalMoveSl:
    toks = list(args.toks)
    if not toks:
        raise UserError("long, short, close or move-sl?")
    head = toks[0].low
    if head == "close":
        if len(toks) != 2:
            raise UserError("Write signal close ID.")
        return it.SignalClose(signal_id=_id(toks[1], "signal"))
    if head in ("move-sl", "movesl", "move_sl", "move"):
        rest = toks[1:]
        if head == "move" and rest and rest[0].low == "sl":
            rest = rest[1:]
        if len(rest) != 2:
            raise UserError("Write signal move-sl ID PRICE.")
        return it.SignalMoveSl(
            signal_id=_id(rest[0], "signal"), sl=parse_price(rest[1].raw, "stop-loss")
        )
    if head not in ("long", "short", "buy", "sell"):
        raise UserError("long, short, close or move-sl?")
    side: Literal["long", "short"] = "long" if head in ("long", "buy") else "short"
    opts, positional = split_options(Args(args.text, tuple(toks[1:])), _SIGNAL_SPEC)
    symbol: str | None = None
    leverage = _leverage(opts["lev"][1]) if "lev" in opts else None
    for t in positional:
        if _LEV_WORD_RE.match(t.low) and leverage is None:
            leverage = _leverage(t.low)
        elif symbol is None and not looks_like_size(t.low):
            symbol = book.resolve(t.raw)
        else:
            raise _unexpected(t)
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
    return it.Signal(
        side=side,
        symbol=symbol,
        entry_low=low,
        entry_high=high,
        sl=sl,
        tps=tps,
        leverage=leverage,
        risk_percent=risk,
    )


def _follow(name: str, args: Args, book: SymbolBook) -> it.Follow:
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
        raise _unexpected(positional[0])
    if "mode" not in opts:
        raise UserError("How big? risk N%, size $N or size N (contracts).")
    kw, raw = opts["mode"]
    max_usd = _usd(opts["max"][1], "maximum") if "max" in opts else None
    if kw == "risk":
        return it.Follow(feed=feed, mode="risk", value=parse_percent(raw, "risk"),
                         max_usd=max_usd, auto=auto)
    if max_usd is not None:
        raise UserError("'max' goes with risk N%; a fixed size needs no cap.")
    low = raw.lower()
    if low.startswith("$") or low.endswith(("usd", "usdt", "$")):
        return it.Follow(feed=feed, mode="usd", value=_usd(raw, "size"), auto=auto)
    size = parse_size(raw, book)
    if size.kind != "contracts":
        raise UserError("A follow size is $N (USD) or N (contracts).")
    return it.Follow(feed=feed, mode="contracts", value=size.value, auto=auto)


def _feedstats(name: str, args: Args, book: SymbolBook) -> it.FeedStats:
    if len(args.toks) > 1:
        raise UserError("One feed name at most.")
    return it.FeedStats(feed=_feed_name(args.toks[0]).lower() if args.toks else None)


def _unfollow(name: str, args: Args, book: SymbolBook) -> it.Unfollow:
    if len(args.toks) != 1:
        raise UserError("Which feed?")
    return it.Unfollow(feed=_feed_name(args.toks[0]))


def _broadcast(name: str, args: Args, book: SymbolBook) -> it.Broadcast:
    text = args.text.strip()
    if not text:
        raise UserError("Broadcast what?")
    if len(text) > 4000:
        raise UserError("Too long for one message (4000 characters at most).")
    return it.Broadcast(text=text)


# ---------------------------------------------------------------------------- simple ones


def _help(name: str, args: Args, book: SymbolBook) -> it.Help:
    if not args.toks:
        return it.Help()
    if len(args.toks) > 1:
        raise _unexpected(args.toks[1])
    topic = canonical(args.toks[0].low)
    if topic is None:
        raise UserError(f"No command /{shown(args.toks[0].raw.lstrip('/'))}.")
    return it.Help(topic=topic)


def _start(name: str, args: Args, book: SymbolBook) -> it.Start:
    # Deep-link payloads use this alphabet; anything else is chatter, not an argument.
    if args.toks and re.match(r"^[A-Za-z0-9_\-]{1,64}$", args.toks[0].raw):
        return it.Start(payload=args.toks[0].raw)
    return it.Start()


def _plain(cls: type[it.Intent]) -> Callable[[str, Args, SymbolBook], it.Intent]:
    def parse_plain(name: str, args: Args, book: SymbolBook) -> it.Intent:
        _no_args(args, name)
        return cls()

    return parse_plain


def _orders(name: str, args: Args, book: SymbolBook) -> it.Orders:
    return it.Orders(symbol=_symbol_or_none(list(args.toks), book, name))


_Parser = Callable[[str, Args, SymbolBook], it.Intent]
_PARSERS: dict[str, _Parser] = {
    "start": _start,
    "help": _help,
    "connect": _connect,
    "accounts": _plain(it.Accounts),
    "use": _use,
    "disconnect": _disconnect,
    "price": _price,
    "chart": _chart,
    "buy": _order,
    "sell": _order,
    "close": _close,
    "cancel": _cancel,
    "orders": _orders,
    "positions": _plain(it.Positions),
    "balance": _plain(it.Balance),
    "leverage": _leverage_cmd,
    "pnl": _pnl,
    "alert": _alert,
    "alerts": _plain(it.Alerts),
    "unalert": _unalert,
    "liqalert": _liqalert,
    "liqfeed": _liqfeed,
    "summary": _summary,
    "tz": _tz,
    "deadman": _deadman,
    "settings": _settings,
    "feed": _feed,
    "signal": _signal,
    "feedstats": _feedstats,
    "follow": _follow,
    "unfollow": _unfollow,
    "feeds": _plain(it.Feeds),
    "stats": _plain(it.Stats),
    "broadcast": _broadcast,
}

# ------------------------------------------------------------------------------ the entry

_HEAD_RE = re.compile(r"^\s*(/?)([A-Za-z][A-Za-z0-9_]{0,31})(?:@([A-Za-z0-9_]{1,64}))?(?=\s|$)")


def parse(
    text: str,
    *,
    bot_username: str | None = None,
    private: bool = True,
    symbols: SymbolBook,
) -> it.Intent | None:
    """Parse one chat message into an intent, or None when it is not a command for us.

    Raises only UserError; its message is ready to send (problem, usage, example).
    """
    m = _HEAD_RE.match(text)
    if m is None:
        if private and text.lstrip().startswith("/") and text.strip() != "/":
            word = text.strip().split()[0]
            raise UserError(f"Unknown command {shown(word)} — see /help.")
        return None
    slash, word, addressee = m.group(1), m.group(2), m.group(3)
    if addressee is not None:
        if not slash:
            return None
        if bot_username is not None and addressee.lower() != bot_username.lstrip("@").lower():
            return None
    if not slash and not private:
        return None
    name = word.lower()
    canon = canonical(name)
    if canon is None or canon not in _PARSERS:
        if not slash or (not private and addressee is None):
            return None
        raise UserError(f"Unknown command /{shown(word)} — see /help.")
    args = tokenize(text[m.end() :])
    try:
        return _PARSERS[canon](name, args, symbols)
    except UserError as e:
        raise UserError(f"{e}\n{USAGE[canon]}") from None


def holds_secret(text: str) -> bool:
    """True when the message is a connect command carrying more than a network word.

    Such a message must be deleted even when it does not parse (or arrives in a group).
    """
    m = _HEAD_RE.match(text)
    if m is None or m.group(2).lower() != "connect":
        return False
    words = text[m.end() :].split()
    return any(w.lower() not in _NETWORKS for w in words)
