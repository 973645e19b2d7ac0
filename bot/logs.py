"""One log format for the whole process, and a filter that keeps secrets out of it.

Redaction happens on the final formatted text (message, args and traceback alike),
because a secret can hide in any of them: a URL with the bot token in an aiohttp
error, a request dump with an `api-signature` header, an exception's repr.
"""

from __future__ import annotations

import logging
import re
import threading

REDACTED = "[REDACTED]"

# Telegram bot tokens: "<digits>:<35ish urlsafe chars>", also inside /bot<token>/ URLs.
_TOKEN_RE = re.compile(r"(?<![0-9])\d{5,}:[A-Za-z0-9_-]{30,}")
# BitMEX signatures are 64 hex digits; only redact them next to a signature-ish word
# so ordinary ids and hashes stay readable.
_SIG_RE = re.compile(r"(?i)(signature['\"]?\s*[:=,]?\s*['\"]?)([0-9a-f]{64})")

# BitMEX secrets are 48 urlsafe characters. A user may paste one the bot never learns
# (a wrong secret, the second step of /connect) and library debug logs print updates
# verbatim, so any long urlsafe run is masked. Ids people need (UUIDs, key ids) are shorter.
_LONG_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{40,}(?![A-Za-z0-9_-])")

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that it is masked wherever it shows up in a log line."""
    # Very short strings would mask ordinary words; real secrets are long.
    if value and len(value) >= 8:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """`text` with every known secret, bot token and signature replaced."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _TOKEN_RE.sub(REDACTED, text)
    text = _SIG_RE.sub(lambda m: m.group(1) + REDACTED, text)
    return _LONG_TOKEN_RE.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingFilter(logging.Filter):
    """For handlers whose formatter we do not own: rewrite the record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken %-format must not kill logging
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        return True


FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: int | str = logging.INFO) -> None:
    """Install the redacting handler on the root logger (idempotent)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_bitmex_bot", False):
            root.removeHandler(h)
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(FORMAT))
    handler.addFilter(RedactingFilter())
    handler._bitmex_bot = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL, which carries the bot token: keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
