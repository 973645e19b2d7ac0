"""A position's exits from chat (issue #14 items 1 and 3): /sl (break-even, a price, a
trailing offset) and /tp (targets with optional shares). The position card's Edit SL /
Edit TP replies are read by the same parsers (`stop_value`, `targets_value`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from bot.errors import UserError
from bot.parse.table import NUMBERS, SYMBOLS, Command, Intent
from bot.parse.values import (
    SymbolBook,
    parse_percent,
    parse_price,
    parse_price_list,
    shown,
)
from bot.parse.words import Args

# What `bot.parse` exports from this area (its intents and their value types).
__all__ = ["PriceRef", "SetStop", "SetTargets", "Trail", "stop_value", "targets_value"]


@dataclass(frozen=True, slots=True)
class PriceRef:
    """A price as typed: absolute (`60k`), or a signed move from the mark (`-2%`)."""

    value: Decimal
    relative: bool = False  # True: `value` percent from the mark price

    def at(self, mark: Decimal) -> Decimal:
        return mark * (1 + self.value / 100) if self.relative else self.value


@dataclass(frozen=True, slots=True)
class Trail:
    """A trailing offset: `1%` of the price, or `$500` in the quote currency."""

    value: Decimal
    percent: bool

    def offset(self, price: Decimal) -> Decimal:
        return price * self.value / 100 if self.percent else self.value


@dataclass(frozen=True, slots=True)
class SetStop(Intent):
    """/sl SYM be | PRICE | trail N% | trail $N."""

    command: ClassVar[str] = "sl"
    symbol: str | None = None
    breakeven: bool = False
    price: PriceRef | None = None
    trail: Trail | None = None


@dataclass(frozen=True, slots=True)
class SetTargets(Intent):
    """/tp SYM P1,P2 or P1:50%,P2:50%: `shares` (percent each) is empty for equal parts."""

    command: ClassVar[str] = "tp"
    symbol: str | None = None
    prices: tuple[PriceRef, ...] = ()
    shares: tuple[Decimal, ...] = ()


_RELATIVE_RE = re.compile(r"^[-+−]\s*[\d.,]+\s*%$")


def price_ref(word: str, what: str) -> PriceRef:
    """`60k`, `$60,000` or a move from the mark, `-2%` / `+3%`."""
    w = word.strip().replace("−", "-")
    if _RELATIVE_RE.match(w):
        sign = -1 if w.startswith("-") else 1
        value = parse_percent(w.lstrip("+-").strip(), what, high=Decimal(99))
        return PriceRef(sign * value, relative=True)
    if w.endswith("%"):
        raise UserError(f"A {what} as a percentage needs a sign: -2% (below the mark) or +3%.")
    return PriceRef(parse_price(w, what))


def trail_value(word: str) -> Trail:
    """`1%` (of the price) or `$500` / `500` (in the quote currency)."""
    w = word.strip()
    if w.endswith("%"):
        return Trail(parse_percent(w, "trailing offset", high=Decimal(50)), percent=True)
    return Trail(parse_price(w.removesuffix("usd").removesuffix("$"), "trailing offset"),
                 percent=False)


def stop_value(words: list[str]) -> tuple[bool, PriceRef | None, Trail | None]:
    """What follows the symbol in /sl (and an Edit SL reply): be, a price, or trail X."""
    if not words:
        raise UserError("Which stop? Give be (break-even), a price like 58k or -2%, "
                        "or trail 1% / trail $500.")
    head = words[0].lower()
    if head in ("be", "breakeven", "break-even"):
        if len(words) > 1:
            raise UserError(f"Nothing goes after be: {shown(words[1])}.")
        return True, None, None
    if head in ("trail", "trailing"):
        if len(words) != 2:
            raise UserError("Give one trailing offset: trail 1% or trail $500.")
        return False, None, trail_value(words[1])
    if len(words) > 1:
        raise UserError(f"One stop price, please; {shown(words[1])} is extra.")
    return False, price_ref(words[0], "stop-loss"), None


def targets_value(words: list[str]) -> tuple[tuple[PriceRef, ...], tuple[Decimal, ...]]:
    """`65k,70k` or `65k:50%,70k:50%` (spaces allowed around the commas)."""
    text = ",".join(w.strip(",") for w in words if w.strip(","))
    if not text:
        raise UserError("Which take-profits? Give prices like 65k,70k or 65k:50%,70k:50%.")
    if ":" not in text:
        if "%" in text:
            return tuple(price_ref(p, "take-profit") for p in text.split(",")), ()
        return tuple(PriceRef(p) for p in parse_price_list(text)), ()
    prices: list[PriceRef] = []
    shares: list[Decimal] = []
    for part in text.split(","):
        if part.count(":") != 1:
            raise UserError(f"Give every target a share, like 65k:50%: {shown(part)}.")
        px, share = part.split(":")
        prices.append(price_ref(px, "take-profit"))
        shares.append(parse_percent(share, "share", require_sign=True))
    if len(prices) > 10:
        raise UserError("At most 10 take-profits, please.")
    total = sum(shares, Decimal(0))
    if total != 100:
        raise UserError(f"The shares add up to {total.normalize():f}%, not 100%.")
    return tuple(prices), tuple(shares)


def _split_symbol(args: Args, book: SymbolBook) -> tuple[str | None, list[str]]:
    """The optional symbol first (`/sl btc 58k`), then the rest as typed."""
    words = [t.raw for t in args.toks]
    if words and words[0][:1].isalpha() and words[0].lower() not in (
            "be", "breakeven", "break-even", "trail", "trailing"):
        return book.resolve(words[0]), words[1:]
    return None, words


def _sl(name: str, args: Args, book: SymbolBook) -> SetStop:
    symbol, rest = _split_symbol(args, book)
    be, price, trail = stop_value(rest)
    return SetStop(symbol=symbol, breakeven=be, price=price, trail=trail)


def _tp(name: str, args: Args, book: SymbolBook) -> SetTargets:
    symbol, rest = _split_symbol(args, book)
    prices, shares = targets_value(rest)
    if len({p for p in prices}) != len(prices):
        raise UserError("The same take-profit price is given twice.")
    return SetTargets(symbol=symbol, prices=prices, shares=shares)


COMMANDS = (
    Command(
        "sl", (SetStop,), _sl, "/sl [SYM] be | PRICE | trail N% | trail $N", "/sl btc be",
        ("Sets the stop-loss of an open position; a preview with Confirm comes first.",
         "be = break-even: entry plus fees, rounded to the tick, only once the mark is past it.",
         "PRICE: 58k, 58,000 or -2% (that far from the mark; in /buy, sl -2% is from the "
         "entry).",
         "A stop that would trigger at once (a long's above the mark) is refused.",
         "trail 1% / trail $500: BitMEX's own trailing stop (TrailingStopPeg), which follows "
         "the price only in your favour; where BitMEX refuses pegged orders the bot trails "
         "it itself by amending the stop, and the card says which.",
         "An existing stop is amended in place (PUT /order) when it can be.",
         NUMBERS, SYMBOLS,
         "The position card's SL → break-even, Trail SL 1 % and ✏️ Edit SL buttons do the "
         "same; a reply to Edit SL is read like the words after /sl btc.",
         "More: /sl btc 58k · /sl btc -2% · /sl eth trail 1% · /sl trail $500 · /sl be"),
        where="private",
    ),
    Command(
        "tp", (SetTargets,), _tp, "/tp [SYM] PRICE[,PRICE…] | PRICE:N%,PRICE:N%…",
        "/tp btc 65k,70k",
        ("Sets the take-profits of an open position (reduce-only limits), replacing the "
         "ones in force; a preview with Confirm comes first.",
         "Without shares the position is split equally; shares must add up to 100%.",
         "PRICE may be +3% (that far from the mark). A TP on the wrong side of the mark is "
         "refused.",
         "The position card's ✏️ Edit TP asks for the same words in a reply.",
         NUMBERS, SYMBOLS,
         "More: /tp btc 65k:50%,70k:50% · /tp eth +5% · /tp 65k:25%,68k:25%,72k:50%"),
        where="private",
    ),
)
