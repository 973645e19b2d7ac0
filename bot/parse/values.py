"""The small words of the chat language: numbers, sizes, symbols, times, time zones.

Every function here raises `UserError` with a short message that names the offending
word; the command parser appends the command's usage line, so these never do.
"""

from __future__ import annotations

import difflib
import html
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import time, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from bot.errors import UserError

# Anything above this is a typo, not a trade: BitMEX has no price or size near it, and a
# bound keeps Decimal arithmetic downstream cheap.
MAX_NUMBER = Decimal(10) ** 12
# Enough for satoshis and for the tick sizes of low-priced contracts.
MAX_DECIMALS = 10

_NUMBER_RE = re.compile(
    r"^(?P<sign>[-+−])?(?P<int>\d{1,3}(?:,\d{3})+|\d+)?(?:\.(?P<frac>\d+))?(?P<suf>[km])?$"
)
_SUFFIX = {"k": Decimal(1000), "m": Decimal(1_000_000)}


def shown(word: str, limit: int = 24) -> str:
    """The user's word as quoted in an error: trimmed so a pasted essay stays a short reply,
    then HTML-escaped (errors are shown as HTML), so `<b>` they typed stays text."""
    word = word.replace("\n", " ")
    return html.escape(word if len(word) <= limit else word[: limit - 1] + "…", quote=False)


def looks_numeric(word: str) -> bool:
    """True for words shaped like a number (`60k`, `1,000`, `.5`), valid or not."""
    return bool(_NUMBER_RE.match(word.lower())) and any(c.isdigit() for c in word)


def parse_number(
    word: str,
    what: str = "number",
    *,
    allow_negative: bool = False,
    allow_zero: bool = False,
) -> Decimal:
    """`60000`, `60,000`, `60k`, `1.5m`, `0.5` -> Decimal; `what` names it in errors."""
    w = word.strip().lower().replace("_", "")
    m = _NUMBER_RE.match(w) if len(w) <= 40 else None
    if m is None or (m["int"] is None and m["frac"] is None):
        raise UserError(f"{shown(word)} is not a valid {what}.")
    frac = m["frac"] or ""
    if len(frac) > MAX_DECIMALS:
        raise UserError(f"{shown(word)} has too many decimals for a {what}.")
    digits = (m["int"] or "0").replace(",", "")
    value = Decimal(f"{digits}.{frac}" if frac else digits)
    if m["suf"]:
        value *= _SUFFIX[m["suf"]]
    if m["sign"] in ("-", "−"):
        value = -value
    if abs(value) > MAX_NUMBER:
        raise UserError(f"{shown(word)} is too large for a {what}.")
    if value < 0 and not allow_negative:
        raise UserError(f"The {what} must be positive, not {shown(word)}.")
    if value == 0 and not allow_zero:
        raise UserError(f"The {what} must be greater than zero.")
    # normalize() would turn 60000 into 6E+4; only strip the sign of a negative zero.
    return value + 0 if value == 0 else value


def parse_int(word: str, what: str, *, low: int, high: int) -> int:
    """A whole number within [low, high] (suffixes allowed: `1k` candles)."""
    value = parse_number(word, what, allow_zero=low <= 0, allow_negative=low < 0)
    if value != value.to_integral_value():
        raise UserError(f"The {what} must be a whole number, not {shown(word)}.")
    if not low <= value <= high:
        raise UserError(f"The {what} must be between {low} and {high}.")
    return int(value)


def parse_percent(
    word: str,
    what: str,
    *,
    high: Decimal = Decimal(100),
    require_sign: bool = False,
    allow_negative: bool = False,
) -> Decimal:
    """`10%` (or `10` where the % is obvious) -> Decimal("10"), in (0, high]."""
    w = word.strip()
    has_sign = w.endswith("%")
    if require_sign and not has_sign:
        raise UserError(f"Write the {what} with a % sign, like 10%.")
    value = parse_number(w.rstrip("%").strip(), what, allow_negative=allow_negative)
    if abs(value) > high:
        raise UserError(f"The {what} must be at most {high}%.")
    return value


def parse_price(word: str, what: str = "price") -> Decimal:
    """A positive price; a `$` in front (`$60k`) is tolerated because people type it."""
    w = word.strip()
    if w.startswith("$"):
        w = w[1:]
    return parse_number(w, what)


def parse_price_list(word: str, what: str = "take-profit") -> tuple[Decimal, ...]:
    """`55k,52k`, `160,170,180` or `60,000,62,000` -> prices.

    A comma is a list separator or a thousands separator. Read as a list first; if that
    gives a zero (`60,000` -> 60 and 0) or items of wildly different size (`1,500` -> 1 and
    500), the commas were thousands separators. `160,170` stays two prices: SOL traders
    write exactly that.
    """
    text = word.strip().strip(",")
    parts = [p.strip() for p in text.split(",")]
    if 1 < len(parts) <= 10 and all(parts):
        try:
            items = [parse_price(p, what) for p in parts]
        except UserError:
            items = []
        if items and max(items) / min(items) <= 5:
            return tuple(items)
    items = []
    rest = text
    while rest:
        # Thousands groups first: a comma followed by exactly three digits continues a number.
        m = re.match(r"^\$?[-+]?(?:\d{1,3}(?:,\d{3})+(?![\d])(?:\.\d+)?|[\d.]*)[km]?", rest)
        item = m.group(0) if m else ""
        if not re.search(r"\d", item):  # `moon` is no number (its `m` alone is no million)
            item = rest.split(",", 1)[0]
        items.append(parse_price(item, what))
        rest = rest[len(item) :].lstrip(",").strip()
        if len(items) > 10:
            raise UserError(f"At most 10 {what} prices, please.")
    if not items:
        raise UserError(f"The {what} needs a price.")
    return tuple(items)


def parse_range(word: str, what: str = "entry") -> tuple[Decimal, Decimal]:
    """`60000` or `60k-61k` -> (low, high); prices are positive so `-` can only be a range."""
    parts = [p for p in re.split(r"[-–—]|\.\.", word.strip()) if p]
    if len(parts) == 1:
        p = parse_price(parts[0], what)
        return p, p
    if len(parts) != 2:
        raise UserError(f"{shown(word)} is not a valid {what}; write P or P1-P2.")
    a, b = parse_price(parts[0], what), parse_price(parts[1], what)
    return (a, b) if a <= b else (b, a)


# ---------------------------------------------------------------------------------- sizes

SizeKind = Literal["contracts", "usd", "coin", "percent", "risk"]


@dataclass(frozen=True, slots=True)
class SizeSpec:
    """How much to trade, before contract math: the trading service turns it into contracts.

    contracts: `value` contracts; usd: `value` USD notional; coin: `value` of `coin`
    (e.g. XBT, ETH) notional; percent: `value`% of available margin at the leverage in force;
    risk: as many contracts as lose `value`% of the margin balance at the stop (issue #14).
    """

    kind: SizeKind
    value: Decimal
    coin: str | None = None

    def __str__(self) -> str:
        v = format(self.value, "f")
        if self.kind == "usd":
            return f"${v}"
        if self.kind == "percent":
            return f"{v}%"
        if self.kind == "risk":
            return f"{v}% risk"
        if self.kind == "coin":
            return f"{v}{(self.coin or '').lower()}"
        return v


_USD_RE = re.compile(r"^(?:\$(?P<a>[^$]+)|(?P<b>[\d.,]+[km]?)\s*(?:\$|usdt?))$")
_COIN_RE = re.compile(r"^(?P<n>[\d.,]+[km]?)(?P<coin>[a-z]{2,6})$")
_SIZE_SHAPE_RE = re.compile(r"^[-+−$]?[\d.,]")


def looks_like_size(word: str) -> bool:
    """A word that starts like a quantity (digit, sign or $) is a size, good or bad."""
    return bool(_SIZE_SHAPE_RE.match(word))


def parse_size(word: str, book: SymbolBook, *, percent_high: Decimal = Decimal(100)) -> SizeSpec:
    """`100` contracts, `$500`/`500usd` USD, `0.01btc` coin, `10%` of available margin."""
    w = word.strip().lower()
    if w.endswith("%"):
        return SizeSpec("percent", parse_percent(w, "size", high=percent_high))
    if m := _USD_RE.match(w):
        return SizeSpec("usd", parse_number(m["a"] or m["b"], "USD size"))
    if m := _COIN_RE.match(w):
        coin = book.coin(m["coin"])
        if coin is None:
            raise UserError(
                f"Unknown unit {m['coin'].upper()} in {shown(word)}; use contracts, $ or a coin "
                "like 0.01btc."
            )
        return SizeSpec("coin", parse_number(m["n"], f"{coin} size"), coin)
    value = parse_number(w, "size")
    if value != value.to_integral_value():
        raise UserError(
            f"{shown(word)} contracts? Contracts are whole numbers; for a coin amount write "
            f"{shown(word)}btc, for dollars ${shown(word)}."
        )
    return SizeSpec("contracts", value)


# -------------------------------------------------------------------------------- symbols

_QUOTES = ("USDT", "USDC", "USD", "EUR", "XBT", "ETH")
_FUTURE_RE = re.compile(r"^([A-Z0-9]{2,10}?)[FGHJKMNQUVXZ]\d\d$")
_SYMBOL_SHAPE_RE = re.compile(r"^[#$]?[A-Za-z][A-Za-z0-9]{0,15}(?:[/\-_:.][A-Za-z0-9]{1,10})?$")
_COIN_NAMES = {"BTC": "XBT"}


class SymbolBook:
    """The exchange's active symbols plus the aliases people type for them.

    Built from the instrument list (and rebuilt when it changes); `default_btc` is the
    user's BTC contract, which `btc`/`xbt` resolve to. Cheap to copy per user with
    `with_default_btc`.
    """

    __slots__ = ("_coins", "default_btc", "refused", "symbols")

    def __init__(self, symbols: Iterable[str], default_btc: str = "XBTUSD", *,
                 refused: Mapping[str, str] | None = None) -> None:
        self.symbols: frozenset[str] = frozenset(s.upper() for s in symbols)
        # Listed by the exchange but not traded here (spot, prediction, expired): symbol ->
        # the one line that says why, so naming one is an explanation, not "unknown".
        self.refused: dict[str, str] = {
            k.upper(): v for k, v in (refused or {}).items() if k.upper() not in self.symbols
        }
        default_btc = default_btc.upper()
        if default_btc not in self.symbols:
            raise ValueError(f"default BTC contract {default_btc} is not an active symbol")
        self.default_btc = default_btc
        coins = {"XBT"}
        for s in self.symbols:
            root = _root(s)
            if root:
                coins.add(root)
        self._coins = frozenset(coins)

    def with_default_btc(self, default_btc: str) -> SymbolBook:
        """The same book for a user whose `btc` means another contract (e.g. XBTUSDT)."""
        return SymbolBook(self.symbols, default_btc, refused=self.refused)

    @property
    def coins(self) -> frozenset[str]:
        """Underlying coins (XBT, ETH, SOL ...) that sizes like `0.5eth` may name."""
        return self._coins

    def coin(self, word: str) -> str | None:
        """`btc` -> XBT, `eth` -> ETH; None when no active contract settles on it."""
        c = word.upper()
        c = _COIN_NAMES.get(c, c)
        return c if c in self._coins else None

    def lookup(self, word: str) -> str | None:
        """The symbol a word means, or None (no error: callers decide)."""
        w = word.strip().upper()
        w = w[1:] if w[:1] in ("#", "$") else w
        if w in self.refused:
            # The exact name of a listed spot pair (XBT_USDT) is not the perpetual XBTUSDT.
            return None
        w = re.sub(r"[/\-_:.]", "", w)
        if not w:
            return None
        if w in self.symbols:
            return w
        if w.endswith("PERP") and len(w) > 4:
            w = w[:-4]
        if w in ("BTC", "XBT"):
            return self.default_btc
        if w.startswith("BTC") and "XBT" + w[3:] in self.symbols:
            return "XBT" + w[3:]
        if w in self.symbols:
            return w
        if w in self._coins:
            for quote in ("USD", "USDT"):
                if w + quote in self.symbols:
                    return w + quote
        return None

    def resolve(self, word: str) -> str:
        """Like `lookup`, but an unknown word is a UserError with a suggestion."""
        found = self.lookup(word)
        if found is not None:
            return found
        reason = self.refusal(word)
        if reason is not None:
            raise UserError(reason + ".")
        name = shown(word.strip().lstrip("#$").upper(), 16)
        if not _SYMBOL_SHAPE_RE.match(word.strip()):
            raise UserError(f"I don't understand {shown(word)!r} here.")
        suggestion = self.suggest(word)
        if suggestion:
            raise UserError(f"Unknown symbol {name} — did you mean {suggestion}?")
        raise UserError(f"Unknown symbol {name}.")

    def refusal(self, word: str) -> str | None:
        """Why a listed but untradeable symbol (`xbt_usdt`, `XBTUSDT-SPOT`?) is refused."""
        w = word.strip().upper().lstrip("#$")
        if w in self.refused:
            return self.refused[w]
        bare = re.sub(r"[/\-_:.]", "", w)
        for symbol, reason in self.refused.items():
            if re.sub(r"[/\-_:.]", "", symbol) == bare:
                return reason
        return None

    def suggest(self, word: str) -> str | None:
        """The closest symbol name (difflib), aliases included."""
        w = re.sub(r"[^A-Z0-9]", "", word.upper())
        if len(w) <= 4:
            # Short words (`bt`, `bttc`, `etj`) are typos of a coin alias, not of a symbol.
            names = sorted(self._coins | {"BTC"})
            alias = difflib.get_close_matches(w, names, n=1, cutoff=0.5)
            if alias:
                return self.lookup(alias[0])
        w = "XBT" + w[3:] if w.startswith("BTC") else w
        close = difflib.get_close_matches(w, sorted(self.symbols), n=1, cutoff=0.8)
        if close:  # one letter off a real symbol (`ETHUSDTT`)
            return close[0]
        for coin in sorted(self._coins, key=len, reverse=True):
            if len(coin) >= 3 and w.startswith(coin):  # `SOLANA`, `ETHEREUM`, `XBTPERP`
                return self.lookup(coin)
        match = difflib.get_close_matches(w, sorted(self.symbols), n=1, cutoff=0.5)
        return match[0] if match else None


def _root(symbol: str) -> str | None:
    m = _FUTURE_RE.match(symbol)
    if m:
        return m.group(1)
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)]
    return None


# ----------------------------------------------------------------------------- time, zones

_HHMM_RE = re.compile(r"^(\d{1,2})[:.h](\d{2})$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_hhmm(word: str) -> time:
    """`09:00`, `9:00`, `21.30` -> time (naive: it is read in the user's own zone)."""
    m = _HHMM_RE.match(word.strip().lower())
    if m is None:
        raise UserError(f"{shown(word)} is not a time; write HH:MM like 09:00.")
    h, mi = int(m.group(1)), int(m.group(2))
    if h > 23 or mi > 59:
        raise UserError(f"{shown(word)} is not a time of day.")
    return time(h, mi)


def parse_weekday(word: str) -> int | None:
    """`mon`/`Monday` -> 0 ... `sun` -> 6; None when the word is not a day."""
    w = word.strip().lower()
    if len(w) < 3:
        return None
    for i, day in enumerate(WEEKDAYS):
        full = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")[i]
        if w.startswith(day) and full.startswith(w):
            return i
    return None


# Files in the zone database that are not places: the server's own zone (differs between
# hosts and moves with the machine), a "-00" placeholder, and the POSIX default rules.
_NOT_ZONES = frozenset({"localtime", "factory", "posixrules"})


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    # Lower-case index so `europe/berlin` works; built once (about 600 names).
    return {name.lower(): name for name in zoneinfo.available_timezones()
            if name.lower() not in _NOT_ZONES}


_OFFSET_RE = re.compile(r"^(?:utc|gmt)?\s*([-+−])\s*(\d{1,2})(?::?(\d{2}))?$")


def parse_zone(word: str) -> tuple[str, int | None]:
    """IANA name or `UTC+3`/`UTC-5:30` -> (canonical name, offset minutes or None)."""
    w = word.strip()
    low = w.lower()
    if low in ("utc", "gmt", "z", "utc+0", "utc-0", "gmt+0"):
        return "UTC", 0
    m = _OFFSET_RE.match(low)
    if m:
        sign = -1 if m.group(1) in ("-", "−") else 1
        hours, minutes = int(m.group(2)), int(m.group(3) or 0)
        if minutes >= 60 or hours > 14 or (hours == 14 and minutes):
            raise UserError(f"{shown(word)} is not a valid UTC offset.")
        total = sign * (hours * 60 + minutes)
        if total < -12 * 60:
            raise UserError(f"{shown(word)} is not a valid UTC offset.")
        if total == 0:
            return "UTC", 0
        return f"UTC{'+' if total > 0 else '-'}{hours:02d}:{minutes:02d}", total
    if low in _NOT_ZONES:
        raise UserError(f"{shown(word)} is not a place's time zone — give a city zone like "
                        "Europe/Berlin or an offset like UTC+3.")
    name = _zone_names().get(low)
    if name is None:
        guess = difflib.get_close_matches(low, list(_zone_names()), n=1, cutoff=0.6)
        hint = (f" — did you mean {_zone_names()[guess[0]]}?" if guess
                else " — give a city zone like Europe/Berlin or an offset like UTC+3.")
        raise UserError(f"Unknown time zone {shown(word, 40)}{hint}")
    return name, None


def zone_info(name: str, offset_minutes: int | None) -> tzinfo:
    """The tzinfo for a zone produced by `parse_zone`."""
    if offset_minutes is not None:
        return timezone(timedelta(minutes=offset_minutes), name)
    return zoneinfo.ZoneInfo(name)


_DURATION_RE = re.compile(r"^(\d{1,6})\s*(s|sec|secs|m|min|mins|h|hr|hrs)?$")


def parse_seconds(word: str, what: str, *, low: int, high: int) -> int:
    """`90`, `90s`, `5m`, `1h` -> seconds within [low, high]."""
    m = _DURATION_RE.match(word.strip().lower())
    if m is None:
        raise UserError(f"{shown(word)} is not a duration; write seconds like 60 or 5m.")
    unit = (m.group(2) or "s")[0]
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]
    if not low <= seconds <= high:
        raise UserError(f"The {what} must be between {low} and {high} seconds.")
    return seconds
