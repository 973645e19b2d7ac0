"""Table-driven tests of the chat language (COMMANDS.md) -> typed intents."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal as D

import pytest

from bot.errors import UserError
from bot.parse import (
    USAGE,
    Accounts,
    Alerts,
    Balance,
    Broadcast,
    CancelAll,
    CancelOrder,
    Chart,
    Close,
    Connect,
    Deadman,
    Disconnect,
    Feed,
    Feeds,
    FeedStats,
    Follow,
    FundingAlert,
    Help,
    Intent,
    Leverage,
    LiqAlert,
    LiqFeed,
    MoveAlert,
    Order,
    Orders,
    Pnl,
    Positions,
    Price,
    PriceAlert,
    Settings,
    Signal,
    SignalClose,
    SignalMoveSl,
    SizeSpec,
    Start,
    Stats,
    Summary,
    SymbolBook,
    Tz,
    Unalert,
    Unfollow,
    Use,
    help_text,
    holds_secret,
    parse,
    parse_number,
)

SYMBOLS = ["XBTUSD", "ETHUSD", "XBTUSDT", "ETHUSDT", "SOLUSDT", "XBTZ25", "LINKUSDT"]
BOOK = SymbolBook(SYMBOLS)


def p(text: str, **kw: object) -> Intent | None:
    return parse(text, bot_username="MyBot", symbols=BOOK, **kw)  # type: ignore[arg-type]


def contracts(n: int | str) -> SizeSpec:
    return SizeSpec("contracts", D(n))


def buy(size: SizeSpec, symbol: str | None = "XBTUSD", **kw: object) -> Order:
    return Order(side="Buy", size=size, symbol=symbol, **kw)  # type: ignore[arg-type]


def sell(size: SizeSpec, symbol: str | None = "XBTUSD", **kw: object) -> Order:
    return Order(side="Sell", size=size, symbol=symbol, **kw)  # type: ignore[arg-type]


ORDERS: list[tuple[str, Order]] = [
    ("/buy 100 btc", buy(contracts(100))),
    ("buy 100 btc", buy(contracts(100))),
    ("/BUY 100 BTC", buy(contracts(100))),
    ("/buy@MyBot 100 btc", buy(contracts(100))),
    ("/buy@mybot 100 btc", buy(contracts(100))),
    ("/buy 100", buy(contracts(100), symbol=None)),
    ("/long 100 xbt", buy(contracts(100))),
    (
        "/buy 100 btc @ 60k sl 58k",
        buy(contracts(100), order_type="limit", price=D(60000), sl=D(58000)),
    ),
    (
        "/buy 100 btc @60,000 sl 58000",
        buy(contracts(100), order_type="limit", price=D(60000), sl=D(58000)),
    ),
    (
        "/buy 100 btc at 60k",
        buy(contracts(100), order_type="limit", price=D(60000)),
    ),
    (
        "buy $500 eth limit 3000 post",
        buy(SizeSpec("usd", D(500)), "ETHUSD", order_type="limit", price=D(3000), post_only=True),
    ),
    (
        "/buy 500usd eth limit 3000",
        buy(SizeSpec("usd", D(500)), "ETHUSD", order_type="limit", price=D(3000)),
    ),
    (
        "/sell 0.01btc xbtusd stop 58000",
        sell(SizeSpec("coin", D("0.01"), "XBT"), order_type="stop", stop_px=D(58000)),
    ),
    (
        "/sell 0.5eth ethusdt",
        sell(SizeSpec("coin", D("0.5"), "ETH"), "ETHUSDT"),
    ),
    (
        "/short 10% btc lev 5 tp 55k,52k sl 62k",
        sell(SizeSpec("percent", D(10)), leverage=D(5), tps=(D(55000), D(52000)), sl=D(62000)),
    ),
    (
        "/short 10% btc 5x tp 55k, 52k sl 62k",
        sell(SizeSpec("percent", D(10)), leverage=D(5), tps=(D(55000), D(52000)), sl=D(62000)),
    ),
    (
        "/buy 100 btc stop 65k @ 65.5k",
        buy(contracts(100), order_type="stop_limit", stop_px=D(65000), price=D(65500)),
    ),
    (
        "/buy 100 btc stop 65k sl 64k tp 70k",
        buy(contracts(100), order_type="stop", stop_px=D(65000), sl=D(64000), tps=(D(70000),)),
    ),
    (
        "/sell 100 btc @ 70k reduce",
        sell(contracts(100), order_type="limit", price=D(70000), reduce_only=True),
    ),
    (
        "/buy 1.5m xbtusd",
        buy(contracts(1_500_000)),
    ),
    (
        "/buy 100 btc tp 60,000,62,000 @ 59k",
        buy(contracts(100), order_type="limit", price=D(59000), tps=(D(60000), D(62000))),
    ),
    (
        "/buy 100 btc/usdt",
        buy(contracts(100), "XBTUSDT"),
    ),
    (
        "/buy 100 #BTC",
        buy(contracts(100)),
    ),
    (
        "/buy 100 sol sl=150 @ 160",
        buy(contracts(100), "SOLUSDT", order_type="limit", price=D(160), sl=D(150)),
    ),
    (
        "/buy $ 500 btc lev 2.5",
        buy(SizeSpec("usd", D(500)), leverage=D("2.5")),
    ),
]


@pytest.mark.parametrize(("text", "expected"), ORDERS, ids=[t for t, _ in ORDERS])
def test_orders(text: str, expected: Order) -> None:
    assert p(text) == expected


KEYWORD_PERMUTATIONS = [
    "/buy 100 btc @ 60k tp 65k sl 58k lev 5 post",
    "/buy btc 100 post lev 5 sl 58k tp 65k @ 60k",
    "/buy sl 58k 100 @ 60k btc tp 65k post 5x",
    "/buy lev 5 tp 65k post btc sl 58k limit 60k 100",
]


@pytest.mark.parametrize("text", KEYWORD_PERMUTATIONS)
def test_keyword_order_does_not_matter(text: str) -> None:
    assert p(text) == buy(
        contracts(100),
        order_type="limit",
        price=D(60000),
        tps=(D(65000),),
        sl=D(58000),
        leverage=D(5),
        post_only=True,
    )


def test_order_derives_entry() -> None:
    order = p("/buy 100 btc stop 65k")
    assert isinstance(order, Order)
    assert order.entry == D(65000)


COMMANDS: list[tuple[str, Intent]] = [
    ("/start", Start()),
    ("/start ref_42", Start(payload="ref_42")),
    ("/help", Help()),
    ("/help buy", Help(topic="buy")),
    ("/help /short", Help(topic="sell")),
    ("/help pos", Help(topic="positions")),
    ("/connect", Connect()),
    ("/connect mainnet", Connect(network="mainnet")),
    ("/connect paper", Connect(network="paper")),
    (
        "/connect testnet AbCdEfGh1234 s3cr3t_SECRET-value42",
        Connect(network="testnet", key_id="AbCdEfGh1234", secret="s3cr3t_SECRET-value42"),
    ),
    (
        "/connect AbCdEfGh1234 s3cr3t_SECRET-value42",
        Connect(network="testnet", key_id="AbCdEfGh1234", secret="s3cr3t_SECRET-value42"),
    ),
    ("/accounts", Accounts()),
    ("/use paper", Use(network="paper")),
    ("/use MAINNET", Use(network="mainnet")),
    ("/disconnect", Disconnect()),
    ("/disconnect testnet", Disconnect(network="testnet")),
    ("/price", Price()),
    ("/price btc eth", Price(symbols=("XBTUSD", "ETHUSD"))),
    ("/price btc xbt xbtusd", Price(symbols=("XBTUSD",))),
    ("/price BTCUSDT $sol link", Price(symbols=("XBTUSDT", "SOLUSDT", "LINKUSDT"))),
    ("/price xbtz25", Price(symbols=("XBTZ25",))),
    ("/chart btc", Chart(symbol="XBTUSD")),
    ("/chart btc 1m", Chart(symbol="XBTUSD", timeframe="1m")),
    ("/chart eth 1d 30", Chart(symbol="ETHUSD", timeframe="1d", candles=30)),
    ("/chart 200 5m xbtusdt", Chart(symbol="XBTUSDT", timeframe="5m", candles=200)),
    ("/close", Close()),
    ("/close 50%", Close(size=SizeSpec("percent", D(50)))),
    ("/close xbtusd 100 @ 61000", Close("XBTUSD", contracts(100), D(61000))),
    ("/close eth all", Close("ETHUSD")),
    ("/cancel 3", CancelOrder(ref="3")),
    ("/cancel 6f2a91c0", CancelOrder(ref="6f2a91c0")),
    ("/cancel all", CancelAll()),
    ("/cancel all xbtusd", CancelAll(symbol="XBTUSD")),
    ("/cancel btc all", CancelAll(symbol="XBTUSD")),
    ("/orders", Orders()),
    ("/orders eth", Orders(symbol="ETHUSD")),
    ("/positions", Positions()),
    ("/pos", Positions()),
    ("/balance", Balance()),
    ("/leverage btc 10", Leverage(symbol="XBTUSD", value=D(10))),
    ("/leverage xbtusdt cross", Leverage(symbol="XBTUSDT", value=None)),
    ("/leverage 25x eth", Leverage(symbol="ETHUSD", value=D(25))),
    ("/pnl", Pnl(period="7d")),
    ("/pnl 30d", Pnl(period="30d")),
    ("/pnl all", Pnl(period="all")),
    ("/pnl 1d", Pnl(period="1d")),
    (
        "/alert btc above 100k breakout",
        PriceAlert(symbol="XBTUSD", direction="above", price=D(100000), note="breakout"),
    ),
    (
        "/alert eth below 2,500 Buy the DIP @ support!",
        PriceAlert(
            symbol="ETHUSD", direction="below", price=D(2500), note="Buy the DIP @ support!"
        ),
    ),
    ("/alert above 70k", PriceAlert(symbol=None, direction="above", price=D(70000))),
    ("/alert eth move 5% in 1h", MoveAlert(symbol="ETHUSD", percent=D(5), window="1h")),
    ("/alert btc move 2.5% 15m", MoveAlert(symbol="XBTUSD", percent=D("2.5"), window="15m")),
    ("/alert btc move 10%", MoveAlert(symbol="XBTUSD", percent=D(10), window="1h")),
    ("/alert sol move 3 in 24h", MoveAlert(symbol="SOLUSDT", percent=D(3), window="24h")),
    (
        "/alert xbtusd funding above 0.05%",
        FundingAlert(symbol="XBTUSD", direction="above", percent=D("0.05")),
    ),
    (
        "/alert btc funding below -0.01%",
        FundingAlert(symbol="XBTUSD", direction="below", percent=D("-0.01")),
    ),
    ("/alerts", Alerts()),
    ("/unalert 7", Unalert(alert_id=7)),
    ("/unalert #7", Unalert(alert_id=7)),
    ("/unalert all", Unalert()),
    ("/liqalert 10%", LiqAlert(percent=D(10))),
    ("/liqalert 5", LiqAlert(percent=D(5))),
    ("/liqalert off", LiqAlert()),
    ("/liqfeed min $1m", LiqFeed(min_usd=D(1_000_000))),
    ("/liqfeed btc min 250k", LiqFeed(symbol="XBTUSD", min_usd=D(250_000))),
    ("/liqfeed eth 100,000usd", LiqFeed(symbol="ETHUSD", min_usd=D(100_000))),
    ("/liqfeed off", LiqFeed()),
    ("/summary daily 21:30", Summary(schedule="daily", at=time(21, 30))),
    ("/summary weekly mon 09:00", Summary(schedule="weekly", at=time(9), weekday=0)),
    ("/summary weekly 9:00 Sunday", Summary(schedule="weekly", at=time(9), weekday=6)),
    ("/summary off", Summary(schedule="off")),
    ("/tz Europe/Berlin", Tz(zone="Europe/Berlin")),
    ("/tz europe/berlin", Tz(zone="Europe/Berlin")),
    ("/tz UTC+3", Tz(zone="UTC+03:00", offset_minutes=180)),
    ("/tz UTC-5:30", Tz(zone="UTC-05:30", offset_minutes=-330)),
    ("/tz utc + 3", Tz(zone="UTC+03:00", offset_minutes=180)),
    ("/tz UTC", Tz(zone="UTC", offset_minutes=0)),
    ("/deadman 60", Deadman(seconds=60)),
    ("/deadman 5m", Deadman(seconds=300)),
    ("/deadman off", Deadman()),
    ("/settings", Settings()),
    ("/settings symbol eth", Settings(key="symbol", value="ETHUSD")),
    ("/settings btc xbtusdt", Settings(key="btc", value="XBTUSDT")),
    ("/settings unit usd", Settings(key="unit", value="usd")),
    ("/settings confirm 30", Settings(key="confirm", value="30")),
    ("/settings quiet 23:00-7:30", Settings(key="quiet", value="23:00-07:30")),
    ("/settings quiet off", Settings(key="quiet", value="off")),
    ("/settings notify fills silent", Settings(key="notify", value="fills silent")),
    ("/feed on", Feed(on=True)),
    ("/feed on Alpha_Calls", Feed(on=True, name="Alpha_Calls")),
    ("/feed off", Feed(on=False)),
    (
        "/signal long btc entry 60k-61k tp 65k,70k sl 58k lev 5 risk 1%",
        Signal(
            side="long",
            symbol="XBTUSD",
            entry_low=D(60000),
            entry_high=D(61000),
            sl=D(58000),
            tps=(D(65000), D(70000)),
            leverage=D(5),
            risk_percent=D(1),
        ),
    ),
    (
        "/signal short ETHUSDT sl 3200 entry 3100 - 3050 tp 2900",
        Signal(
            side="short",
            symbol="ETHUSDT",
            entry_low=D(3050),
            entry_high=D(3100),
            sl=D(3200),
            tps=(D(2900),),
        ),
    ),
    ("/signal close 12", SignalClose(signal_id=12)),
    ("/signal move-sl 12 59500", SignalMoveSl(signal_id=12, sl=D(59500))),
    ("/signal move sl #12 59.5k", SignalMoveSl(signal_id=12, sl=D(59500))),
    ("/feedstats", FeedStats()),
    ("/feedstats Alpha", FeedStats(feed="alpha")),
    (
        "/follow alpha risk 1% max $500",
        Follow(feed="alpha", mode="risk", value=D(1), max_usd=D(500)),
    ),
    ("/follow alpha max 1k risk 0.5%", Follow("alpha", "risk", D("0.5"), D(1000))),
    ("/follow @alpha size $200", Follow(feed="alpha", mode="usd", value=D(200))),
    ("/follow alpha size 100", Follow(feed="alpha", mode="contracts", value=D(100))),
    ("/unfollow alpha", Unfollow(feed="alpha")),
    ("/feeds", Feeds()),
    ("/stats", Stats()),
    (
        "/broadcast Maintenance at 12:00\nBack soon @ all",
        Broadcast("Maintenance at 12:00\nBack soon @ all"),
    ),
]


@pytest.mark.parametrize(("text", "expected"), COMMANDS, ids=[t for t, _ in COMMANDS])
def test_commands(text: str, expected: Intent) -> None:
    assert p(text) == expected


def test_secrets_are_not_in_repr() -> None:
    intent = p("/connect testnet AbCdEfGh1234 s3cr3t_SECRET-value42")
    assert isinstance(intent, Connect) and intent.has_secret
    assert "s3cr3t" not in repr(intent)


def test_tz_gives_a_working_tzinfo() -> None:
    fixed = p("/tz UTC-5:30")
    assert isinstance(fixed, Tz)
    assert fixed.tzinfo().utcoffset(None) == timedelta(hours=-5, minutes=-30)
    named = p("/tz Asia/Tokyo")
    assert isinstance(named, Tz)
    assert str(named.tzinfo()) == "Asia/Tokyo"


def test_funding_rate_is_a_fraction() -> None:
    intent = p("/alert btc funding above 0.05%")
    assert isinstance(intent, FundingAlert)
    assert intent.rate == D("0.0005")


def test_cancel_list_number() -> None:
    assert CancelOrder("3").list_number == 3
    assert CancelOrder("6f2a91c0").list_number is None


# --------------------------------------------------------------------------- who it is for


@pytest.mark.parametrize(
    ("text", "private"),
    [
        ("/buy@OtherBot 100 btc", True),
        ("/buy@OtherBot 100 btc", False),
        ("hello there", True),
        ("what's the price?", True),
        ("buy 100 btc", False),  # plain words in a group are talk, not commands
        ("/frobnicate", False),  # may be another bot's command
        ("", True),
        ("   ", True),
        ("/", True),
    ],
)
def test_not_for_us(text: str, private: bool) -> None:
    assert p(text, private=private) is None


def test_group_commands_with_slash() -> None:
    assert p("/pos", private=False) == Positions()
    assert p("/pos@MyBot", private=False) == Positions()


def test_unknown_bot_username_accepts_any_addressee() -> None:
    assert parse("/pos@SomeBot", symbols=BOOK) == Positions()


@pytest.mark.parametrize("text", ["/frobnicate", "/frobnicate@MyBot", "/by 100 btc"])
def test_unknown_command(text: str) -> None:
    with pytest.raises(UserError, match=r"Unknown command .*/help"):
        p(text, private="@" not in text)


# ------------------------------------------------------------------------------ bad input

BAD: list[tuple[str, str, str]] = [
    # text, part of the message, usage of
    ("/buy 100 bttc", "Unknown symbol BTTC — did you mean XBTUSD?", "buy"),
    ("/buy 100 ethusdd", "Unknown symbol ETHUSDD — did you mean ETHUSD", "buy"),
    ("/price solana", "Unknown symbol SOLANA — did you mean SOLUSDT?", "price"),
    ("/buy 0 btc", "greater than zero", "buy"),
    ("/buy -5 btc", "must be positive", "buy"),
    ("/buy $0 btc", "greater than zero", "buy"),
    ("/buy 10000000000000 btc", "too large", "buy"),
    ("/buy 0.5 btc", "Contracts are whole numbers", "buy"),
    ("/buy 101% btc", "at most 100%", "buy"),
    ("/buy btc @ 60k sl +2%", "stop-loss must be below entry for a long: sl -2%", "buy"),
    ("/buy 100 btc @ 6o000", "not a valid limit price", "buy"),
    ("/buy 100 btc @ 0", "greater than zero", "buy"),
    ("/buy 100 btc @ -5", "must be positive", "buy"),
    ("/buy 100 btc @ nan", "not a valid limit price", "buy"),
    ("/buy 100 btc @ inf", "not a valid limit price", "buy"),
    ("/buy 100 btc limit", "'limit' needs a price", "buy"),
    ("/buy 100 btc limit sl 5", "'limit' needs a price", "buy"),
    ("/buy 100 btc @ 60k limit 61k", "'@' and 'limit'", "buy"),
    ("/buy 100 btc sl 58k sl 57k", "'sl' is given twice", "buy"),
    ("/buy 100 btc lev 5 10x", "Leverage is given twice", "buy"),
    ("/buy 100 btc lev 500", "at most 100x", "buy"),
    ("/buy 100 btc 60000", "Two sizes", "buy"),
    ("/buy 100 btc eth", "Two symbols", "buy"),
    ("/buy 100 btc market @ 60k", "market order has no limit price", "buy"),
    ("/buy 100 btc post", "Post-only needs a limit price", "buy"),
    ("/buy 100 btc reduce tp 70k", "reduce-only", "buy"),
    ("/buy 100 btc @ 60k sl 61k", "stop-loss must be below entry for a long", "buy"),
    ("/buy 100 btc @ 60k tp 59k", "Take-profit must be above entry for a long", "buy"),
    ("/buy 100 btc sl 60k tp 59k", "above the stop-loss", "buy"),
    ("/sell 100 btc @ 60k sl 59k", "stop-loss must be above entry for a short", "sell"),
    ("/short 100 btc stop 58k tp 59k", "Take-profit must be below entry for a short", "sell"),
    ("/buy 100 btc tp 65k,65k", "same take-profit", "buy"),
    ("/buy 0.01doge", "Unknown unit DOGE", "buy"),
    ("/buy 100 btc !!!", "don't understand", "buy"),
    ("/close 150%", "at most 100%", "close"),
    ("/close all 50%", "conflict", "close"),
    ("/cancel", "Cancel what?", "cancel"),
    ("/cancel 0", "start at 1", "cancel"),
    ("/cancel all btc eth", "don't understand", "cancel"),
    ("/use", "Which account?", "use"),
    ("/use moon", "Unknown network", "use"),
    ("/chart btc 15m", "Use 1m, 5m, 1h or 1d", "chart"),
    ("/chart btc 5000", "between 5 and 1000", "chart"),
    ("/leverage btc", "Which leverage?", "leverage"),
    ("/leverage btc 0", "greater than zero", "leverage"),
    ("/pnl 3y", "Use 1d, 7d, 30d or all", "pnl"),
    ("/alert btc", "Alert on what?", "alert"),
    ("/alert btc above", "needs a price", "alert"),
    ("/alert btc above cheap", "not a valid alert price", "alert"),
    ("/alert btc move 5% in 2h", "Use 15m, 1h, 4h or 24h", "alert"),
    ("/alert btc funding 0.01%", "funding above X%", "alert"),
    ("/alert btc sideways 5", "don't understand", "alert"),
    ("/unalert", "Which alert?", "unalert"),
    ("/unalert x", "not a alert id", "unalert"),
    ("/liqalert 100%", "below 100%", "liqalert"),
    ("/liqfeed btc", "minimum USD size", "liqfeed"),
    ("/summary daily", "At what time?", "summary"),
    ("/summary weekly 09:00", "Which day?", "summary"),
    ("/summary daily 25:00", "not a time of day", "summary"),
    ("/summary hourly", "daily, weekly or off?", "summary"),
    ("/tz Mars/Olympus", "Unknown time zone", "tz"),
    ("/tz europe/berln", "did you mean Europe/Berlin?", "tz"),
    ("/tz UTC+15", "not a valid UTC offset", "tz"),
    ("/deadman 5", "between 15 and 86400", "deadman"),
    ("/deadman", "seconds", "deadman"),
    ("/settings colour red", "Unknown setting", "settings"),
    ("/settings btc ethusd", "not a BTC contract", "settings"),
    ("/settings confirm", "needs a value", "settings"),
    ("/feed maybe", "on or off?", "feed"),
    ("/signal long btc entry 60k sl 61k", "stop-loss must be below entry for a long", "signal"),
    ("/signal long btc entry 60k-61k tp 60.5k sl 58k", "above entry for a long", "signal"),
    ("/signal short btc entry 60k-61k sl 60.5k", "above entry for a short", "signal"),
    ("/signal long btc sl 58k", "entry is missing", "signal"),
    ("/signal long btc entry 60k", "needs a stop-loss", "signal"),
    ("/signal long entry 60k sl 58k", "Which symbol?", "signal"),
    ("/signal close", "signal close ID", "signal"),
    ("/follow alpha", "How big?", "follow"),
    ("/follow alpha size $200 max $500", "'max' goes with risk", "follow"),
    ("/follow alpha size 0.1btc", "$N (USD) or N (contracts)", "follow"),
    ("/follow alpha risk 1% size 100", "say the same thing", "follow"),
    ("/broadcast", "Broadcast what?", "broadcast"),
    ("/balance now", "takes no arguments", "balance"),
    ("/help frobnicate", "No command /frobnicate", "help"),
    ("buy what?", "don't understand", "buy"),
    ("sell btc sl 2%", "needs a sign", "sell"),
    ("/buy 100 btc tp moon", "moon is not a valid take-profit", "buy"),
    ("/tp btc moon", "moon is not a valid take-profit", "tp"),
]


@pytest.mark.parametrize(("text", "fragment", "command"), BAD, ids=[t for t, _, _ in BAD])
def test_bad_input(text: str, fragment: str, command: str) -> None:
    with pytest.raises(UserError) as err:
        p(text)
    message = str(err.value)
    assert fragment in message
    assert message.endswith(USAGE[command])
    # Short enough to read on a phone: the problem line plus usage and one example.
    assert message.count("\n") == 2
    assert len(message.splitlines()[0]) < 160


@pytest.mark.parametrize(
    "text",
    [
        "/connect testnet onlyOneWordHere99",
        "/connect testnet key!!!!!!! secret?????????",
        "/connect paper AbCdEfGh1234 s3cr3t_SECRET-value42",
        "/connect testnet first12345 second12345 third12345",
    ],
)
def test_connect_errors_never_echo_what_was_typed(text: str) -> None:
    with pytest.raises(UserError) as err:
        p(text)
    for word in text.split()[2:]:
        assert word not in str(err.value)


def test_holds_secret() -> None:
    assert holds_secret("/connect testnet AbCdEfGh1234 s3cr3t")
    assert holds_secret("/connect@MyBot AbCdEfGh1234")
    assert holds_secret("connect garbage")
    assert not holds_secret("/connect")
    assert not holds_secret("/connect paper")
    assert not holds_secret("/buy 100 btc")


# --------------------------------------------------------------------- numbers and symbols


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("60000", D(60000)),
        ("60,000", D(60000)),
        ("1,234,567.5", D("1234567.5")),
        ("60k", D(60000)),
        ("60K", D(60000)),
        ("1.5m", D(1_500_000)),
        ("0.5", D("0.5")),
        (".5", D("0.5")),
        ("0.00000001", D("0.00000001")),
    ],
)
def test_numbers(word: str, value: D) -> None:
    assert parse_number(word) == value


@pytest.mark.parametrize(
    "word",
    ["", "k", "1,2", "60,00", "1e5", "NaN", "inf", "Infinity", "0x10", "1.2.3", "--1", "1kk"],
)
def test_bad_numbers(word: str) -> None:
    with pytest.raises(UserError):
        parse_number(word)


def test_symbol_book_aliases_and_default_btc() -> None:
    assert BOOK.resolve("btc") == "XBTUSD"
    assert BOOK.resolve("XBT") == "XBTUSD"
    assert BOOK.resolve("eth") == "ETHUSD"
    assert BOOK.resolve("BTC/USDT") == "XBTUSDT"
    assert BOOK.resolve("btcusdt") == "XBTUSDT"
    assert BOOK.resolve("#BTC") == "XBTUSD"
    assert BOOK.resolve("eth-usdt") == "ETHUSDT"
    assert BOOK.resolve("SOL") == "SOLUSDT"
    linear = BOOK.with_default_btc("XBTUSDT")
    assert linear.resolve("btc") == "XBTUSDT"
    assert parse("/buy 100 btc", symbols=linear) == buy(contracts(100), "XBTUSDT")
    assert BOOK.lookup("doge") is None
    with pytest.raises(ValueError):
        SymbolBook(["ETHUSD"])  # the default BTC contract must exist


# ---------------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", sorted(USAGE))
def test_every_command_has_usage_and_help(command: str) -> None:
    usage = USAGE[command]
    line, example = usage.splitlines()
    assert line.startswith(f"Usage: /{command}")
    assert example.startswith("Example: /")
    text = help_text(command)
    assert text.startswith(f"/{command}")
    assert "Example:" in text


@pytest.mark.parametrize("command", sorted(USAGE))
def test_every_usage_example_parses(command: str) -> None:
    example = USAGE[command].splitlines()[1].removeprefix("Example: ")
    intent = p(example)
    assert intent is not None


def test_help_overview_lists_every_command() -> None:
    overview = help_text(operator=True)
    for command in USAGE:
        assert f"/{command}" in overview
    assert "/broadcast" not in help_text()  # operators' tools only for operators
    assert help_text("long").startswith("/buy")
    assert "No command" in help_text("frobnicate")


def test_follow_auto_and_manual() -> None:
    from bot.parse import Follow, SymbolBook, parse

    book = SymbolBook(["XBTUSD", "ETHUSD", "XBTUSDT"])
    f = parse("/follow alpha risk 1% max $500 auto", symbols=book)
    assert isinstance(f, Follow) and f.auto is True and f.max_usd == 500
    f = parse("/follow alpha manual size $200", symbols=book)
    assert isinstance(f, Follow) and f.auto is False and f.mode == "usd"
    f = parse("/follow alpha size 100", symbols=book)
    assert isinstance(f, Follow) and f.auto is None
    import pytest

    from bot.errors import UserError

    with pytest.raises(UserError, match="auto or manual once"):
        parse("/follow alpha size 100 auto manual", symbols=book)


def test_connect_keeps_keys_ending_in_dash_apart_from_numeric_secrets() -> None:
    from bot.parse import Connect, SymbolBook, parse

    book = SymbolBook(["XBTUSD"])
    key, secret = "bXJ_6iJ13IHCMAm7sSq1ENj-", "0iqb6Xl9hN7PQO06wkj7-U7fGxFQ077txw8iCtfdQ4mPPsv_"
    intent = parse(f"/connect testnet {key} {secret}", symbols=book)
    assert isinstance(intent, Connect)
    assert (intent.key_id, intent.secret) == (key, secret)
