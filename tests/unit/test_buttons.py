"""bot/buttons.py: every button the bot has ever sent still decodes to the same press, what
does not come from the bot decodes to None, and nothing over Telegram's 64 bytes is built."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import buttons as B
from bot.buttons import (
    KINDS,
    MAX_ID,
    AutoMode,
    ButtonData,
    ButtonError,
    CancelOrderRow,
    CardPress,
    ClosePositionRow,
    DeleteAlert,
    FollowSignal,
    ForgetKey,
    KeepKey,
    MenuPress,
    PanicOpen,
    PanicPress,
    PositionAction,
    PresetPick,
    PresetPress,
    Text,
    button,
    decode,
    encode,
    parse_id,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UUID = "eaf968c6-906b-4aaa-a32a-ab65d6e06ed7"  # a real BitMEX orderID (BITMEX.md)
ids = st.integers(min_value=1, max_value=MAX_ID)

# The encoders as they were written before the codec (commits ea85357, 9b98f4b, 31ca2ad,
# fb5df72, unchanged since), each with the press it means. Users still have these buttons.
OLD_FORMATS: list[tuple[str, ButtonData]] = [
    ("t:c:42", CardPress("c", 42)),          # trading._buttons: Confirm
    ("t:2:42", CardPress("2", 42)),          # ... "Place it" (mainnet, second confirm)
    ("t:x:42", CardPress("x", 42)),          # ... Cancel
    (f"oc:{UUID}", CancelOrderRow(UUID)),    # /orders: f"oc:{o.order_id[:36]}"
    ("oc:00000000-0000-0000-0000-000000000000", CancelOrderRow(
        "00000000-0000-0000-0000-000000000000")),
    ("pc:XBTUSD", ClosePositionRow("XBTUSD")),  # /positions: f"pc:{p.symbol}"
    ("pc:XBT_USDT", ClosePositionRow("XBT_USDT")),
    ("pc:PXBT150KZ26", ClosePositionRow("PXBT150KZ26")),
    ("pc:XBTZ26", ClosePositionRow("XBTZ26")),
    ("sz:Buy:XBTUSD:$100:-", PresetPress("Buy", "XBTUSD", "$100", "-")),  # issue #14 presets
    ("sz:Sell:ETHUSD:1%risk:3200.5", PresetPress("Sell", "ETHUSD", "1%risk", "3200.5")),
    ("zp:7:$100", PresetPick(7, "$100")),  # issue #14 presets with the typed order stored
    ("zp:42:1%risk", PresetPick(42, "1%risk")),
    # issue #14 position card (bot/trading/stops.py position_buttons)
    ("ps:c25:XBTUSD", PositionAction("c25", "XBTUSD")),
    ("ps:c100:XBTUSDT", PositionAction("c100", "XBTUSDT")),
    ("ps:be:ETHUSD", PositionAction("be", "ETHUSD")),
    ("ps:tr:XBTUSD", PositionAction("tr", "XBTUSD")),
    ("ps:rf:PXBT150KZ26", PositionAction("rf", "PXBT150KZ26")),
    ("k:d:testnet", ForgetKey("testnet")),   # /disconnect: f"k:d:{network}"
    ("k:d:mainnet", ForgetKey("mainnet")),
    ("k:d:paper", ForgetKey("paper")),
    ("k:x", KeepKey()),
    ("m:positions", MenuPress("positions")),  # the /start menu
    ("m:orders", MenuPress("orders")),
    ("m:balance", MenuPress("balance")),
    ("m:help", MenuPress("help")),
    ("al:d:17", DeleteAlert(17)),            # /alerts: f"al:d:{a.id}"
    ("fd:f:3", FollowSignal(3)),             # signal card: f"fd:f:{row.id}"
    ("fd:a:7:1", AutoMode(7, True)),         # f"fd:a:{feed_id}:{0 if on else 1}"
    ("fd:a:7:0", AutoMode(7, False)),
    # issue #14 item 6 (monitor)
    ("pn:o", PanicOpen()),                   # 🚨 Panic under /positions
    ("pn:k:c:42", PanicPress("c", 42)),      # panic card: Confirm
    ("pn:k:x:42", PanicPress("x", 42)),      # ... Cancel
]


@pytest.mark.parametrize(("data", "press"), OLD_FORMATS, ids=[d for d, _ in OLD_FORMATS])
def test_every_format_ever_sent_decodes_to_the_same_press(data: str, press: ButtonData) -> None:
    assert decode(data) == press
    assert encode(press) == data  # and today's keyboards send exactly the same bytes


def test_the_old_formats_cover_every_kind() -> None:
    assert {type(p) for _, p in OLD_FORMATS} == set(KINDS.values())


@FAST
@given(ids, st.sampled_from(["c", "2", "x"]), st.booleans())
def test_old_id_formats_decode_for_any_id(n: int, action: str, on: bool) -> None:
    assert decode(f"t:{action}:{n}") == CardPress(action, n)  # type: ignore[arg-type]
    assert decode(f"al:d:{n}") == DeleteAlert(n)
    assert decode(f"fd:f:{n}") == FollowSignal(n)
    assert decode(f"fd:a:{n}:{0 if not on else 1}") == AutoMode(n, on)


def test_order_ids_round_trip_for_real_uuids() -> None:
    for _ in range(200):
        oid = str(uuid.uuid4())
        assert decode(f"oc:{oid[:36]}") == CancelOrderRow(oid)


def test_the_builders_send_the_old_strings() -> None:
    from bot.feeds.book import _auto_buttons
    from bot.trading.cards import _buttons
    from handlers.start import MENU

    def data(rows: list[list[B.Button]]) -> list[str]:
        return [b.data for row in rows for b in row]

    assert data(_buttons(42)) == ["t:c:42", "t:x:42"]
    assert data(_buttons(42, "Place it", "2")) == ["t:2:42", "t:x:42"]
    assert data(_auto_buttons(7, True)) == ["fd:a:7:0"]  # on: the button turns it off
    assert data(_auto_buttons(7, False)) == ["fd:a:7:1"]
    assert data(MENU) == ["m:positions", "m:orders", "m:balance", "m:help"]


# The longest value each kind carries in real use; a new kind needs a row here.
LONGEST: list[ButtonData] = [
    CardPress("2", MAX_ID),
    CancelOrderRow(UUID),                     # BitMEX orderIDs are 36-char UUIDs
    ClosePositionRow("P_" + "X" * 30),        # longer than any BitMEX symbol
    ForgetKey("testnet"),
    KeepKey(),
    MenuPress("positions"),
    DeleteAlert(MAX_ID),
    FollowSignal(MAX_ID),
    AutoMode(MAX_ID, True),
    PresetPress("Sell", "X" * 20, "0.0001234xbt", "9999999999.999999"),
    PresetPick(MAX_ID, "0.0001234xbt"),
    PanicOpen(),
    PanicPress("c", MAX_ID),
    PositionAction("c100", "P_" + "X" * 30),
]


def test_the_longest_real_values_fit_telegrams_64_bytes() -> None:
    assert {type(p) for p in LONGEST} == set(KINDS.values())
    for press in LONGEST:
        text = encode(press)
        assert 1 <= len(text.encode()) <= 64, text
        assert decode(text) == press
        assert button("x", press).data == text


@pytest.mark.parametrize("press", [
    CardPress("z", 1),  # type: ignore[arg-type]
    CardPress("c", 0),
    CardPress("c", -1),
    CardPress("c", MAX_ID + 1),
    CardPress("c", True),
    CardPress("c", "1"),  # type: ignore[arg-type]
    CancelOrderRow(UUID + "x"),
    CancelOrderRow("a:b"),
    CancelOrderRow(""),
    ClosePositionRow("XBT USD"),
    ClosePositionRow("X" * 33),
    ForgetKey("nowhere"),
    MenuPress("stats"),  # type: ignore[arg-type]
    AutoMode(1, 1),  # type: ignore[arg-type]
    DeleteAlert(10**30),
])
def test_a_button_that_could_not_come_back_is_refused_when_built(press: ButtonData) -> None:
    with pytest.raises(ButtonError):
        encode(press)


@pytest.fixture
def scratch_kinds() -> Iterator[None]:
    """Kinds defined by a test leave the registry as they found it (the bot's start-up
    checks that every registered kind has a handler)."""
    before = dict(KINDS)
    yield
    KINDS.clear()
    KINDS.update(before)


def test_over_64_bytes_is_refused_when_built(scratch_kinds: None) -> None:
    @dataclass(frozen=True)
    class Wide(ButtonData):
        prefix: ClassVar[str] = "zz:wide"
        a: Annotated[str, Text(r"[a-z]{1,40}")]
        b: Annotated[str, Text(r"[a-z]{1,40}")]

    assert encode(Wide("a" * 20, "b" * 20)) == "zz:wide:" + "a" * 20 + ":" + "b" * 20
    with pytest.raises(ButtonError, match="64"):
        encode(Wide("a" * 40, "b" * 40))
    with pytest.raises(ValueError):
        button("Wide", Wide("a" * 40, "b" * 40))


def test_kinds_cannot_clash_nor_be_loose(scratch_kinds: None) -> None:
    with pytest.raises(ButtonError, match="clashes"):
        class Again(ButtonData):  # the same prefix as CardPress
            prefix: ClassVar[str] = "t"
    with pytest.raises(ButtonError, match="clashes"):
        class Shadow(ButtonData):  # "k" would make "k:d:testnet" ambiguous
            prefix: ClassVar[str] = "k"
    with pytest.raises(ButtonError, match="clashes"):
        class Deeper(ButtonData):
            prefix: ClassVar[str] = "t:c"
    with pytest.raises(ButtonError, match="prefix"):
        class Nameless(ButtonData):
            pass
    with pytest.raises(ButtonError, match="separator"):
        Text(r"[a-z:]+")

    class Loose(ButtonData):  # not a dataclass
        prefix: ClassVar[str] = "zz:loose"

    with pytest.raises(ButtonError, match="frozen dataclass"):
        encode(Loose())

    @dataclass(frozen=True)
    class Floaty(ButtonData):
        prefix: ClassVar[str] = "zz:float"
        x: float

    with pytest.raises(ButtonError, match="unsupported"):
        encode(Floaty(1.0))


FORGED = [
    None, "", ":", "::", "t", "t:", "t:c", "t:c:", "t:c:42:1", "t:z:42", "T:c:42", "t:C:42",
    "t:c:\u00b2", "t:c:\uff14\uff12", "t:c:-1", "t:c:+1", "t:c:0", "t:c:042", "t:c:1e3",
    "t:c: 42", "t:c:42 ", "t:c:4_2", "t:c:9999999999999999", "t:c:99999999999999999999999",
    "oc:", "oc:" + "x" * 37, "oc:" + "x" * 60, "oc:ab cd", "oc:\u0430\u0431", "oc:a:b",
    "oc:1234567890123456", "pc:", "pc:XBT USD", "pc:" + "X" * 33, "pc:XBT\u00a0USD",
    "k", "k:", "k:d", "k:d:", "k:d:nowhere", "k:d:Testnet", "k:x:1", "k:y", "m", "m:",
    "m:stats", "m:help:1", "al", "al:d", "al:d:\u00b3", "al:d:99999999999999999999999",
    "al:x:1", "fd", "fd:f", "fd:f:\u00b9", "fd:f:99999999999999999999999", "fd:a:1",
    "fd:a:1\u00b2:1", "fd:a:1:2", "fd:a:1:", "fd:a:1:on", "fd:z:1", "zz:1", "go",
    "t:c:42\x00", "t:c:42\n", "\u202et:c:42", "t:c:" + "1" * 61,
]


@pytest.mark.parametrize("data", FORGED)
def test_forged_or_stale_data_decodes_to_nothing(data: str | None) -> None:
    assert decode(data) is None


@FAST
@given(st.text(max_size=70) | st.from_regex(
    r"(t|oc|pc|k|m|al|fd)(:[0-9a-z\u00b2 _.-]{0,18}){0,3}", fullmatch=True))
def test_decode_never_raises_and_what_decodes_is_canonical(data: str) -> None:
    press = decode(data)
    if press is not None:
        assert encode(press) == data  # one string per press: no second spelling gets in


def test_private_kinds_are_the_ones_that_act_on_the_pressers_account() -> None:
    # Before the codec the gate refused these prefixes in groups (PRIVATE_BUTTONS).
    # sz: and zp: size presets, pn: /panic, ps: the position card (issue #14)
    old_private = ("t:", "oc:", "pc:", "k:", "m:", "sz:", "zp:", "pn:", "ps:")
    for prefix, kind in KINDS.items():
        assert kind.private == (prefix + ":").startswith(old_private), prefix


def test_parse_id_takes_what_buttons_carry() -> None:
    assert parse_id("42") == 42 and parse_id(str(MAX_ID)) == MAX_ID
    for bad in ("", "0", "042", "-1", "\u00b2", "1" * 16, "4 2", "x"):
        assert parse_id(bad) is None, bad
