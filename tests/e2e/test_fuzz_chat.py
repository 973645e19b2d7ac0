"""Random text through the real handlers: nothing escapes, nothing is placed without a press."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.harness import Harness, Person

WORDS = [
    "/buy", "/sell", "/long", "/short", "/close", "/cancel", "/orders", "/pos", "/balance",
    "/leverage", "/alert", "/price", "buy", "sell", "close", "btc", "eth", "xbtusd", "XBTUSDT",
    "ethusdt", "@", "limit", "stop", "tp", "sl", "lev", "post", "reduce", "all", "100", "0", "-1",
    "1e9", "60k", "1.5m", "$500", "500usd", "0.01btc", "10%", "150%", "nan", "inf", "60,000",
    "cross", "above", "below", "move", "funding", "in", "1h", "/connect", "testnet", "paper",
    "/use", "/help", "/start", "/settings", "/tz", "UTC+3", "Europe/Berlin", "<b>", "&", "'",
    "risk", "1%", "15%", "force", "presets", "default",  # issue #14: risk sizing, presets
    "/panic", "panic", "deadman", "off", "/monitor", "monitor", "pin", "/chart",  # issue #14
    "/sl", "/tp", "be", "trail", "1%", "-2%", "$500", "65k:50%,70k:50%",  # issue #14
    "+2%", "59k", "$0.01", "moon", "0.001%",  # issue #14: relative stops, presets
]

messages = st.one_of(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join),
    st.text(min_size=1, max_size=60),
    st.builds(lambda w, t: f"{w} {t}", st.sampled_from(WORDS), st.text(max_size=30)),
)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=messages)
async def test_random_chat_never_breaks_and_never_places(h: Harness, text: str) -> None:
    person: Person = getattr(h, "_fuzz_person", None) or await _setup(h)
    key = h._fuzz_key  # type: ignore[attr-defined]
    h.svc.ratelimit.burst = h.svc.ratelimit.rate = 1e9  # the budget is test_security's
    before = len(person.bot_texts)
    h.emu.send_text(person.user, person.chat, text.replace("\x00", ""), bot=h.bot_username)
    await h.settle()
    for reply in person.bot_texts[before:]:
        assert "went wrong" not in reply, (text, reply)
        assert "Traceback" not in reply
    assert h.sim.engine.order_rows(h.sim.account(key).id) == [], text


async def _setup(h: Harness) -> Person:
    person, key = await h.connected("Fuzzer")
    h._fuzz_person = person  # type: ignore[attr-defined]
    h._fuzz_key = key  # type: ignore[attr-defined]
    return person


# Issue #14 item 5: the size presets' buttons, pressed in any order after any /buy or /sell
# without a size (and after /settings presets changed them): a preview at most, never an
# order, never an error.
# What may be typed beside the missing size: it rides with the menu (a stored PresetMenu)
# into the preview a press opens.
EXTRAS = ["@ 59k", "@ 3000", "stop 61k", "tp 65k", "tp 65k,70k", "tp 55k", "sl -2%", "sl +2%",
          "trail 1%", "trail $0.01", "trail $70000", "post", "reduce", "lev 5", "lev 200",
          "force", "market"]
preset_asks = st.tuples(
    st.sampled_from(["/buy", "/sell", "buy", "/long"]),
    st.sampled_from(["", "btc", "eth", "XBTUSDT", "ethusdt"]),
    st.sampled_from(["", "sl 58k", "sl 62k", "sl 3100", "sl 0.5"]),
    st.sampled_from(["", "/settings presets $50 2% risk 10 0.01btc", "/settings presets default",
                     "/settings presets 15% risk"]),
    st.integers(0, 3),
    st.lists(st.sampled_from(EXTRAS), max_size=3, unique=True).map(" ".join),
    # a forged button: another menu's id (maybe none, maybe someone else's), any token
    st.one_of(st.none(), st.tuples(st.integers(1, 2**31 - 1),
                                   st.sampled_from(["$100", "1%risk", "50%risk", "5%", "0", "x"]))),
)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ask=preset_asks)
async def test_preset_presses_never_break_and_never_place(
        h: Harness, ask: tuple[str, str, str, str, int, str, tuple[int, str] | None]) -> None:
    person: Person = getattr(h, "_fuzz_person", None) or await _setup(h)
    key = h._fuzz_key  # type: ignore[attr-defined]
    h.svc.ratelimit.burst = h.svc.ratelimit.rate = 1e9  # the budget is test_security's
    verb, symbol, sl, settings_text, pick, extras, forged = ask
    before = len(person.bot_texts)
    if settings_text:
        await person.send(settings_text)
    menu = await person.send(" ".join(w for w in (verb, symbol, sl, extras) if w))
    if menu is not None and menu.buttons:
        labels = [b for row in menu.buttons for b in row]
        label = labels[pick % len(labels)]
        if forged is not None and menu.reply_markup is not None:
            for row in menu.reply_markup["inline_keyboard"]:
                for b in row:
                    if b["text"] == label:
                        b["callback_data"] = f"zp:{forged[0]}:{forged[1]}"
        await person.press(label, menu)
        await person.press(label, menu)  # the same menu twice: two previews at most
    for reply in person.bot_texts[before:]:
        assert "went wrong" not in reply, (ask, reply)
        assert "Traceback" not in reply
    assert h.sim.engine.order_rows(h.sim.account(key).id) == [], ask
