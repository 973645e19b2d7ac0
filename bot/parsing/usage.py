"""Usage lines and the /help text, one source for both error replies and /help."""

from __future__ import annotations

# command -> (usage line, one example). The usage line is what an error reply shows.
_LINES: dict[str, tuple[str, str]] = {
    "start": ("/start", "/start"),
    "help": ("/help [command]", "/help buy"),
    "connect": ("/connect [testnet|mainnet|paper] [KEY SECRET]", "/connect testnet"),
    "accounts": ("/accounts", "/accounts"),
    "use": ("/use testnet|mainnet|paper", "/use paper"),
    "disconnect": ("/disconnect [testnet|mainnet|paper]", "/disconnect mainnet"),
    "price": ("/price [SYM ...]", "/price btc eth"),
    "chart": ("/chart SYM [1m|5m|1h|1d] [N]", "/chart btc 1h 200"),
    "buy": (
        "/buy SIZE [SYM] [@ PRICE | limit PRICE] [stop PX] [tp PX[,PX...]] [sl PX] [lev N] "
        "[post] [reduce]",
        "/buy 100 btc @ 60k sl 58k",
    ),
    "sell": (
        "/sell SIZE [SYM] [@ PRICE | limit PRICE] [stop PX] [tp PX[,PX...]] [sl PX] [lev N] "
        "[post] [reduce]",
        "/sell $500 eth limit 3000 post",
    ),
    "close": ("/close [SYM] [PCT% | SIZE] [@ PRICE]", "/close xbtusd 50% @ 61000"),
    "cancel": ("/cancel ID | all [SYM]", "/cancel all xbtusd"),
    "orders": ("/orders [SYM]", "/orders btc"),
    "positions": ("/positions (or /pos)", "/pos"),
    "balance": ("/balance", "/balance"),
    "leverage": ("/leverage SYM N | cross", "/leverage btc 10"),
    "pnl": ("/pnl [1d|7d|30d|all]", "/pnl 30d"),
    "alert": (
        "/alert SYM above|below PRICE [note] | SYM move N% [in 15m|1h|4h|24h] | "
        "SYM funding above|below X%",
        "/alert btc above 100k breakout",
    ),
    "alerts": ("/alerts", "/alerts"),
    "unalert": ("/unalert ID | all", "/unalert 3"),
    "liqalert": ("/liqalert N% | off", "/liqalert 10%"),
    "liqfeed": ("/liqfeed [SYM] min SIZE | off", "/liqfeed btc min $1m"),
    "summary": ("/summary daily HH:MM | weekly DAY HH:MM | off", "/summary weekly mon 09:00"),
    "tz": ("/tz ZONE", "/tz Europe/Berlin"),
    "deadman": ("/deadman SECONDS | off", "/deadman 60"),
    "settings": ("/settings [key value]", "/settings confirm 30"),
    "feed": ("/feed on [NAME] | off", "/feed on alpha"),
    "signal": (
        "/signal long|short SYM entry P[-P2] [tp P,P...] sl P [lev N] [risk N%] | "
        "close ID | move-sl ID PRICE",
        "/signal long btc entry 60k-61k tp 65k,70k sl 58k lev 5 risk 1%",
    ),
    "feedstats": ("/feedstats [FEED]", "/feedstats alpha"),
    "follow": (
        "/follow FEED risk N% [max $N] | size $N | size N",
        "/follow alpha risk 1% max $500",
    ),
    "unfollow": ("/unfollow FEED", "/unfollow alpha"),
    "feeds": ("/feeds", "/feeds"),
    "stats": ("/stats", "/stats"),
    "broadcast": ("/broadcast TEXT", "/broadcast Maintenance at 12:00 UTC"),
}

ALIASES: dict[str, str] = {"long": "buy", "short": "sell", "pos": "positions"}

USAGE: dict[str, str] = {
    name: f"Usage: {line}\nExample: {example}" for name, (line, example) in _LINES.items()
}

_SIZES = (
    "SIZE: 100 = contracts · $500 or 500usd = USD notional · 0.01btc = coin notional · "
    "10% = that share of available margin (times the leverage when isolated; on cross the "
    "share itself is the notional)"
)
_NUMBERS = "Numbers: 60000, 60,000, 60k, 1.5m, 0.5"
_SYMBOLS = "SYM: any BitMEX symbol (xbtusd, XBTUSDT), btc/xbt = your BTC contract, eth = ETHUSD"

# Extra lines for the full grammar of one command; usage + example come first anyway.
_DETAILS: dict[str, tuple[str, ...]] = {
    "start": ("Greets you and shows the active account.",),
    "help": ("Short help, or the full grammar of one command.",),
    "connect": (
        "Adds API keys (default testnet). Without KEY SECRET the bot asks for them.",
        "Every message that held a secret is deleted; keys with withdraw permission are refused.",
        "paper: a simulated account with 1 XBT and 10,000 USDT, no key needed.",
    ),
    "accounts": ("Connected accounts: network, masked key, permissions, which is active.",),
    "use": ("Switches the active account.",),
    "disconnect": ("Forgets a key after you confirm.",),
    "price": ("Last, mark, bid/ask, 24 h change and funding rate.", _SYMBOLS),
    "chart": ("Candlestick chart; default 1h and 100 candles (5 to 1000).", _SYMBOLS),
    "buy": (
        "/long is the same as /buy. A preview with Confirm/Cancel comes first.",
        "Market order unless a price is given; stop PX makes a stop (or stop-limit with @).",
        "tp/sl add reduce-only exits after entry; post = post-only; reduce = reduce-only.",
        "Keywords may come in any order: /buy btc 100 sl 58k @ 60k",
        _SIZES,
        _NUMBERS,
        _SYMBOLS,
        "More: /buy 0.01btc xbtusdt stop 65k · /long 10% btc lev 5 tp 65k,70k sl 58k",
    ),
    "sell": (
        "/short is the same as /sell. A preview with Confirm/Cancel comes first.",
        "Market order unless a price is given; stop PX makes a stop (or stop-limit with @).",
        "For a short, sl is above entry and take-profits below.",
        _SIZES,
        _NUMBERS,
        _SYMBOLS,
        "More: /sell 0.01btc xbtusd stop 58000 · /short 10% btc lev 5 tp 55k,52k sl 62k",
    ),
    "close": (
        "Closes all or part of a position with a reduce-only order; market unless @ PRICE.",
        "More: /close · /close 50% · /close eth 100",
    ),
    "cancel": ("ID is an order id prefix or the number from /orders.",),
    "orders": ("Open orders, each with a Cancel button.",),
    "positions": ("Size, entry, mark, liquidation price, uPnL, ROE, with Close buttons.",),
    "balance": ("Wallet, margin balance, available and uPnL per currency.",),
    "leverage": ("N from 0.01 to 100, or cross.",),
    "pnl": ("Realised PnL, fees, funding and win rate with an equity chart (default 7d).",),
    "alert": (
        "One-shot price alert: /alert btc below 90k (a note after the price is optional)",
        "Move within a window (default 1h): /alert eth move 5% in 1h",
        "Funding rate: /alert xbtusd funding above 0.05%",
    ),
    "alerts": ("Active alerts, each with a Delete button.",),
    "unalert": ("Deletes one alert by id, or all.",),
    "liqalert": ("Warns when mark price comes within N% of your liquidation price.",),
    "liqfeed": ("Posts BitMEX liquidations of at least SIZE USD notional to this chat.",),
    "summary": ("Scheduled PnL summary in your time zone (see /tz). DAY: mon ... sun.",),
    "tz": ("IANA names (Europe/Berlin, America/New_York) or offsets (UTC+3, UTC-5:30).",),
    "deadman": (
        "Keeps BitMEX's cancelAllAfter alive; if the bot goes silent your open orders are "
        "cancelled after SECONDS (15 to 86400, or 5m, 1h).",
    ),
    "settings": (
        "Keys: symbol SYM · btc XBTUSD|XBTUSDT · unit contracts|usd|coin · confirm SECONDS · "
        "quiet HH:MM-HH:MM|off · notify KIND on|off|silent",
    ),
    "feed": ("Group admins: make this group a signal feed.",),
    "signal": (
        "Feed admins post signals; followers get a preview sized by their follow settings.",
        "For a long, sl is below entry and targets above; the reverse for a short.",
    ),
    "feedstats": ("The feed's record from real follower fills.",),
    "follow": (
        "risk N%: size so that hitting sl loses N% of equity, optionally capped at max $N.",
        "size $N: fixed USD notional · size N: fixed contracts.",
        "auto: stop moves toward the price and closes from the feed apply without a press "
        "(never opens or adds); manual (default): each update comes as a card to confirm.",
    ),
    "unfollow": ("Stops following a feed.",),
    "feeds": ("Feeds you follow and their settings.",),
    "stats": ("Operators only: users, alerts, orders, error rates.",),
    "broadcast": ("Operators only: sends TEXT to every user.",),
}


def canonical(name: str) -> str | None:
    """`/Long` -> buy, `pos` -> positions; None for an unknown command name."""
    n = name.strip().lstrip("/").lower()
    n = ALIASES.get(n, n)
    return n if n in _LINES else None


def usage(name: str) -> str:
    """The usage line and one example, for error replies."""
    n = canonical(name)
    return USAGE[n] if n else ""


GROUP_COMMANDS = ("feed", "signal", "feedstats", "alert", "alerts", "unalert", "liqfeed", "help")
OPERATOR_COMMANDS = ("stats", "broadcast")


def help_text(command: str | None = None, *, group: bool = False,
              operator: bool = False) -> str:
    """/help: the list of commands, or the full grammar of one command with examples.

    In a group only what works there is listed; operators' commands only to operators.
    """
    if command is None:
        if group:
            lines = ["In this group (admins post signals and shared alerts; anyone can see the "
                     "record). Trading and your account live in a private chat with me.",
                     "Send /help COMMAND for details:"]
            lines += [_LINES[c][0] for c in GROUP_COMMANDS]
            lines.append("Or free text in the usual shape: BTC/USDT long entry 60000 "
                         "targets 62000 stop 59000")
            return "\n".join(lines)
        lines = ["Commands (send /help COMMAND for details):"]
        lines += [line for name, (line, _) in _LINES.items()
                  if operator or name not in OPERATOR_COMMANDS]
        return "\n".join(lines)
    n = canonical(command)
    if n is None:
        return f"No command /{command.lstrip('/')}. Send /help for the list."
    line, example = _LINES[n]
    return "\n".join([line, *_DETAILS.get(n, ()), f"Example: {example}"])


COMMAND_NAMES: frozenset[str] = frozenset(_LINES) | frozenset(ALIASES)
