"""PTB's typed context for every handler and job: `ctx.services`, `ctx.user_id`,
`ctx.chat_id`.

Handlers are written against this instead of reaching into `bot_data` by string keys:
mypy then knows what `ctx.services.trading` is, and a handler that runs for an update
without a user (a channel post, a service message) fails in one place with a clear
message instead of an assert in each handler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telegram.ext import Application, CallbackContext, ContextTypes, ExtBot

from bot.ratelimit import UserRateLimiter

if TYPE_CHECKING:
    # The container is handed to handlers here and only here (ARCHITECTURE.md, the
    # composition roots); everything else in handlers/ reaches it as `ctx.services`.
    from bot.inbox import UpdateInbox
    from bot.leader import UpdateLog
    from bot.services import Services


@dataclass
class BotData:
    """What the application keeps for all chats (PTB's `bot_data`), typed.

    PTB makes it with no arguments when the application is built, before the services
    exist, so `services` is set by the composition root (handlers/app.py `attach`)."""

    services: Services | None = None
    # Read commands (/help, /feedstats) asked in groups: (chat, user, what) ->
    # (message id, first asked, text shown), so repeats are edited in place.
    group_reads: dict[tuple[int, int, str], tuple[int, float, str]] = field(
        default_factory=dict)
    # A member's budget for read commands in groups (each answer costs the whole group).
    group_read_limit: UserRateLimiter | None = None
    # When each user's row was last refreshed (access gate), to keep writes off the hot path.
    seen_users: dict[int, float] = field(default_factory=dict)
    # Updates already taken (bot/leader.py): set by `python -m bot run`, where Telegram may
    # deliver an update again after a failover; None in the sandbox and the tests' harness.
    update_log: UpdateLog | None = None
    # Updates fetched and not yet claimed (bot/inbox.py): set with `update_log`; the
    # getUpdates connection (handlers/request.py `PollRequest`) and the webhook store there.
    update_inbox: UpdateInbox | None = None


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], BotData]):
    """The context every handler and job receives (see CONTEXT_TYPES)."""

    __slots__ = ()

    @property
    def services(self) -> Services:
        svc = self.bot_data.services
        if svc is None:  # only before attach(): no update is processed then
            raise RuntimeError("the services are not attached to the application yet")
        return svc

    @property
    def user_id(self) -> int:
        """The Telegram user the update came from (PTB reads it from `effective_user`)."""
        if self._user_id is None:
            raise RuntimeError("this update has no user")
        return self._user_id

    @property
    def chat_id(self) -> int:
        """The chat the update came from (PTB reads it from `effective_chat`)."""
        if self._chat_id is None:
            raise RuntimeError("this update has no chat")
        return self._chat_id


CONTEXT_TYPES: ContextTypes[BotContext, dict[Any, Any], dict[Any, Any], BotData] = ContextTypes(
    context=BotContext, bot_data=BotData)

# The application type every composition root and job helper names.
App = Application[ExtBot[None], BotContext, dict[Any, Any], dict[Any, Any], BotData, Any]
