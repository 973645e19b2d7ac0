"""Free-text trading signals as people post them in groups (pure; fuzzed in tests).

    recognise("BTC/USDT LONG\\nEntry 60k-61k\\nTP1 62k\\nTP2 64k\\nSL 58,500", book)
    -> Signal(side="long", symbol="XBTUSDT", entry_low=60000, entry_high=61000, ...)

Three outcomes, never a guess:
- None: the message is not signal-shaped (chatter, a question, a price remark);
- a `Signal` intent (the same one `/signal long ...` gives) whose prices are consistent;
- `UserError` with the reason when it is signal-shaped but unusable: no stop, no entry,
  a stop on the wrong side of the entry, targets behind the entry.

Signal-shaped means: a pair the exchange knows (`BTC/USDT`, `XBTUSD`, `#BTC`, `$eth`), and
a side word or an entry line, and at least one price line (entry, targets or stop).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from bot.errors import UserError
from bot.parse.feeds import Signal
from bot.parse.values import (
    SymbolBook,
    parse_number,
    parse_percent,
    parse_price,
    parse_price_list,
)
from bot.parse.words import check_exits

MAX_TEXT = 2000  # longer posts are articles, not signals; also bounds the regex work

# Keywords open a field; the field's text runs to the next keyword. Longer spellings come
# first so `stop loss` is not read as `stop` + `loss`.
_KEYWORDS: list[tuple[str, str]] = [
    ("sl", r"stop[\s\-_]*loss|stoploss|stop|sl|invalidation|inval"),
    ("tp", r"take[\s\-_]*profits?|targets?|tgts?|tps?"),
    ("entry", r"entry[\s\-_]*(?:zone|price|range)|entries|entry|buy[\s\-_]*zone|"
              r"sell[\s\-_]*zone|enter|open"),
    ("lev", r"leverage|lev"),
    ("risk", r"risk"),
]
# A target's list number right after the keyword (`TP1:`, `Target 2 -`, `tp3 62000`) is
# a label, not a price. One digit when spaced, so `TP 62 - 64` stays two prices.
_LABEL = r"(?:\s*\d(?=\s*[:=)]|\.\s|\s+[-–—]\s)|\d{1,2}(?=\s|:))?"


def _keyword_alt(name: str, pattern: str) -> str:
    label = _LABEL if name == "tp" else ""
    body = rf"(?<![\w])(?:{pattern}){label}(?![\w])"
    if name == "entry":
        body += "|@"  # `@ 60000`, `@60k`: glued to the number, so no word boundary
    return f"(?P<{name}>{body})"


_KEYWORD_RE = re.compile("|".join(_keyword_alt(n, p) for n, p in _KEYWORDS), re.IGNORECASE)
_SIDE_RE = re.compile(r"(?<![\w])(long|short|buy|sell)(?![\w])", re.IGNORECASE)
_NUMBER_RE = re.compile(r"(?<![\w.,])\$?\d[\d,]*(?:\.\d+)?[kKmM]?(?![\w%])")
_LEV_RE = re.compile(r"(?<![\w.])(?:x(\d{1,3}(?:\.\d+)?)|(\d{1,3}(?:\.\d+)?)\s?x)(?![\w])",
                     re.IGNORECASE)
_PAIR_RE = re.compile(r"(?<![\w])[#$]?[A-Za-z][A-Za-z0-9]{1,11}(?:[/\-_:][A-Za-z]{2,6})?(?![\w])")
_LIST_MARK_RE = re.compile(r"(?<![\w.,])\d{1,2}\s*[).]\s+(?=\$?\d)|(?<![\w.,])\d{1,2}\s*[:=]\s*")
_RANGE_SEP_RE = re.compile(r"\s*(?:-|–|—|~|\bto\b|\.\.)\s*", re.IGNORECASE)
_ONLY_LIST_LINE_RE = re.compile(r"^[\s\-–—•*>|,/;)(.:\d$kKmM]*$")
_NOT_PAIRS = frozenset({
    "LONG", "SHORT", "BUY", "SELL", "ENTRY", "ENTRIES", "ENTER", "OPEN", "STOP", "LOSS",
    "STOPLOSS", "SL", "TP", "TPS", "TARGET", "TARGETS", "TAKE", "PROFIT", "PROFITS", "ZONE",
    "LEV", "LEVERAGE", "RISK", "CROSS", "ISOLATED", "SPOT", "FUTURES", "PERP", "SIGNAL", "NOW",
    "PRICE", "RANGE", "AT", "TO", "AND", "THE", "MARKET", "CMP",
})


def _pair(text: str, book: SymbolBook) -> str | None:
    """The first word that names a known contract; tagged or capitalised words first, so
    an English word that happens to be a coin (`link`) does not win over `#ETH`."""
    strong: list[str] = []
    weak: list[str] = []
    for m in _PAIR_RE.finditer(text):
        word = m.group(0)
        bare = re.sub(r"[/\-_:]", "", word.lstrip("#$")).upper()
        if bare in _NOT_PAIRS:
            continue
        tagged = word[0] in "#$" or any(c in word for c in "/-_:")
        (strong if tagged or word.isupper() else weak).append(word)
    for word in strong + weak:
        found = book.lookup(word)
        if found is not None:
            return found
    return None


def _first_line_with_number(chunk: str, *, more_lines: bool = False) -> str:
    """The part of a field that holds its value: the first line with a number (and, for
    target lists, the bare-number lines right under it)."""
    lines = chunk.split("\n")
    for i, line in enumerate(lines):
        if _NUMBER_RE.search(line):
            taken = [line]
            if more_lines:
                for nxt in lines[i + 1 :]:
                    if not nxt.strip():
                        continue
                    if _ONLY_LIST_LINE_RE.match(nxt) and _NUMBER_RE.search(nxt):
                        taken.append(nxt)
                    else:
                        break
            return "\n".join(taken)
    return ""


def _numbers(chunk: str) -> list[str]:
    return [m.group(0) for m in _NUMBER_RE.finditer(chunk)]


def _entry(chunk: str) -> tuple[Decimal, Decimal] | None:
    line = _first_line_with_number(chunk)
    if not line:
        return None
    # `60000 - 61000`, `60k to 61k`: a zone. Several loose prices (DCA entries): their span.
    line = _RANGE_SEP_RE.sub(" ", line)
    words = _numbers(line)
    prices = [parse_price(w, "entry") for w in words[:6]]
    return min(prices), max(prices)


def _near(prices: tuple[Decimal, ...], ref: Decimal) -> bool:
    return all(ref / 5 <= p <= ref * 5 for p in prices)


def _comma_part(part: str, ref: Decimal | None) -> tuple[Decimal, ...]:
    """`131,027`: one price near an entry of 131,028, or two (`160,170`) near 150. The
    entry settles what parse_price_list can only guess from the numbers themselves."""
    as_list = parse_price_list(part)
    if ref is None or "," not in part or _near(as_list, ref):
        return as_list
    if re.fullmatch(r"\$?\d{1,3}(?:,\d{3})+(?:\.\d+)?[kKmM]?", part):
        whole = (parse_price(part, "take-profit"),)
        if _near(whole, ref):
            return whole
    return as_list


def _targets(chunks: str, ref: Decimal | None = None) -> tuple[Decimal, ...]:
    found: list[Decimal] = []
    for chunk in chunks.split("\n\x00"):
        body = _first_line_with_number(chunk, more_lines=True)
        body = _LIST_MARK_RE.sub(" ", body)
        # Spaces, dashes, slashes and pipes separate targets; commas are left to
        # parse_price_list, which tells `62,000` (one price) from `160,170` (two).
        for part in re.split(r"[\s\-–—/|;•*>)(]+", body):
            part = part.strip(",:.")
            if re.fullmatch(r"\$?\d[\d.,]*[kKmM]?", part):
                found.extend(_comma_part(part, ref))
    return tuple(found)


def _leverage(fields: dict[str, str], text: str) -> Decimal | None:
    chunk = fields.get("lev")
    candidates = [chunk] if chunk is not None else []
    candidates.append(text)
    for c in candidates:
        m = _LEV_RE.search(c)
        if m:
            value = parse_number(m.group(1) or m.group(2), "leverage")
        elif c is chunk:
            nums = _numbers(_first_line_with_number(c))
            if not nums:
                continue
            value = parse_number(nums[0], "leverage")
        else:
            continue
        if not Decimal("0.01") <= value <= 100:
            raise UserError("Leverage must be between 0.01 and 100.")
        return value
    return None


def recognise(text: str, book: SymbolBook) -> Signal | None:
    """A signal in free text, None when the text is not signal-shaped; UserError (with the
    reason) when it is signal-shaped but incomplete or inconsistent."""
    if not text or len(text) > MAX_TEXT:
        return None
    symbol = _pair(text, book)
    if symbol is None:
        return None
    # Several keywords of the same kind (TP1, TP2 ...) are joined with a separator
    # that cannot be typed, so each target line is read on its own.
    fields: dict[str, str] = {}
    marks = [(m.start(), m.end(), m.lastgroup or "") for m in _KEYWORD_RE.finditer(text)]
    for i, (_, end, kind) in enumerate(marks):
        stop = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        chunk = text[end:stop]
        fields[kind] = fields[kind] + "\n\x00" + chunk if kind in fields else chunk
    side_m = _SIDE_RE.search(text)
    has_prices = any(k in fields for k in ("entry", "tp", "sl"))
    if not has_prices or (side_m is None and "entry" not in fields):
        return None

    entry = _entry(fields["entry"].split("\n\x00")[0]) if "entry" in fields else None
    sl_line = _first_line_with_number(fields["sl"].split("\n\x00")[0]) if "sl" in fields else ""
    sl_words = _numbers(sl_line)
    sl = parse_price(sl_words[0], "stop-loss") if sl_words else None
    ref = (entry[0] + entry[1]) / 2 if entry is not None else None
    tps = _targets(fields["tp"], ref) if "tp" in fields else ()
    if sl is None:
        raise UserError("This looks like a signal but has no stop-loss, so I won't post it. "
                        "Add a line like <b>SL 58000</b>.")
    if entry is None:
        raise UserError("This looks like a signal but has no entry price. "
                        "Add a line like <b>Entry 60000</b> or <b>Entry 60000-61000</b>.")
    low, high = entry
    side: Literal["long", "short"]
    if side_m is not None:
        word = side_m.group(1).lower()
        side = "long" if word in ("long", "buy") else "short"
    else:
        # No side word: the stop tells it (below the entry: a long). Targets are then
        # checked against that side like any other signal.
        if low <= sl <= high:
            raise UserError("The stop-loss is inside the entry zone, so the side is unclear.")
        side = "long" if sl < low else "short"
    if len(set(tps)) != len(tps):
        raise UserError("The same take-profit price is given twice.")
    if len(tps) > 10:
        raise UserError("At most 10 take-profit prices, please.")
    check_exits(side == "long", low, tps, sl, entry_high=high)
    risk = None
    if "risk" in fields:
        nums = re.findall(r"\d+(?:\.\d+)?\s*%", fields["risk"])
        if nums:
            risk = parse_percent(nums[0].replace(" ", ""), "risk")
    return Signal(
        side=side,
        symbol=symbol,
        entry_low=low,
        entry_high=high,
        sl=sl,
        tps=tps,
        leverage=_leverage(fields, text),
        risk_percent=risk,
    )


def looks_like_signal(text: str) -> bool:
    """A cheap pre-check before any API call: a keyword and a number in the text."""
    return (bool(text) and len(text) <= MAX_TEXT and _KEYWORD_RE.search(text) is not None
            and _NUMBER_RE.search(text) is not None)


def risk_reward(s: Signal) -> Decimal | None:
    """Reward/risk to the last target from the middle of the entry zone."""
    if not s.tps:
        return None
    mid = (s.entry_low + s.entry_high) / 2
    risk = abs(mid - s.sl)
    if risk == 0:
        return None
    return abs(s.tps[-1] - mid) / risk
