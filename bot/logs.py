"""One log format for the whole process, and a filter that keeps secrets out of it.

Redaction happens on the final formatted text (message, args and traceback alike),
because a secret can hide in any of them: a URL with the bot token in an aiohttp
error, a request dump with an `api-signature` header, an exception's repr.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter, OrderedDict

from bot.keyshape import looks_like_secret, looks_secret

REDACTED = "[REDACTED]"

# Telegram bot tokens: "<digits>:<35ish urlsafe chars>", also inside /bot<token>/ URLs.
_TOKEN_RE = re.compile(r"(?<![0-9])\d{5,}:[A-Za-z0-9_-]{30,}")
# BitMEX signatures are 64 hex digits; only redact them next to a signature-ish word
# so ordinary ids and hashes stay readable.
_SIG_RE = re.compile(r"(?i)(signature['\"]?\s*[:=,]?\s*['\"]?)([0-9a-f]{64})")

# BitMEX secrets are 48 urlsafe characters. A user may paste one the bot never learns
# (a wrong secret, the second step of /connect) and library debug logs print updates
# verbatim, so any long urlsafe run is masked. Ids people need (UUIDs, key ids) are shorter.
_LONG = 40
# One pass finds every run that could be a remembered secret (they all pass the shape check,
# so all are urlsafe runs of 32+): each run is then looked up in a set. A line costs the same
# with 50,000 remembered secrets as with 5, which an alternation of them all would not.
_RUN_RE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])")

# Whatever follows /connect on a line is a key, a secret or a typo of one: mask it all,
# whatever its length or spacing. Also the slash-less form a private chat accepts, when it
# opens a quoted string (a logged update's text).
_CONNECT_RE = re.compile(
    r"""(?i)((?:/|(?<=['"]))connect(?:@\w+)?(?!\w)(?>(?:[ \t]+(?:testnet|mainnet|paper)\b)?))"""
    r"""(?=[ \t]*\S)[^\n]*"""
)
# A message's words in a logged update: PTB's object repr (text='…'), a dict repr
# ('text': '…') or JSON ("text": "…"), with escaped quotes inside.
_TEXT_FIELD_RE = re.compile(
    r"""(\b(?:text|caption)=|['"](?:text|caption)['"]:\s*)(['"])((?:\\.|(?!\2)[^\\])*)\2"""
)
# How repr and JSON show the invisible format characters the chat guard ignores.
_INVISIBLE_ESCAPE_RE = re.compile(
    r"(?i)\\u(?:00ad|061c|180e|200[b-f]|202[a-e]|206[0-9]|feff)|\\xad")
_ID_RE = re.compile(r"""\bid=(-?\d+)|['"]id['"]:\s*(-?\d+)""")

MAX_SECRETS = 100_000  # ~10 MB at most; the oldest is forgotten first

_lock = threading.Lock()
_secrets: OrderedDict[str, None] = OrderedDict()
_lengths: Counter[int] = Counter()  # how many remembered secrets have each length
_expecting: dict[int, float] = {}  # chat id -> monotonic deadline of its /connect flow


def register_secret(value: str | None) -> None:
    """Remember a secret so that it is masked wherever it shows up in a log line.

    Only strings shaped like a secret are kept: a word a user typed after /connect ("hello")
    would otherwise be masked in every later line.
    """
    if not value or not looks_like_secret(value):
        return
    with _lock:
        if value in _secrets:
            _secrets.move_to_end(value)
            return
        _secrets[value] = None
        _lengths[len(value)] += 1
        while len(_secrets) > MAX_SECRETS:
            old, _ = _secrets.popitem(last=False)
            _lengths[len(old)] -= 1
            if not _lengths[len(old)]:
                del _lengths[len(old)]


def registered_count() -> int:
    return len(_secrets)


def expect_secret(chat_id: int, seconds: float) -> None:
    """The next messages in this chat are steps of /connect: mask their text in any log line
    (PTB logs an update at DEBUG before any handler sees it), whatever their shape."""
    with _lock:
        _expecting[chat_id] = time.monotonic() + seconds


def stop_expecting(chat_id: int) -> None:
    with _lock:
        _expecting.pop(chat_id, None)


def _known(run: str) -> bool:
    if run in _secrets:
        return True
    # A remembered secret glued to other urlsafe characters: try each remembered length at
    # each offset (a handful of lookups, because runs this short are under _LONG).
    n = len(run)
    return any(run[i:i + size] in _secrets
               for size in _lengths if size < n for i in range(n - size + 1))


def _mask_run(m: re.Match[str]) -> str:
    run = m.group(0)
    return REDACTED if len(run) >= _LONG or _known(run) else run


def _unescaped(field: str) -> str:
    # A repr or JSON dump shows a line break as the two characters \n: read it as a break,
    # so halves of a secret on two lines are seen as neighbouring words, as the chat sees them.
    # An invisible character inside a secret is shown escaped (\u200b): it hides nothing.
    field = _INVISIBLE_ESCAPE_RE.sub("", field)
    return field.replace("\\n", "\n").replace("\\r", "\n").replace("\\t", " ")


def _mask_texts(text: str) -> str:
    """Mask the words of messages from chats in a /connect flow, and of any message the chat
    guard would delete (a secret split in two halves, each too short for the run mask)."""
    if "text" not in text and "caption" not in text:
        return text
    now = time.monotonic()
    with _lock:
        for chat, deadline in list(_expecting.items()):
            if deadline < now:
                del _expecting[chat]
        chats = set(_expecting)
    out: list[str] = []
    last = 0
    for m in _TEXT_FIELD_RE.finditer(text):
        # The ids between the previous message's words and these: its sender and chat.
        ids = {int(a or b) for a, b in _ID_RE.findall(text, last, m.start())} if chats else set()
        out.append(text[last:m.start()])
        out.append(m.group(1) + m.group(2) + REDACTED + m.group(2)
                   if ids & chats or looks_secret(_unescaped(m.group(3))) else m.group(0))
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def redact(text: str) -> str:
    """`text` with every known secret, bot token, signature and /connect argument replaced."""
    text = _CONNECT_RE.sub(lambda m: m.group(1) + " " + REDACTED, text)
    text = _mask_texts(text)
    text = _TOKEN_RE.sub(REDACTED, text)
    text = _SIG_RE.sub(lambda m: m.group(1) + REDACTED, text)
    with _lock:
        return _RUN_RE.sub(_mask_run, text)


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
