"""Telegram's HTML parse mode and automatic entities, as the Bot API server applies them.

The parser follows tdlib's rules closely enough that markup the real server rejects is
rejected here too, with the same wording: an unescaped `<` is an "Unsupported start tag",
so a bot that forgets to escape user text fails in tests, not in production.
Offsets and lengths are in UTF-16 code units, like the real server's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Entity = dict[str, Any]

_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
SUPPORTED_TAGS = frozenset({*_SIMPLE_TAGS, "a", "span", "blockquote", "tg-emoji"})

# Only these four names; anything else (&apos; &nbsp; ...) stays literal text, as in tdlib.
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_SPACES = " \t\r\n"


class EntityParseError(ValueError):
    """Markup the server cannot parse; str() is the text after "can't parse entities: "."""


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _OpenTag:
    name: str
    offset: int
    attrs: dict[str, str] = field(default_factory=dict)


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


def _decode_entity(src: str, i: int) -> tuple[str | None, int]:
    """Decode `&...;` at i; an unknown or unterminated one stays literal, as in tdlib."""
    end = src.find(";", i + 1, i + 12)
    if end < 0:
        return None, i + 1
    body = src[i + 1 : end]
    if body.startswith("#"):
        try:
            code = int(body[2:], 16) if body[1:2] in ("x", "X") else int(body[1:])
            return chr(code), end + 1
        except (ValueError, OverflowError):
            return None, i + 1
    value = _NAMED_ENTITIES.get(body)
    if value is None:
        return None, i + 1
    return value, end + 1


def _parse_attributes(src: str, i: int, tag: str, begin: int) -> tuple[dict[str, str], int]:
    """Parse attributes from i up to the closing `>`; returns them and the index after `>`."""
    attrs: dict[str, str] = {}
    n = len(src)
    unclosed = EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(src, begin)}")
    while True:
        while i < n and src[i] in _SPACES:
            i += 1
        if i >= n:
            raise unclosed
        if src[i] == ">":
            return attrs, i + 1
        start = i
        while i < n and (src[i].isascii() and (src[i].isalnum() or src[i] in "-_")):
            i += 1
        name = src[start:i].lower()
        if not name:
            raise EntityParseError(
                f'Empty attribute name in the tag "{tag}" at byte offset {_byte_offset(src, start)}'
            )
        while i < n and src[i] in _SPACES:
            i += 1
        if i >= n:
            raise unclosed
        if src[i] != "=":
            if name == "expandable":  # blockquote's only boolean attribute
                attrs[name] = ""
                continue
            raise EntityParseError(
                f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                f"at byte offset {_byte_offset(src, start)}"
            )
        i += 1
        while i < n and src[i] in _SPACES:
            i += 1
        if i >= n:
            raise unclosed
        if src[i] in "\"'":
            quote = src[i]
            close = src.find(quote, i + 1)
            if close < 0:
                raise unclosed
            raw = src[i + 1 : close]
            i = close + 1
        else:
            start_value = i
            while i < n and src[i] not in _SPACES and src[i] != ">":
                i += 1
            raw = src[start_value:i]
        attrs[name] = _decode_all(raw)


def _decode_all(raw: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(raw):
        if raw[i] == "&":
            decoded, j = _decode_entity(raw, i)
            out.append("&" if decoded is None else decoded)
            i = j
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def _close(tag: _OpenTag, end: int, parent: _OpenTag | None, entities: list[Entity]) -> None:
    length = end - tag.offset
    if tag.name == "code" and parent is not None and parent.name == "pre":
        # <pre><code class="language-x"> is how HTML gives a pre block its language.
        language = tag.attrs.get("class", "")
        if language.startswith("language-") and parent.offset == tag.offset:
            parent.attrs["_language"] = language.removeprefix("language-")
            return
    if length <= 0:
        return
    entity: Entity = {"offset": tag.offset, "length": length}
    if tag.name in _SIMPLE_TAGS:
        entity["type"] = _SIMPLE_TAGS[tag.name]
        if tag.name == "pre" and tag.attrs.get("_language"):
            entity["language"] = tag.attrs["_language"]
    elif tag.name == "span":
        entity["type"] = "spoiler"
    elif tag.name == "blockquote":
        entity["type"] = "expandable_blockquote" if "expandable" in tag.attrs else "blockquote"
    elif tag.name == "tg-emoji":
        entity["type"] = "custom_emoji"
        entity["custom_emoji_id"] = tag.attrs.get("emoji-id", "")
    elif tag.name == "a":
        href = tag.attrs.get("href", "")
        match = re.fullmatch(r"tg://user\?id=(\d+)", href)
        if match:
            entity["type"] = "text_mention"
            entity["user"] = {"id": int(match.group(1)), "is_bot": False, "first_name": ""}
        elif re.match(r"(https?|tg)://\S+$|[\w.-]+\.[a-z]{2,}(/\S*)?$", href, re.IGNORECASE):
            entity["type"] = "text_link"
            entity["url"] = href
        else:
            return  # tdlib silently drops links it cannot use
    entities.append(entity)


def parse_html(src: str) -> tuple[str, list[Entity]]:
    """Parse Bot API HTML into (plain text, entities), or raise EntityParseError."""
    pieces: list[str] = []
    pos16 = 0
    stack: list[_OpenTag] = []
    entities: list[Entity] = []
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch == "&":
            decoded, i = _decode_entity(src, i)
            text = "&" if decoded is None else decoded
            pieces.append(text)
            pos16 += utf16_len(text)
            continue
        if ch != "<":
            run_end = i
            while run_end < n and src[run_end] not in "&<":
                run_end += 1
            text = src[i:run_end]
            pieces.append(text)
            pos16 += utf16_len(text)
            i = run_end
            continue
        begin = i
        i += 1
        if i < n and src[i] == "/":
            i += 1
            start = i
            while i < n and src[i] not in _SPACES and src[i] != ">":
                i += 1
            name = src[start:i].lower()
            while i < n and src[i] in _SPACES:
                i += 1
            if i >= n or src[i] != ">":
                raise EntityParseError(
                    f"Unclosed end tag at byte offset {_byte_offset(src, begin)}"
                )
            i += 1
            if not stack:
                raise EntityParseError(
                    f"Unexpected end tag at byte offset {_byte_offset(src, begin)}"
                )
            if stack[-1].name != name:
                raise EntityParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(src, begin)}, "
                    f'expected "</{stack[-1].name}>", found "</{name}>"'
                )
            tag = stack.pop()
            _close(tag, pos16, stack[-1] if stack else None, entities)
            continue
        start = i
        while i < n and src[i].isascii() and (src[i].isalnum() or src[i] == "-"):
            i += 1
        name = src[start:i].lower()
        if name not in SUPPORTED_TAGS:
            raise EntityParseError(
                f'Unsupported start tag "{name}" at byte offset {_byte_offset(src, begin)}'
            )
        attrs, i = _parse_attributes(src, i, name, begin)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise EntityParseError('Tag "span" must have class "tg-spoiler"')
        stack.append(_OpenTag(name, pos16, attrs))
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(pieces), entities


def strip_text(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Trim surrounding whitespace the way the server does, keeping entities aligned."""
    stripped = text.strip()
    lead = utf16_len(text) - utf16_len(text.lstrip())
    size = utf16_len(stripped)
    kept: list[Entity] = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, size)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


_AUTO_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("url", re.compile(r"\bhttps?://[^\s<>\"]+", re.IGNORECASE)),
    ("bot_command", re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")),
    ("mention", re.compile(r"(?<!\w)@[A-Za-z][A-Za-z0-9_]{3,31}\b")),
    ("hashtag", re.compile(r"(?<![\w#])#\w*[^\W\d_]\w*")),
    ("cashtag", re.compile(r"(?<![\w$])\$[A-Z]{3,8}\b")),
]


def auto_entities(text: str) -> list[Entity]:
    """Entities the server detects in plain text (commands, links, mentions, tags)."""
    found: list[Entity] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _AUTO_PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            taken.append((start, end))
            found.append(
                {
                    "type": kind,
                    "offset": utf16_len(text[:start]),
                    "length": utf16_len(match.group(0)),
                }
            )
    found.sort(key=lambda e: e["offset"])
    return found
