"""Your accounts and preferences: /connect, /accounts, /use, /disconnect, /tz, /settings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import ClassVar, Literal, cast

from bot.errors import UserError
from bot.parse.table import Command, Intent, Menu, plain
from bot.parse.trading import parse_presets, preset_token
from bot.parse.values import SymbolBook, parse_hhmm, parse_seconds, parse_zone, shown, zone_info
from bot.parse.words import NETWORKS, Args, Tok, unexpected

# What `bot.parse` exports from this area (its intents and their value types).
__all__ = ["Accounts", "Connect", "Disconnect", "Network", "Settings", "Tz", "Use"]

Network = Literal["testnet", "mainnet", "paper"]


@dataclass(frozen=True, slots=True)
class Connect(Intent):
    command: ClassVar[str] = "connect"
    network: Network = "testnet"
    # Present only for the one-message form; the handler must delete the message.
    key_id: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)

    @property
    def has_secret(self) -> bool:
        return self.secret is not None


@dataclass(frozen=True, slots=True)
class Accounts(Intent):
    command: ClassVar[str] = "accounts"


@dataclass(frozen=True, slots=True)
class Use(Intent):
    command: ClassVar[str] = "use"
    network: Network = "testnet"


@dataclass(frozen=True, slots=True)
class Disconnect(Intent):
    command: ClassVar[str] = "disconnect"
    network: Network | None = None  # None: the active account


@dataclass(frozen=True, slots=True)
class Tz(Intent):
    command: ClassVar[str] = "tz"
    zone: str = "UTC"  # IANA name (canonical case) or "UTC+03:00"
    offset_minutes: int | None = None  # set for fixed offsets only

    def tzinfo(self) -> tzinfo:
        return zone_info(self.zone, self.offset_minutes)


@dataclass(frozen=True, slots=True)
class Settings(Intent):
    """`/settings` alone shows them; `key value` changes one (value already validated)."""

    command: ClassVar[str] = "settings"
    key: str | None = None
    value: str | None = None


def _network(tok: Tok) -> Network:
    if tok.low not in NETWORKS:
        raise UserError(f"Unknown network {shown(tok.raw, 16)}; use testnet, mainnet or paper.")
    return cast(Network, tok.low)


_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]{8,128}$")


def _connect(name: str, args: Args, book: SymbolBook) -> Connect:
    # Plain whitespace words: the tokenizer's gluing of `60000 -` + `61000` would fuse a
    # key ending in '-' with a secret starting with a digit.
    toks = [Tok(w, w.lower(), 0) for w in args.text.split()]
    network: Network = "testnet"
    if toks and toks[0].low in NETWORKS:
        network = cast(Network, toks.pop(0).low)
    if not toks:
        return Connect(network=network)
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
    return Connect(network=network, key_id=key, secret=secret)


def _use(name: str, args: Args, book: SymbolBook) -> Use:
    if len(args.toks) != 1:
        raise UserError("Which account? testnet, mainnet or paper.")
    return Use(network=_network(args.toks[0]))


def _disconnect(name: str, args: Args, book: SymbolBook) -> Disconnect:
    if len(args.toks) > 1:
        raise unexpected(args.toks[1])
    return Disconnect(network=_network(args.toks[0]) if args.toks else None)


def _tz(name: str, args: Args, book: SymbolBook) -> Tz:
    if not args.toks:
        raise UserError("Which time zone?")
    word = "".join(t.raw for t in args.toks)  # `UTC + 3` is one zone
    if len(word) > 64:
        raise UserError("That is not a time zone.")
    zone, offset = parse_zone(word)
    return Tz(zone=zone, offset_minutes=offset)


_SETTING_KEYS = ("symbol", "btc", "unit", "confirm", "quiet", "notify", "presets")

_NOTIFY_KINDS = ("fills", "orders", "liquidations", "alerts", "summaries", "feeds")


def _settings(name: str, args: Args, book: SymbolBook) -> Settings:
    toks = list(args.toks)
    if not toks:
        return Settings()
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
        return Settings(key=key, value=f"{toks[0].low} {toks[1].low}")
    if key == "presets":  # `$50 $200 2% risk 10%`, stored as tokens (bot/parse/trading.py)
        if len(toks) == 1 and toks[0].low == "default":
            return Settings(key=key, value="default")
        presets = parse_presets([t.raw for t in toks], book)
        return Settings(key=key, value=" ".join(preset_token(p) for p in presets))
    if len(toks) > 1:
        raise unexpected(toks[1])
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
    return Settings(key=key, value=value)


COMMANDS = (
    Command(
        "connect", (Connect,), _connect,
        "/connect [testnet|mainnet|paper] [KEY SECRET]", "/connect testnet",
        ("Adds API keys (default testnet). Without KEY SECRET the bot asks for them.",
         "Every message that held a secret is deleted; keys with withdraw permission are "
         "refused.",
         "paper: a simulated account with 1 XBT and 10,000 USDT, no key needed."),
        where="private", menu=Menu(11, "add a BitMEX API key"),
    ),
    Command(
        "accounts", (Accounts,), plain(Accounts), "/accounts", "/accounts",
        ("Connected accounts: network, masked key, permissions, which is active.",),
        where="private",
    ),
    Command(
        "use", (Use,), _use, "/use testnet|mainnet|paper", "/use paper",
        ("Switches the active account.",), where="private",
    ),
    Command(
        "disconnect", (Disconnect,), _disconnect,
        "/disconnect [testnet|mainnet|paper]", "/disconnect mainnet",
        ("Forgets a key after you confirm.",), where="private",
    ),
    Command(
        "tz", (Tz,), _tz, "/tz ZONE", "/tz Europe/Berlin",
        ("IANA names (Europe/Berlin, America/New_York) or offsets (UTC+3, UTC-5:30).",),
        where="private",
    ),
    Command(
        "settings", (Settings,), _settings, "/settings [key value]", "/settings confirm 30",
        ("Keys: symbol SYM · btc XBTUSD|XBTUSDT · unit contracts|usd|coin · confirm SECONDS "
         "· quiet HH:MM-HH:MM|off · notify KIND on|off|silent",
         "presets: 1 to 4 size buttons for /buy SYM without a size, e.g. "
         "/settings presets $50 $200 2% risk 10% (10% = of margin); presets default "
         "resets them.",),
        where="private", menu=Menu(12, "preferences"),
    ),
)
