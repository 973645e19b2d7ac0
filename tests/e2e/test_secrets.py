"""Secrets are caught wherever they are pasted, and kept out of the log whatever their shape."""

from __future__ import annotations

import io
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from bot.logs import RedactingFilter, RedactingFormatter, registered_count
from bot.sandbox.telegram.state import Chat
from tests.e2e.emulator_fixtures import png
from tests.e2e.harness import Harness, Person

CHATTER = "thanks a lot everyone, I am new to this and want to be sure it is fine"


def pasted_secret() -> str:
    """A BitMEX-shaped secret (48 urlsafe characters) that surely mixes cases and digits, as
    all but ~1 in 3,000 random ones do, so the test does not flake on the rare exception."""
    while True:
        s = secrets.token_urlsafe(36)[:48]
        if re.search("[a-z]", s) and re.search("[A-Z]", s) and re.search("[0-9]", s):
            return s


def live(h: Harness, chat: Chat, needle: str) -> list[str]:
    """Messages still visible in `chat` that contain `needle`."""
    return [m.content or "" for m in h.emu.chat_messages(chat, bot=h.bot_username)
            if not m.deleted and needle in (m.content or "")]


async def test_a_key_in_a_group_photo_caption_is_deleted(h: Harness) -> None:
    alice, bob = h.person("Alice"), h.person("Bob")
    group = h.group("Traders", [alice, bob], admins=[bob], bot_admin=True)
    secret = pasted_secret()
    h.emu.send_photo(alice.user, group, png(40, 20), caption=f"my settings, secret {secret}")
    await h.settle()
    assert live(h, group, secret) == []
    assert "never post API keys in a group" in (h.emu.last_bot_message(
        group, bot=h.bot_username).content or "")  # type: ignore[union-attr]


async def test_a_key_in_a_private_document_caption_is_deleted_and_explained(
        h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account()
    h.emu.send_document(alice.user, None, b"id,secret\n", "keys.csv",
                        caption=f"{key} {secret}", bot=h.bot_username)
    await h.settle()
    assert live(h, alice.chat, secret) == []
    assert "I deleted that message: it looks like an API key" in alice.last_text
    assert await h.svc.accounts.list(alice.id) == []


async def test_a_secret_next_to_punctuation_is_deleted(h: Harness) -> None:
    alice, bob = h.person("Alice"), h.person("Bob")
    group = h.group("Traders", [alice, bob], admins=[bob], bot_admin=True)
    secret = pasted_secret()
    await alice.send(f"is this my secret?{secret}?! {CHATTER}", chat=group)
    assert live(h, group, secret) == []
    await alice.send(f"or secret={secret}! {CHATTER}", chat=group)
    assert live(h, group, secret) == []


async def test_a_secret_split_across_two_words_or_lines_is_deleted(h: Harness) -> None:
    alice, bob = h.person("Alice"), h.person("Bob")
    group = h.group("Traders", [alice, bob], admins=[bob], bot_admin=True)
    secret = pasted_secret()
    for glue in (" ", "\n"):
        first, second = secret[:20], secret[20:]
        await alice.send(f"here: {first}{glue}{second} {CHATTER}", chat=group)
        assert live(h, group, second) == [], glue
    # ordinary long words side by side stay
    await alice.send(f"Internationalization Counterrevolutionaries {CHATTER}", chat=group)
    assert live(h, group, "Internationalization")


async def test_a_key_pasted_in_private_without_connect_is_deleted_and_explained(
        h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account()
    await alice.send(secret)
    assert live(h, alice.chat, secret) == []
    assert "I deleted that message: it looks like an API key" in alice.last_text
    assert "/connect testnet" in alice.last_text
    await alice.send(f"key {key}")
    assert live(h, alice.chat, key) == []
    # an order id, a feed name and plain words stay, and get the usual answer
    await alice.send("cancel eaf968c6-906b-4aaa-a32a-ab65d6e06ed7")
    assert live(h, alice.chat, "eaf968c6")
    assert "deleted" not in alice.last_text
    await alice.send("/follow CryptoSignals2024Pro")
    assert live(h, alice.chat, "CryptoSignals2024Pro")
    assert "deleted" not in alice.last_text
    assert await h.svc.accounts.list(alice.id) == []


async def test_the_two_step_connect_still_works(h: Harness) -> None:
    alice = h.person("Alice")
    key, secret = h.exchange_account()
    refused = h.emu.count("deleteMessage", status=400)
    await alice.send("/connect testnet")
    await alice.send(key)
    assert "Got the key id" in alice.last_text
    await alice.send(secret)
    assert "Connected" in alice.last_text
    assert live(h, alice.chat, secret) == [] and live(h, alice.chat, key) == []
    assert h.emu.count("deleteMessage", status=400) == refused  # each deleted once


@contextmanager
def debug_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def connect_in_steps(alice: Person, key: str, secret: str) -> None:
    await alice.send("/connect testnet")
    await alice.send(key)
    await alice.send(secret)


async def test_debug_log_masks_connect_arguments_and_flow_steps_of_any_shape(
        h: Harness) -> None:
    alice = h.person("Alice")
    remembered = registered_count()
    with debug_log() as stream:
        # a one-liner whose secret is short and has a space in it
        await alice.send("/connect testnet Kq7vXw2 zP9 rT4")
        # the flow, with steps no pattern would take for a key
        await connect_in_steps(alice, "Hw8 Jd3", "mY5 bR6 sQ1")
        # and a real key, pasted with a space inside
        key, secret = h.exchange_account()
        await connect_in_steps(alice, key, f"{secret[:24]} {secret[24:]}")
    text = stream.getvalue()
    assert "getUpdates" in text and "Processing update" in text  # PTB did log the updates
    for leaked in ("Kq7vXw2", "zP9 rT4", "Hw8 Jd3", "mY5 bR6", key, secret[:24], secret[24:]):
        assert leaked not in text, leaked
    # none of those words is shaped like a secret, so none is remembered (and masked forever)
    assert registered_count() == remembered
    # once the flow is over, ordinary chat shows again in the debug log
    with debug_log() as stream:
        await alice.send("price btc Wv3Nq8")
    assert "Wv3Nq8" in stream.getvalue()
