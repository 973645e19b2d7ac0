"""What counts as a pasted key: real ones wherever they hide, ordinary words never."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.keyshape import key_shaped, looks_secret, words

CHATTER = "thanks everyone, I am new here and want to be sure this is fine before I trade"
# A BitMEX-like secret that surely mixes all three kinds of characters.
SECRET = "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO"
KEY_ID = "LAqUlngMIQkIUjXMUreyu3qn"


@pytest.mark.parametrize("text", [
    SECRET,
    f"{SECRET}?",
    f"is it ok?{SECRET}?!",
    f"secret={SECRET} {CHATTER}",
    f"key:{KEY_ID}",
    f"({KEY_ID})!",
    f"here {SECRET[:24]} {SECRET[24:]} {CHATTER}",
    f"here {SECRET[:30]}\n{SECRET[30:]} {CHATTER}",
    f"{KEY_ID} {SECRET}",
])
def test_pasted_keys_are_recognised(text: str) -> None:
    assert looks_secret(text)


@pytest.mark.parametrize("text", [
    "/cancel eaf968c6-906b-4aaa-a32a-ab65d6e06ed7",  # an order id
    "tx 9f2c4e1a7b3d5f6e8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2",
    f"see https://example.com/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdEF {CHATTER}",
    "Internationalization",
    "BitcoinPriceAnalysisReport",
    f"Internationalization Counterrevolutionaries {CHATTER}",
    "buy 100 XBTUSD @ 60k sl 58k",
    "/alert btc above 100k Rocket2Moon",
])
def test_ordinary_messages_are_not_taken_for_keys(text: str) -> None:
    assert not looks_secret(text)


def test_a_commands_short_names_are_not_keys_but_its_long_secrets_are() -> None:
    assert looks_secret(f"/follow {KEY_ID}") and not looks_secret(f"/follow {KEY_ID}",
                                                                  command=True)
    assert looks_secret(f"/alert btc above 100k {SECRET}", command=True)


def test_words_strip_punctuation_but_keep_links_whole() -> None:
    assert words("(a)! b? https://x.io/p?q=1") == ["a", "b", "https", "x.io/p", "q", "1"]
    assert key_shaped(KEY_ID) and not key_shaped("eaf968c6-906b-4aaa-a32a-ab65d6e06ed7")


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=6, max_value=42), glue=st.sampled_from([" ", "\n", "  "]),
       before=st.sampled_from(["", "my secret: ", "is this right? "]),
       after=st.sampled_from(["", "?!", f". {CHATTER}"]))
def test_a_random_secret_is_caught_however_it_is_split(cut: int, glue: str, before: str,
                                                      after: str) -> None:
    secret = secrets.token_urlsafe(36)[:48]
    mixed = (any(c.islower() for c in secret) and any(c.isupper() for c in secret)
             and any(c.isdigit() for c in secret))
    if not mixed:  # ~1 in 3,000 random secrets: only caught in short messages
        return
    assert looks_secret(f"{before}{secret[:cut]}{glue}{secret[cut:]}{after} {CHATTER}")
