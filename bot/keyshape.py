"""What a BitMEX API key id or secret looks like, wherever it is pasted.

One place for the shape checks, so the chat guard (which deletes messages) and the log
redactor (which masks and remembers strings) agree on what a secret is. Pure: no I/O.

BitMEX key ids are 24 urlsafe characters and secrets 48 (urlsafe base64), both random, so
they mix upper case, lower case and digits. Words people type rarely do: a transaction hash
is lower-case hex, a link has slashes, a long word has no digits.
"""

from __future__ import annotations

import itertools
import re
import unicodedata

_URLSAFE = "A-Za-z0-9_-"
_URLSAFE_RE = re.compile(f"[{_URLSAFE}]+")
# Words split at blanks and at the marks that glue a label to a value ("secret=X", "key:X",
# "A,B", "is it?X"), not at slashes or dots, so a link's path stays one word.
_SPLIT_RE = re.compile(r"[\s,;:=|?!]+")
# A word pasted in prose carries punctuation around it: "secret:", "(KEY)", "SECRET?!".
_EDGES_RE = re.compile(f"^[^{_URLSAFE}]+|[^{_URLSAFE}]+$")
# Only a secret looks like this at any message length: 40–64 characters of all three kinds.
_SECRET_WORD_RE = re.compile(r"(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])[A-Za-z0-9_-]{40,64}")
# A message this short that holds a key-shaped word is a paste, not a sentence.
_SHORT_MESSAGE_WORDS = 4
# Halves of a split secret: a phone wraps or a user breaks the paste; shorter bits are words.
_MIN_PIECE = 6


def _urlsafe(text: str) -> bool:
    return _URLSAFE_RE.fullmatch(text) is not None


def looks_like_key_id(text: str) -> bool:
    """Loose: the length and alphabet a BitMEX key id may have (used to validate input)."""
    return 16 <= len(text) <= 64 and _urlsafe(text)


def looks_like_secret(text: str) -> bool:
    """Loose: the length and alphabet a BitMEX secret may have. Only strings passing this are
    remembered by the log redactor, so no ordinary word typed after /connect is masked."""
    return 32 <= len(text) <= 128 and _urlsafe(text)


def key_shaped(word: str) -> bool:
    """A word that is probably a key id or secret, not a long word, a name or an order id
    (a UUID is lower-case hex): key-id length and alphabet, both cases, and a digit or
    plenty of capitals (a random 24-character id without digits has ~10)."""
    if not looks_like_key_id(word):
        return False
    upper = sum(c.isupper() for c in word)
    if not upper or not any(c.islower() for c in word):
        return False
    return upper >= 6 or any(c.isdigit() for c in word)


def _visible(text: str) -> str:
    # Invisible format characters (zero-width space and joiner, soft hyphen, word joiner,
    # BOM) show nothing, so a secret with them inside reads as the whole secret: drop them.
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def words(text: str) -> list[str]:
    """The message's words with the punctuation around each stripped (`KEY?` -> `KEY`)."""
    out = []
    for raw in _SPLIT_RE.split(_visible(text)):
        word = _EDGES_RE.sub("", raw)
        if word:
            out.append(word)
    return out


def looks_secret(text: str, *, command: bool = False) -> bool:
    """True when a message probably holds an API key or secret.

    A short message with a key-shaped word (unless it is a `command`: its words are names
    the user chose, like a feed called CryptoSignals2024Pro); or a message of any length with
    a word (or two neighbouring words, or the end of one line and the start of the next,
    joined) that only a secret looks like.
    """
    ws = words(text)
    if not command and len(ws) <= _SHORT_MESSAGE_WORDS and any(key_shaped(w) for w in ws):
        return True
    if any(_SECRET_WORD_RE.fullmatch(w) for w in ws):
        return True
    return any(
        len(a) >= _MIN_PIECE and len(b) >= _MIN_PIECE and _SECRET_WORD_RE.fullmatch(a + b)
        for a, b in itertools.pairwise(ws)
    )
