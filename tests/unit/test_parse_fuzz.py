"""Property tests: the parser never raises anything but UserError, what it accepts is
self-consistent, and intents formatted back into chat text parse to the same intent."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import UserError
from bot.parse import (
    MAX_NUMBER,
    USAGE,
    Intent,
    MoveAlert,
    Order,
    PriceAlert,
    Signal,
    SizeSpec,
    SymbolBook,
    parse,
    parse_number,
)

SYMBOLS = ["XBTUSD", "ETHUSD", "XBTUSDT", "ETHUSDT", "SOLUSDT", "XBTZ25"]
BOOK = SymbolBook(SYMBOLS)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

COMMAND_WORDS = [*USAGE, "long", "short", "pos"]
VOCAB = [
    *COMMAND_WORDS,
    "@", "at", "limit", "stop", "tp", "sl", "lev", "post", "reduce", "market", "entry", "risk",
    "min", "max", "size", "all", "off", "on", "cross", "above", "below", "move", "funding", "in",
    "close", "move-sl", "daily", "weekly", "mon", "sun", "testnet", "mainnet", "paper",
    "btc", "xbt", "eth", "sol", "XBTUSD", "btc/usdt", "#BTC", "ethusdt", "foo", "xbtusdd",
    "100", "0", "-5", "60k", "60,000", "1.5m", "0.5", ".5", "$500", "500usd", "0.01btc",
    "0.5eth", "10%", "150%", "5x", "x10", "55k,52k", "60k-61k", "09:00", "25:61", "1m", "5m",
    "1h", "4h", "15m", "24h", "1d", "7d", "30d", "Europe/Berlin", "UTC+3", "UTC-5:30",
    "1e9", "nan", "inf", "99999999999999", "0.000000000001", ",", "-", "%", "$", "sl=5",
    "#3", "3", "6f2a91c0", "alpha", "@alpha", "\n", "x" * 300,
    "force", "1%", "15%", "presets", "default",  # issue #14: risk sizing, size presets
    "deadman", "dms", "pin", "stop",  # /panic, /monitor (issue #14)
    # issue #14 /sl /tp
    "be", "breakeven", "trail", "trailing", "1%", "-2%", "+3%", "−2%", "$0.01", "65k:50%",
    "65k:50%,70k:50%", "65k:50%,70k:40%", ":", "65k:", ":50%", "65k,70k", "trail$500",
]  # fmt: skip


def _decimals(intent: Intent) -> list[D]:
    """Every Decimal an intent carries, however nested."""
    out: list[D] = []
    for f in dataclasses.fields(intent):
        v = getattr(intent, f.name)
        values = v if isinstance(v, tuple) else (v,)
        for item in values:
            if isinstance(item, D):
                out.append(item)
            elif isinstance(item, SizeSpec):
                out.append(item.value)
    return out


def check_consistent(intent: Intent) -> None:
    """What any accepted intent must satisfy, whatever the input was."""
    for d in _decimals(intent):
        assert d.is_finite()
        assert abs(d) <= MAX_NUMBER
    if isinstance(intent, Order):
        assert intent.size.value > 0
        if intent.size.kind == "risk":  # issue #14: never without a stop, >10 % only forced
            assert intent.sl is not None
            assert intent.size.value <= 10 or intent.force
        else:
            assert not intent.force
        if intent.size.kind == "contracts":
            assert intent.size.value == intent.size.value.to_integral_value()
        if intent.size.kind == "percent":
            assert intent.size.value <= 100
        expected_type = {
            (False, False): "market",
            (True, False): "limit",
            (False, True): "stop",
            (True, True): "stop_limit",
        }[(intent.price is not None, intent.stop_px is not None)]
        assert intent.order_type == expected_type
        if intent.post_only:
            assert intent.price is not None
        if intent.reduce_only:
            assert not intent.tps and intent.sl is None
        entry = intent.entry
        long = intent.side == "Buy"
        for tp in intent.tps:
            if entry is not None:
                assert tp > entry if long else tp < entry
            if intent.sl is not None:
                assert tp > intent.sl if long else tp < intent.sl
        if intent.sl is not None and entry is not None:
            assert intent.sl < entry if long else intent.sl > entry
        if intent.leverage is not None:
            assert 0 < intent.leverage <= 100
    if isinstance(intent, Signal):
        assert intent.entry_low <= intent.entry_high
        if intent.side == "long":
            assert intent.sl < intent.entry_low
            assert all(tp > intent.entry_high for tp in intent.tps)
        else:
            assert intent.sl > intent.entry_high
            assert all(tp < intent.entry_low for tp in intent.tps)


def attempt(text: str, private: bool = True) -> Intent | None:
    try:
        result = parse(text, bot_username="MyBot", private=private, symbols=BOOK)
    except UserError as e:
        assert str(e).strip()
        return None
    if result is not None:
        check_consistent(result)
    return result


@FAST
@given(st.text(max_size=200), st.booleans())
def test_random_text_raises_only_user_error(text: str, private: bool) -> None:
    attempt(text, private)
    attempt("/" + text, private)


@FAST
@given(
    st.sampled_from(COMMAND_WORDS),
    st.lists(st.sampled_from(VOCAB), max_size=10),
    st.booleans(),
    st.sampled_from(["", "@MyBot", "@other"]),
)
def test_token_soups_raise_only_user_error(
    command: str, words: list[str], slash: bool, addressee: str
) -> None:
    head = ("/" if slash else "") + command + (addressee if slash else "")
    attempt(" ".join([head, *words]))


@FAST
@given(st.sampled_from(COMMAND_WORDS), st.lists(st.text(max_size=12), max_size=6))
def test_commands_with_random_words(command: str, words: list[str]) -> None:
    attempt(" ".join(["/" + command, *words]))


# ------------------------------------------------------------------------------ round trip

prices = st.integers(min_value=1, max_value=200_000).map(D) | st.decimals(
    min_value=D("0.5"), max_value=D(200_000), places=2
).filter(lambda d: d > 0)


def fmt_number(d: D, style: int) -> str:
    """Write a number the ways people do: 60000, 60,000 or 60k."""
    if style == 1 and d == d.to_integral_value() and d >= 1000:
        return f"{d:,f}"
    if style == 2 and d % 1000 == 0 and d >= 1000:
        return f"{d / 1000:f}k"
    return format(d, "f")


@FAST
@given(st.decimals(min_value=D("0.0001"), max_value=D(10**9), places=4), st.integers(0, 2))
def test_numbers_round_trip(d: D, style: int) -> None:
    assert parse_number(fmt_number(d, style)) == d


sizes = st.one_of(
    st.builds(lambda n: SizeSpec("contracts", D(n)), st.integers(1, 10**7)),
    st.builds(lambda n: SizeSpec("usd", D(n)), st.integers(1, 10**6)),
    st.builds(
        lambda d, c: SizeSpec("coin", d, c),
        st.decimals(min_value=D("0.0001"), max_value=D(100), places=4),
        st.sampled_from(["XBT", "ETH", "SOL"]),
    ),
    st.builds(lambda n: SizeSpec("percent", D(n)), st.integers(1, 100)),
)
SYMBOL_WORDS = {"XBTUSD": "btc", "ETHUSD": "eth", "XBTUSDT": "btc/usdt", "SOLUSDT": "SOLUSDT"}


def fmt_size(size: SizeSpec, style: int) -> str:
    v = format(size.value, "f")
    if size.kind == "usd":
        return f"${v}" if style % 2 else f"{v}usd"
    if size.kind == "percent":
        return f"{v}%"
    if size.kind == "coin":
        return f"{v}{'btc' if size.coin == 'XBT' else (size.coin or '').lower()}"
    return fmt_number(size.value, style)


@st.composite
def orders(draw: st.DrawFn) -> Order:
    side = draw(st.sampled_from(["Buy", "Sell"]))
    long = side == "Buy"
    ref = draw(st.integers(2000, 100_000))
    has_price, has_stop = draw(st.booleans()), draw(st.booleans())
    price = D(ref) if has_price else None
    stop_px = D(ref + draw(st.integers(-500, 500))) if has_stop else None
    if stop_px is not None and stop_px <= 0:
        stop_px = D(1)
    entry = price if price is not None else stop_px
    anchor = entry if entry is not None else D(ref)
    sign = 1 if long else -1
    reduce = draw(st.booleans()) and draw(st.booleans())
    sl = tps = None
    if not reduce:
        if draw(st.booleans()):
            sl = anchor - sign * draw(st.integers(1, 900))
        offsets = draw(st.lists(st.integers(1, 50_000 if long else 1000), max_size=3, unique=True))
        tps = tuple(anchor + sign * o for o in offsets)
    order_type = {
        (False, False): "market",
        (True, False): "limit",
        (False, True): "stop",
        (True, True): "stop_limit",
    }[(price is not None, stop_px is not None)]
    return Order(
        side=side,  # type: ignore[arg-type]
        size=draw(sizes),
        symbol=draw(st.sampled_from([None, *SYMBOL_WORDS])),
        order_type=order_type,  # type: ignore[arg-type]
        price=price,
        stop_px=stop_px,
        tps=tps or (),
        sl=sl,
        leverage=draw(st.none() | st.integers(1, 100).map(D)),
        post_only=price is not None and draw(st.booleans()),
        reduce_only=reduce,
    )


def order_text(order: Order, style: int, perm: list[int], verb: str) -> str:
    lead = [fmt_size(order.size, style)]
    if order.symbol is not None:
        lead.append(SYMBOL_WORDS[order.symbol])
    parts: list[str] = []
    if order.price is not None:
        parts.append(("@ " if style % 2 else "limit ") + fmt_number(order.price, style))
    if order.stop_px is not None:
        parts.append("stop " + fmt_number(order.stop_px, style))
    if order.tps:
        parts.append("tp " + ",".join(format(t, "f") for t in order.tps))
    if order.sl is not None:
        parts.append("sl " + fmt_number(order.sl, style))
    if order.leverage is not None:
        parts.append(f"lev {order.leverage}" if style % 2 else f"{order.leverage}x")
    if order.post_only:
        parts.append("post")
    if order.reduce_only:
        parts.append("reduce")
    shuffled = [parts[i % len(parts)] for i in perm if parts] if parts else []
    ordered = list(dict.fromkeys(shuffled)) + [x for x in parts if x not in shuffled]
    return " ".join([f"/{verb}", *lead, *ordered])


@FAST
@given(orders(), st.integers(0, 2), st.permutations(list(range(8))), st.booleans())
def test_orders_round_trip(order: Order, style: int, perm: list[int], alias: bool) -> None:
    verb = {("Buy", False): "buy", ("Buy", True): "long", ("Sell", False): "sell"}.get(
        (order.side, alias), "short"
    )
    text = order_text(order, style, perm, verb)
    assert parse(text, symbols=BOOK) == order, text


@st.composite
def signals(draw: st.DrawFn) -> Signal:
    side = draw(st.sampled_from(["long", "short"]))
    low = D(draw(st.integers(1000, 100_000)))
    high = low + draw(st.integers(0, 500))
    if side == "long":
        sl = low - draw(st.integers(1, 900))
        tps = tuple(high + o for o in draw(st.lists(st.integers(1, 9000), max_size=3, unique=True)))
    else:
        sl = high + draw(st.integers(1, 900))
        # Within 2x of entry: `999,199` is genuinely ambiguous (a list or 999,199), and
        # the parser reads lists of wildly different numbers as thousands groups.
        tps = tuple(low - o for o in draw(st.lists(st.integers(1, 500), max_size=3, unique=True)))
    return Signal(
        side=side,  # type: ignore[arg-type]
        symbol=draw(st.sampled_from(list(SYMBOL_WORDS))),
        entry_low=low,
        entry_high=high,
        sl=sl,
        tps=tps,
        leverage=draw(st.none() | st.integers(1, 100).map(D)),
        risk_percent=draw(st.none() | st.integers(1, 5).map(D)),
    )


@FAST
@given(signals(), st.permutations(list(range(5))))
def test_signals_round_trip(signal: Signal, perm: list[int]) -> None:
    entry = format(signal.entry_low, "f")
    if signal.entry_high != signal.entry_low:
        entry += f"-{signal.entry_high}"
    parts = [f"entry {entry}", f"sl {signal.sl}"]
    if signal.tps:
        parts.append("tp " + ",".join(str(t) for t in signal.tps))
    if signal.leverage is not None:
        parts.append(f"lev {signal.leverage}")
    if signal.risk_percent is not None:
        parts.append(f"risk {signal.risk_percent}%")
    ordered = [parts[i] for i in perm if i < len(parts)]
    text = " ".join(["/signal", signal.side, SYMBOL_WORDS[signal.symbol], *ordered])
    assert parse(text, symbols=BOOK, private=False) == signal, text


@FAST
@given(
    st.sampled_from(list(SYMBOL_WORDS)),
    st.sampled_from(["above", "below"]),
    prices,
    st.none() | st.text(alphabet="abcXYZ !?.@#", min_size=1, max_size=40),
)
def test_price_alerts_round_trip(symbol: str, direction: str, price: D, note: str | None) -> None:
    note = (note or "").strip() or None
    text = f"/alert {SYMBOL_WORDS[symbol]} {direction} {price:f} {note or ''}"
    expected = PriceAlert(symbol=symbol, direction=direction, price=price, note=note)  # type: ignore[arg-type]
    assert parse(text, symbols=BOOK) == expected


@FAST
@given(
    st.sampled_from(list(SYMBOL_WORDS)),
    st.decimals(min_value=D("0.1"), max_value=D(100), places=1),
    st.sampled_from(["15m", "1h", "4h", "24h"]),
)
def test_move_alerts_round_trip(symbol: str, percent: D, window: str) -> None:
    text = f"/alert {SYMBOL_WORDS[symbol]} move {percent}% in {window}"
    expected = MoveAlert(symbol=symbol, percent=percent, window=window)  # type: ignore[arg-type]
    assert parse(text, symbols=BOOK) == expected


@FAST
@given(st.sampled_from(["buy", "sell", "long", "short"]), st.integers(1, 1000),
       st.sampled_from([None, *SYMBOL_WORDS]), st.integers(1, 900), st.booleans(),
       st.permutations(list(range(3))))
def test_risk_orders_round_trip(verb: str, tenths: int, symbol: str | None, gap: int,
                                force: bool, perm: list[int]) -> None:
    """`risk N% sl X [force]` in any order: the risk size and stop come back as typed; over
    10 % without force it is refused (issue #14 item 4)."""
    risk = D(tenths) / 10
    long = verb in ("buy", "long")
    sl = D(60000 - gap if long else 60000 + gap)
    parts = [f"risk {risk}%", f"sl {sl}", "force" if force else ""]
    words = [f"/{verb}", *([SYMBOL_WORDS[symbol]] if symbol else []),
             *(parts[i] for i in perm)]
    text = " ".join(w for w in words if w)
    try:
        got = parse(text, symbols=BOOK)
    except UserError as e:
        assert risk > 10 and not force, (text, str(e))
        assert "force" in str(e)
        return
    assert isinstance(got, Order), text
    assert (got.size, got.sl, got.force, got.symbol) == (SizeSpec("risk", risk), sl, force,
                                                         symbol)


@FAST
@given(st.sampled_from(["panic", "monitor"]),
       st.lists(st.sampled_from(["deadman", "dms", "off", "on", "pin", "stop", "now", "btc"]),
                max_size=3), st.booleans())
def test_panic_and_monitor_words(command: str, words: list[str], slash: bool) -> None:
    """Exactly the documented forms parse; everything else is one clear line."""
    from bot.parse import Monitor, Panic

    text = ("/" if slash else "") + " ".join([command, *words])
    try:
        intent = parse(text, bot_username="MyBot", private=True, symbols=BOOK)
    except UserError as e:
        assert str(e).startswith("Only '/"), str(e)
        return
    if command == "panic":
        assert intent == Panic(deadman_off=bool(words)), text
        assert words in ([], ["deadman", "off"], ["dms", "off"])
    else:
        expected = {(): "on", ("on",): "on", ("off",): "off", ("stop",): "off",
                    ("pin",): "pin"}
        assert intent == Monitor(action=expected[tuple(words)]), text  # type: ignore[arg-type]
