"""The words of a command: tokenizing, `keyword value` options, and the argument checks
several commands share (leverage, USD amounts, record ids, exits on the right side).
Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from bot.errors import UserError
from bot.parse.values import SymbolBook, parse_number, shown

MAX_LEVERAGE = Decimal(100)

NETWORKS = ("testnet", "mainnet", "paper")


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


# keyword -> (slot, kind). kind: flag | price | prices | range | number | percent | usd
Spec = dict[str, tuple[str, str]]

_WHAT = {
    "price": "price",
    "prices": "price",
    "range": "price or range P1-P2",
    "number": "number",
    "percent": "percentage",
    "usd": "USD amount",
}


def split_options(args: Args, spec: Spec) -> tuple[dict[str, tuple[str, str]], list[Tok]]:
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
                raise UserError(f"'{kw}' needs a {_WHAT[kind]} after ")
            value = nxt.raw
            i += 1
        found[slot] = (kw, value)
        i += 1
    return found, positional


def leverage_value(word: str) -> Decimal:
    w = word.strip().lower()
    w = w[:-1] if w.endswith("x") else w[1:] if w.startswith("x") else w
    value = parse_number(w, "leverage")
    if value > MAX_LEVERAGE:
        raise UserError(f"Leverage is at most {MAX_LEVERAGE}x.")
    if value < Decimal("0.01"):
        raise UserError("Leverage must be at least 0.01.")
    return value


LEV_WORD_RE = re.compile(r"^(?:\d+(?:\.\d+)?x|x\d+(?:\.\d+)?)$")


def usd_amount(word: str, what: str) -> Decimal:
    w = word.strip().lower()
    w = w[1:] if w.startswith("$") else w
    for suffix in ("usdt", "usd", "$"):
        if w.endswith(suffix):
            w = w[: -len(suffix)]
            break
    return parse_number(w, what)


def no_args(args: Args, name: str) -> None:
    if args.toks:
        raise UserError(f"/{name} takes no arguments.")


def unexpected(tok: Tok) -> UserError:
    return UserError(f"I don't understand {shown(tok.raw)!r} here.")


def symbol_or_none(toks: list[Tok], book: SymbolBook, name: str) -> str | None:
    if not toks:
        return None
    if len(toks) > 1:
        raise unexpected(toks[1])
    return book.resolve(toks[0].raw)


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


def record_id(tok: Tok, what: str) -> int:
    w = tok.low.lstrip("#")
    if not w.isdigit() or len(w) > 12 or int(w) == 0:
        raise UserError(f"{shown(tok.raw)} is not a {what} id.")
    return int(w)
