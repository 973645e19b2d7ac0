"""The free-text signal recogniser: table cases and hypothesis over signal-shaped text."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import UserError
from bot.parse import check_exits
from bot.parse.signals import looks_like_signal, recognise, risk_reward

BOOK_SYMBOLS = ["XBTUSD", "ETHUSD", "XBTUSDT", "ETHUSDT", "SOLUSDT"]


def book():  # type: ignore[no-untyped-def]
    from bot.parse.values import SymbolBook

    return SymbolBook(BOOK_SYMBOLS, "XBTUSD")


D = Decimal


@pytest.mark.parametrize(
    ("text", "symbol", "side", "entry", "tps", "sl"),
    [
        ("BTC/USDT LONG\nEntry 60k-61k\nTP1 62k\nTP2 64k\nSL 58,500",
         "XBTUSDT", "long", (D(60000), D(61000)), (D(62000), D(64000)), D(58500)),
        ("#BTC short\nEntry: 60000\nTargets: 59000, 58000\nStop loss: 61000",
         "XBTUSD", "short", (D(60000), D(60000)), (D(59000), D(58000)), D(61000)),
        ("XBTUSD\nentry 60000\ntp 61000\nsl 59000",  # no side word: the stop tells
         "XBTUSD", "long", (D(60000), D(60000)), (D(61000),), D(59000)),
        ("Long ETH @ 3000 sl 2900 tp 3100/3200",
         "ETHUSD", "long", (D(3000), D(3000)), (D(3100), D(3200)), D(2900)),
        ("SOL/USDT long entry 150 - 152 targets 160,170 stop 140",
         "SOLUSDT", "long", (D(150), D(152)), (D(160), D(170)), D(140)),
        ("BTC LONG\nEntry 60000\nTargets:\n1) 61000\n2) 62000\nSL 59000",
         "XBTUSD", "long", (D(60000), D(60000)), (D(61000), D(62000)), D(59000)),
    ],
)
def test_common_shapes(text: str, symbol: str, side: str, entry: tuple[Decimal, Decimal],
                       tps: tuple[Decimal, ...], sl: Decimal) -> None:
    s = recognise(text, book())
    assert s is not None
    assert (s.symbol, s.side, (s.entry_low, s.entry_high), s.tps, s.sl) == (
        symbol, side, entry, tps, sl)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("BTC long, target 70k", "no stop-loss"),
        ("BTC/USDT LONG entry 60000 sl 61000", "below entry"),
        ("#ETH short entry 3000 tp 3100 sl 3200", "Take-profit must be below"),
        ("BTC long sl 59000 tp 62000", "no entry"),
    ],
)
def test_refused_with_reason(text: str, reason: str) -> None:
    with pytest.raises(UserError, match=reason):
        recognise(text, book())


@pytest.mark.parametrize("text", [
    "what do you think about BTC at 60000?", "gm", "long day, huh", "BTC long",
    "I bought 100 at the open", "", "sl 59000 entry 60000",  # no pair
])
def test_not_signal_shaped(text: str) -> None:
    assert recognise(text, book()) is None


def test_leverage_and_risk_and_rr() -> None:
    s = recognise("$eth short entry 3000 tp 2800 sl 3100 20x risk 2%", book())
    assert s is not None and s.leverage == 20 and s.risk_percent == 2
    assert risk_reward(s) == 2
    assert looks_like_signal("BTC entry 60000") and not looks_like_signal("hello BTC")


# --- properties --------------------------------------------------------------------------

prices = st.integers(min_value=100, max_value=200_000)
pairs = st.sampled_from(["BTC/USDT", "XBTUSD", "#BTC", "$ETH", "ETHUSDT", "SOL/USDT", "#sol"])


def fmt_price(p: int, style: int) -> str:
    if style == 1 and p % 1000 == 0:
        return f"{p // 1000}k"
    if style == 2 and p >= 1000:
        return f"{p:,}"
    return str(p)


@st.composite
def signal_texts(draw: st.DrawFn) -> tuple[str, str, int, int, list[int], int]:
    side = draw(st.sampled_from(["long", "short"]))
    entry = draw(prices)
    width = draw(st.integers(min_value=0, max_value=entry // 20))
    sl_gap = draw(st.integers(min_value=1, max_value=max(1, entry // 5)))
    gaps = draw(st.lists(st.integers(min_value=1, max_value=max(1, entry // 5)), max_size=4,
                         unique=True))
    low, high = entry, entry + width
    if side == "long":
        sl = low - sl_gap
        tps = sorted(high + g for g in gaps)
    else:
        sl = high + sl_gap
        tps = sorted((low - g for g in gaps), reverse=True)
    style = draw(st.integers(0, 2))
    ep = fmt_price(low, style) if width == 0 else (
        f"{fmt_price(low, style)}{draw(st.sampled_from(['-', ' - ', ' to ', '–']))}"
        f"{fmt_price(high, style)}")
    side_word = draw(st.sampled_from([side, side.upper(), side.title()]))
    tp_block = ""
    if tps:
        if draw(st.booleans()):
            tp_block = "\n".join(f"TP{i} {fmt_price(t, style)}" for i, t in enumerate(tps, 1))
        else:
            tp_block = "Targets: " + " / ".join(fmt_price(t, style) for t in tps)
    sl_word = draw(st.sampled_from(["SL", "Stop loss:", "stop", "SL:"]))
    parts = [f"{draw(pairs)} {side_word}", f"Entry {ep}", tp_block,
             f"{sl_word} {fmt_price(sl, style)}"]
    sep = draw(st.sampled_from(["\n", "\n\n", " "]))
    text = sep.join(p for p in parts if p)
    return text, side, low, high, tps, sl


@settings(max_examples=300, deadline=None)
@given(signal_texts())
def test_generated_signals_round_trip(case: tuple[str, str, int, int, list[int], int]) -> None:
    text, side, low, high, tps, sl = case
    try:
        s = recognise(text, book())
    except UserError:
        # Only the ambiguous comma case may refuse (`1,500 / 2,000` style lists are fine).
        assert "," in text, text
        return
    assert s is not None, text
    assert (s.side, s.entry_low, s.entry_high, s.sl) == (side, low, high, sl), text
    assert list(s.tps) == tps, text


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(
    "BTCETHSOLusdtxbt#$/ -–:,.\n0123456789kKlongshortentrytpslstoptargets@%x")), max_size=120))
def test_nothing_crashes_and_what_parses_is_consistent(text: str) -> None:
    try:
        s = recognise(text, book())
    except UserError:
        return
    if s is None:
        return
    assert s.entry_low <= s.entry_high
    assert s.sl > 0 and all(t > 0 for t in s.tps)
    check_exits(s.side == "long", s.entry_low, s.tps, s.sl, entry_high=s.entry_high)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_unicode_never_crashes(text: str) -> None:
    try:
        recognise(text, book())
    except UserError:
        pass


def test_feed_record_never_shows_amounts_however_many_members() -> None:
    from bot.db.models import Feed
    from bot.feeds import Feeds, Record, Trade

    def trade(user: int, pnl: int) -> Trade:
        return Trade(signal_id=1, user_id=user, currency="XBt", pnl=Decimal(pnl),
                     r=Decimal(2), pnl_posted=Decimal(pnl), r_posted=Decimal(2))

    feed = Feed(chat_id=-1, name="alpha", created_by=1)
    trades = [trade(1, 50_000), trade(1, 10_000), trade(2, 30_000)]
    for n in range(3, 40):  # a sum over n members is one member's by subtraction
        rec = Record(posted=1, followed=1, entries=n, trades=[*trades, *(
            trade(u, 10_000 * u) for u in range(3, n + 1))])
        text = Feeds._stats_block(feed, rec)
        assert "XBT" not in text and "PnL" not in text and "avg 2.00R" in text, text
        assert "No amounts here" in text
