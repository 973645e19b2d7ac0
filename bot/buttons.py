"""What a button carries, typed: one codec for every button the bot makes (issue #12 item 4).

Telegram gives a button 1-64 bytes of callback data and hands them back verbatim when it is
pressed, from any client: a modified one can send any data on any message it sees (Bot API:
"a bad client can send arbitrary data"). So a press is read here, once, into a small frozen
dataclass, and anything the bot could not have made (an unknown prefix, the wrong number of
fields, a non-ASCII digit, an id too big for the database, a network that does not exist)
decodes to None, which handlers answer as a stale button.

The format is the prefix and the fields joined by ":" (`t:c:42`, `fd:a:7:1`). It must never
change for a kind already sent: users keep old cards in their chats and press them weeks
later (tests/unit/test_buttons.py decodes every format the bot has ever sent).

Field types: `int` is a database id (1-15 ASCII digits, no leading zero, which also keeps
forged 16-digit ids out, the rule the access gate used to apply by regex); `bool` is 0/1;
a `Literal` of strings is one of its values; `Annotated[str, Text(pattern)]` is a string
matching the pattern (never ":").
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from bot.notify import Button

MAX_BYTES = 64  # Telegram's limit on callback_data
# Row ids are INTEGER columns: 32-bit on PostgreSQL, so a bigger id in forged data would not
# even make a query (asyncpg refuses it) — it is refused here, as forged, instead.
MAX_ID = 2**31 - 1
SEP = ":"
# Everything the bot makes is printable ASCII; a run of 16 digits is no id of ours.
_FORGED_RE = re.compile(r"[^\x20-\x7e]|[0-9]{16}")
_ID_RE = re.compile(r"[1-9][0-9]{0,14}")


class ButtonError(ValueError):
    """A button that cannot be built as asked (a bug: raised when the keyboard is built)."""


@dataclass(frozen=True)
class Text:
    """The shape a string field must have, e.g. `Annotated[str, Text(r"[A-Z]{1,8}")]`."""

    pattern: str

    def __post_init__(self) -> None:
        if re.fullmatch(self.pattern, SEP):
            raise ButtonError(f"{self.pattern!r} admits the separator")


class ButtonData:
    """Base of every button kind: a frozen dataclass with a `prefix` and typed fields.

    `private` kinds act on the presser's own account (cards, order rows, keys, the /start
    menu): the bot shows them only in private chats, and a press in a group is refused
    (a forged one would otherwise post the presser's account there).
    """

    prefix: ClassVar[str]
    private: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _register(cls)


KINDS: dict[str, type[ButtonData]] = {}  # prefix -> kind, every kind the bot has


def _register(kind: type[ButtonData]) -> None:
    prefix = kind.__dict__.get("prefix")
    if not isinstance(prefix, str) or not prefix:
        raise ButtonError(f"{kind.__name__} needs a prefix")
    if _FORGED_RE.search(prefix) or " " in prefix:
        raise ButtonError(f"{kind.__name__}: prefix {prefix!r} is not plain ASCII")
    heads = prefix.split(SEP)
    for other, known in KINDS.items():
        theirs = other.split(SEP)
        # "k" beside "k:d" would make `k:d:x` ambiguous (a "k" with fields "d", "x").
        if heads[:len(theirs)] == theirs or theirs[:len(heads)] == heads:
            raise ButtonError(f"{kind.__name__}: prefix {prefix!r} clashes with "
                              f"{known.__name__} ({other!r})")
    KINDS[prefix] = kind


# --- field codecs --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Field:
    name: str
    kind: Literal["id", "bool", "choice", "text"]
    choices: frozenset[str] = frozenset()
    pattern: re.Pattern[str] | None = None

    def dump(self, value: object) -> str:
        if self.kind == "id":
            if type(value) is not int or not 1 <= value <= MAX_ID:
                raise ButtonError(f"{self.name}: {value!r} is no id")
            return str(value)
        if self.kind == "bool":
            if type(value) is not bool:
                raise ButtonError(f"{self.name}: {value!r} is no bool")
            return "1" if value else "0"
        if not isinstance(value, str):
            raise ButtonError(f"{self.name}: {value!r} is no string")
        if self.kind == "choice" and value not in self.choices:
            raise ButtonError(f"{self.name}: {value!r} is not one of {sorted(self.choices)}")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise ButtonError(f"{self.name}: {value!r} does not match {self.pattern.pattern}")
        return value

    def load(self, text: str) -> object:
        """The field's value, or None when no button of ours carries this text."""
        if self.kind == "id":
            return int(text) if _ID_RE.fullmatch(text) else None
        if self.kind == "bool":
            return {"0": False, "1": True}.get(text)
        if self.kind == "choice":
            return text if text in self.choices else None
        assert self.pattern is not None
        return text if self.pattern.fullmatch(text) else None


def _field(name: str, hint: object) -> _Field:
    if hint is int:
        return _Field(name, "id")
    if hint is bool:
        return _Field(name, "bool")
    if typing.get_origin(hint) is Literal:
        values = typing.get_args(hint)
        if not values or not all(isinstance(v, str) and v and SEP not in v for v in values):
            raise ButtonError(f"{name}: Literal values must be non-empty strings without ':'")
        return _Field(name, "choice", choices=frozenset(values))
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        shapes = [e for e in extras if isinstance(e, Text)]
        if base is str and len(shapes) == 1:
            return _Field(name, "text", pattern=re.compile(shapes[0].pattern))
    raise ButtonError(f"{name}: unsupported field type {hint!r} (int, bool, Literal, "
                      "Annotated[str, Text(...)])")


_FIELDS: dict[type[ButtonData], tuple[_Field, ...]] = {}


def _fields(kind: type[ButtonData]) -> tuple[_Field, ...]:
    """The kind's field codecs, read from its annotations on first use (the class must be
    complete, and a dataclass, which it is not yet when __init_subclass__ runs)."""
    known = _FIELDS.get(kind)
    if known is not None:
        return known
    params = getattr(kind, "__dataclass_params__", None)
    if not dataclasses.is_dataclass(kind) or params is None or not params.frozen:
        raise ButtonError(f"{kind.__name__} must be a frozen dataclass")
    hints = typing.get_type_hints(kind, include_extras=True)
    known = _FIELDS[kind] = tuple(_field(f.name, hints[f.name]) for f in dataclasses.fields(kind))
    return known


# --- the codec -----------------------------------------------------------------------------

def encode(data: ButtonData) -> str:
    """The callback data for a button; ButtonError when it could not come back as `data`."""
    kind = type(data)
    if KINDS.get(kind.prefix) is not kind:
        raise ButtonError(f"{kind.__name__} is not a registered button kind")
    parts = [kind.prefix] + [f.dump(getattr(data, f.name)) for f in _fields(kind)]
    text = SEP.join(parts)
    size = len(text.encode())
    if size > MAX_BYTES:
        raise ButtonError(f"{kind.__name__} callback data is {size} bytes, over Telegram's "
                          f"{MAX_BYTES}: {text!r}")
    return text


def decode(text: str | None) -> ButtonData | None:
    """The button a press carries; None for anything the bot did not make (forged or stale)."""
    if not text or len(text) > MAX_BYTES or _FORGED_RE.search(text):
        return None
    parts = text.split(SEP)
    for n in (2, 1):  # a prefix is one or two segments ("t", "fd:a")
        kind = KINDS.get(SEP.join(parts[:n])) if len(parts) >= n else None
        if kind is None:
            continue
        fields, raw = _fields(kind), parts[n:]
        if len(raw) != len(fields):
            return None
        values = [f.load(r) for f, r in zip(fields, raw, strict=True)]
        if any(v is None for v in values):
            return None
        return kind(*values)
    return None


def button(label: str, data: ButtonData) -> Button:
    """A keyboard button carrying `data`."""
    return Button(label, encode(data))


def parse_id(text: str) -> int | None:
    """A row id as buttons carry it (also used for `/start f<id>` deep links), else None."""
    return int(text) if _ID_RE.fullmatch(text) else None


# --- every button kind ---------------------------------------------------------------------
# Formats in use (never change them; add a new kind instead):
#   t:<c|2|x>:<card id>     Confirm / Place it / Cancel on an order card
#   oc:<order id>           Cancel N under /orders (the BitMEX orderID, a 36-char UUID)
#   pc:<symbol>             Close SYM under /positions
#   k:d:<network> · k:x     Forget it / Keep under /disconnect
#   m:<item>                the /start menu
#   al:d:<alert id>         Delete #N under /alerts
#   fd:f:<signal id>        Follow under a feed's signal card
#   fd:a:<feed id>:<0|1>    auto mode on (1) / off (0) for a followed feed

CardAction = Literal["c", "2", "x"]  # confirm · confirm again (mainnet, big) · cancel
# A string, as accounts keep it (bot.accounts.Network), but only the three that exist.
NetworkName = Annotated[str, Text(r"testnet|mainnet|paper")]
MenuItem = Literal["positions", "orders", "balance", "help"]
OrderRef = Annotated[str, Text(r"[0-9A-Za-z_-]{1,36}")]
Symbol = Annotated[str, Text(r"[A-Za-z0-9._-]{1,32}")]


@dataclass(frozen=True)
class CardPress(ButtonData):
    """A press on an order card (`Trading.take_press` reads the action)."""

    prefix: ClassVar[str] = "t"
    private: ClassVar[bool] = True
    action: CardAction
    card_id: int


@dataclass(frozen=True)
class CancelOrderRow(ButtonData):
    """Cancel N under /orders: opens a cancel card for that order."""

    prefix: ClassVar[str] = "oc"
    private: ClassVar[bool] = True
    order_id: OrderRef


@dataclass(frozen=True)
class ClosePositionRow(ButtonData):
    """Close SYM under /positions: opens a close card."""

    prefix: ClassVar[str] = "pc"
    private: ClassVar[bool] = True
    symbol: Symbol


@dataclass(frozen=True)
class ForgetKey(ButtonData):
    """🗑 Forget it under /disconnect."""

    prefix: ClassVar[str] = "k:d"
    private: ClassVar[bool] = True
    network: NetworkName


@dataclass(frozen=True)
class KeepKey(ButtonData):
    """Keep under /disconnect."""

    prefix: ClassVar[str] = "k:x"
    private: ClassVar[bool] = True


@dataclass(frozen=True)
class MenuPress(ButtonData):
    """A /start menu button: runs the command of the same name."""

    prefix: ClassVar[str] = "m"
    private: ClassVar[bool] = True
    item: MenuItem


@dataclass(frozen=True)
class DeleteAlert(ButtonData):
    """🗑 Delete #N under /alerts (in groups, for admins)."""

    prefix: ClassVar[str] = "al:d"
    alert_id: int


@dataclass(frozen=True)
class FollowSignal(ButtonData):
    """📥 Follow under a signal card in a feed group: a private preview for the presser."""

    prefix: ClassVar[str] = "fd:f"
    signal_id: int


@dataclass(frozen=True)
class AutoMode(ButtonData):
    """Auto mode for a followed feed; `on` is the state the press asks for."""

    prefix: ClassVar[str] = "fd:a"
    feed_id: int
    on: bool



# --- issue #14 item 5 (risk): size presets ---------------------------------------------

# Sized so the longest press fits 64 bytes: `sz:Sell:` + 20 + `:` + 12 + `:` + 17 = 59.
PresetSymbol = Annotated[str, Text(r"[A-Za-z0-9._-]{1,20}")]
PresetToken = Annotated[str, Text(r"[0-9a-z.$%]{1,12}")]
StopText = Annotated[str, Text(r"-|[0-9]{1,10}(\.[0-9]{1,6})?")]


@dataclass(frozen=True)
class PresetPress(ButtonData):
    """A size preset under `/buy SYM` without a size: opens that order's preview card.
    It carries the size itself (a token of bot/parse/trading.py) and the stop-loss, or
    "-", so a press after the presets changed does what its label said."""

    prefix: ClassVar[str] = "sz"
    private: ClassVar[bool] = True
    side: Literal["Buy", "Sell"]
    symbol: PresetSymbol
    size: PresetToken
    sl: StopText


@dataclass(frozen=True)
class PresetPick(ButtonData):
    """A size preset under an order typed without a size (`/buy btc @ 60k sl -2%`): the
    typed order is stored server-side (a PresetMenu row, bot/prefs.py) and the button
    carries only its id and the preset's size, so a press opens exactly what was typed
    with that size, however long the command. (PresetPress, which carried the symbol and
    stop itself, is still decoded for menus sent before.)"""

    prefix: ClassVar[str] = "zp"
    private: ClassVar[bool] = True
    menu_id: int
    size: PresetToken


# --- issue #14 item 6 (monitor): panic -----------------------------
#   pn:o                    🚨 Panic under /positions: opens the panic card
#   pn:k:<c|x>:<card id>    Confirm / Cancel on a panic card


@dataclass(frozen=True)
class PanicOpen(ButtonData):
    """🚨 Panic under /positions: a panic card for the presser's active account."""

    prefix: ClassVar[str] = "pn:o"
    private: ClassVar[bool] = True


@dataclass(frozen=True)
class PanicPress(ButtonData):
    """Confirm / Cancel on a panic card (the card is an order card of kind "panic"; its
    own kind so the press can also turn the dead-man's switch off when asked)."""

    prefix: ClassVar[str] = "pn:k"
    private: ClassVar[bool] = True
    action: Literal["c", "x"]
    card_id: int


# --- issue #14 items 1 and 3 (stops): the position card's buttons ---------------------

PositionActionKind = Literal["c25", "c50", "c100", "be", "tr", "es", "et", "rf"]


@dataclass(frozen=True)
class PositionAction(ButtonData):
    """A position card's button: Close 25/50/100 %, SL → break-even, Trail SL, Edit SL,
    Edit TP, Refresh. Each but Refresh and the edits opens a preview card."""

    prefix: ClassVar[str] = "ps"
    private: ClassVar[bool] = True
    action: PositionActionKind
    symbol: Symbol
