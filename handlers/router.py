"""Every text message goes through one parser; the intent picks the handler.

Commands work with or without the slash in private chats (`buy 100 btc`), so a
single text handler is simpler and stricter than a CommandHandler per word: the
same grammar, the same errors, in one place. Secret hygiene runs first, before
parsing can fail (in the access gate), so a malformed /connect is deleted too.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from telegram import Update

from bot import parse as P
from bot.accounts import looks_like_key_id, looks_like_secret
from bot.errors import UserError
from handlers.common import Context, is_private, reply

log = logging.getLogger(__name__)

IntentHandler = Callable[[Update, Context, Any], Awaitable[None]]
# Text that is no command (parse gave None) is offered to these in turn; one returns True
# when it took the message (handlers/feeds.py: free-text signals in feed groups). A hook
# (the /connect conversation) sees private text first and returns True when it was its own.
FallbackHandler = Callable[[Update, Context], Awaitable[bool]]


class UnroutedIntent(Exception):
    """An intent of the command table has no handler (register refuses to start)."""


class Router:
    """The one text handler: parse, then the intent's handler from the areas' ROUTES."""

    def __init__(self, routes: Mapping[type[P.Intent], IntentHandler], *,
                 first: FallbackHandler, fallbacks: Sequence[FallbackHandler]) -> None:
        missing = [t.__name__ for c in P.COMMANDS for t in c.intents if t not in routes]
        if missing:
            raise UnroutedIntent(f"no handler for {', '.join(sorted(set(missing)))}")
        self._routes = dict(routes)
        self._first = first
        self._fallbacks = tuple(fallbacks)

    async def on_text(self, update: Update, context: Context) -> None:
        """Parse the message and hand the intent to its handler; explain any mistake."""
        msg = update.effective_message
        if msg is None or not msg.text:
            return
        text = msg.text
        private = is_private(update)
        if private and await self._first(update, context):
            return
        svc = context.services
        user = update.effective_user
        try:
            book = await svc.symbol_book(user.id if user else None)
            intent = P.parse(text, bot_username=context.bot.username, private=private,
                             symbols=book)
            if intent is None:
                for fallback in self._fallbacks:
                    if await fallback(update, context):
                        return
                if private:  # a newcomer's "hi" deserves an answer, not silence
                    await reply(update, _small_talk_hint(text))
                return
            await self._routes[type(intent)](update, context, intent)
        except UserError as e:
            await reply(update, html_safe(str(e)))


def _small_talk_hint(text: str) -> str:
    """What to say to private text that is no command."""
    if any((looks_like_key_id(w) or looks_like_secret(w)) and any(c.isdigit() for c in w)
           for w in text.split()):
        return ("That looks like an API key. To connect it, send /connect testnet "
                "(or mainnet) and I'll ask for the key id and secret.")
    return ("I understand commands, with or without the slash: <code>price btc</code>, "
            "<code>buy 100 btc</code>, <code>positions</code>. /help lists them all.")


def html_safe(text: str) -> str:
    """UserErrors may carry a little HTML (<b>, <i>, <code>) and entities; anything else is
    escaped.

    The user's words in an error were escaped when it was built (`shown`), so an entity is
    kept as it is, never unescaped: `&lt;b&gt;` they typed stays text, and a message already
    escaped does not show up as `&amp;lt;`.
    """
    parts: list[str] = []
    last = 0
    for m in _KEPT_RE.finditer(text):
        parts += [html.escape(text[last:m.start()], quote=False), m.group(0)]
        last = m.end()
    escaped = "".join(parts) + html.escape(text[last:], quote=False)
    # Unbalanced tags (Telegram refuses the whole message) are shown as text.
    return escaped if _balanced(escaped) else _TAG_RE.sub(
        lambda m: html.escape(m.group(0), quote=False), escaped)


# Telegram's HTML knows only these named entities.
_KEPT_RE = re.compile(r"</?(?:b|i|code)>|&(?:lt|gt|amp|quot);")
_TAG_RE = re.compile(r"<(/?)(b|i|code)>")


def _balanced(text: str) -> bool:
    stack: list[str] = []
    for m in _TAG_RE.finditer(text):
        if not m.group(1):
            if m.group(2) in stack:
                return False  # Telegram refuses nested same tags too
            stack.append(m.group(2))
        elif not stack or stack.pop() != m.group(2):
            return False
    return not stack
