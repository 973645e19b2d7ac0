"""Nothing secret reaches the log, even at DEBUG with every library talking."""

from __future__ import annotations

import io
import logging

from bot.logs import RedactingFilter, RedactingFormatter
from tests.e2e.harness import Harness


async def test_debug_log_of_a_full_session_holds_no_secret(h: Harness) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        alice = h.person("Alice")
        key, secret = h.exchange_account()
        await alice.send(f"/connect testnet {key} {secret}")
        await alice.send("/buy 100 btc")
        await alice.press("✅ Confirm")
        await alice.send("/balance")
        # a failure path too: a wrong secret logged by whoever handles it
        await alice.send(f"/connect mainnet {key} {secret[:-4]}abcd")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = stream.getvalue()
    assert len(text) > 1000  # the libraries did talk
    assert secret not in text
    assert secret[:-4] not in text
    assert h.token not in text
    assert h.token.split(":")[1] not in text
