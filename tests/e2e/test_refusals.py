"""Telegram's refusals are errors, not transport noise (issue 11, bot item 6).

PTB's BadRequest subclasses NetworkError: told apart first, a refusal is logged at ERROR
with a reference id and the user gets the short apology; the benign ones ("message is not
modified", a press answered too late) stay quiet.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from telegram.error import BadRequest

from bot.config import Settings
from bot.errors import ConfigError
from tests.e2e.harness import Harness

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

APOLOGY = re.compile(r"Sorry, something went wrong on our side \(ref ([0-9A-F]{6})\)")


async def test_a_bad_request_in_a_handler_gets_an_apology_and_an_error_line(
    h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alice, _ = await h.connected("Alice")

    async def refused(*a: Any, **k: Any) -> None:
        raise BadRequest("Can't parse entities: unsupported start tag \"x\" at byte offset 3")

    monkeypatch.setattr(h.svc.trading, "preview_order", refused)
    with caplog.at_level(logging.INFO):
        await alice.send("/buy 100 btc")
    found = APOLOGY.search(alice.last_text)
    assert found is not None, alice.transcript
    errors = [r for r in caplog.records if r.levelno == logging.ERROR
              and found.group(1) in r.getMessage()]
    assert errors, [r.getMessage() for r in caplog.records]
    assert not any("transport problem" in r.getMessage() for r in caplog.records)


async def test_not_modified_and_too_old_are_benign(
    h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alice, _ = await h.connected("Alice")
    before = len(alice.bot_texts)
    for words in ("Message is not modified: specified new message content is the same",
                  "Query is too old and response timeout expired or query id is invalid"):
        async def refused(*a: Any, _w: str = words, **k: Any) -> None:
            raise BadRequest(_w)

        monkeypatch.setattr(h.svc.trading, "preview_order", refused)
        with caplog.at_level(logging.INFO):
            await alice.send("/buy 100 btc")
    assert len(alice.bot_texts) == before  # nothing to apologise for
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


async def test_an_error_after_the_press_was_answered_still_reaches_the_user(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, _ = await h.connected("Alice")
    card = await alice.send("/buy 100 btc")
    assert card is not None

    async def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("lost the database")

    monkeypatch.setattr(h.svc.trading, "execute", boom)
    answer = await alice.press("✅ Confirm", card)
    assert answer is not None and "Sending" in (answer.text or "")  # answered first
    assert APOLOGY.search(alice.last_text), alice.transcript


def test_a_refused_webhook_url_at_start_up_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bot.vault import generate_key
    from handlers import app as app_module

    def refuse(app: Any, settings: Settings) -> None:
        raise BadRequest("Bad webhook: Failed to resolve host: Name or service not known")

    monkeypatch.setattr(app_module, "_serve", refuse)
    settings = Settings(_env_file=None, TELEGRAM_BOT_TOKEN="123456:abcdefghijklmnop",
                        MASTER_KEY=generate_key(), WEBHOOK_URL="https://bot.example.com/hook",
                        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    with pytest.raises(ConfigError) as info:
        app_module.run_forever(settings)
    text = str(info.value)
    assert "WEBHOOK_URL" in text and "Failed to resolve host" in text
    assert "internet connection" not in text
