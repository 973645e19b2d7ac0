"""The project's own error types.

Everything that crosses the exchange boundary is converted into one of these
(`raise ... from e`), so callers decide by type: retry a `Temporary`, wait out a
`RateLimited`, explain a `Rejected` to the user in plain words.

    BotError
    ├── UserError                    shown in the chat as it is
    ├── ConfigError, VaultError
    └── ExchangeError                anything from the exchange boundary
        ├── Temporary                did not take effect, may be retried
        │   ├── Overloaded           503: never reached the engine
        │   └── ExchangeUnreachable  no connection, or no answer in time
        ├── OutcomeUnknown           sent, no answer: look it up (no-guessing)
        ├── NotPlaced                an order whose answer was lost is certainly not there
        ├── RateLimited              429
        ├── Rejected                 400 (InsufficientBalance, DuplicateClOrdID)
        ├── NotFound                 404
        ├── AuthError                401
        └── PermissionDenied         403
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error raised on purpose by the bot."""


class UserError(BotError):
    """A problem the user can fix; its message is shown in the chat as is."""


class ConfigError(BotError):
    """A missing or invalid setting; the message names the variable."""


class VaultError(BotError):
    """A secret could not be decrypted (wrong key, tampered or moved row)."""


class ExchangeError(BotError):
    """Any failure talking to the exchange. `message` keeps the exchange's words."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Temporary(ExchangeError):
    """The request did not reach the engine or may be retried safely (5xx, network)."""


class Overloaded(Temporary):
    """503: the system is overloaded; the request never reached the matching engine."""


class ExchangeUnreachable(Temporary):
    """Connection failure or timeout before a response arrived.

    Not to be confused with Telegram's `telegram.error.NetworkError` (which the handlers
    see too): this one is about BitMEX only."""


class OutcomeUnknown(ExchangeError):
    """The request was sent but no answer came: it may or may not have taken effect."""


class NotPlaced(ExchangeError):
    """An order whose answer was lost is not on the exchange after its api-expires (plus a
    margin) passed: BitMEX can no longer take it, so it certainly was not placed.
    `looked_up` False: it was never sent at all (its time to be sent had run out)."""

    def __init__(self, message: str, *, looked_up: bool = True) -> None:
        super().__init__(message)
        self.looked_up = looked_up


class RateLimited(ExchangeError):
    """429: wait `retry_after` seconds before the next request."""

    def __init__(self, message: str, *, retry_after: float, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class Rejected(ExchangeError):
    """400: the exchange refused the request (bad parameters, business rule)."""


class InsufficientBalance(Rejected):
    """400: not enough available balance for the order."""


class DuplicateClOrdID(Rejected):
    """400: an order with this clOrdID already exists on the account."""


class NotFound(ExchangeError):
    """404: no such order, instrument or route."""


class AuthError(ExchangeError):
    """401: invalid key, bad signature, expired request or disabled key."""


class PermissionDenied(ExchangeError):
    """403: the key lacks the permission this call needs."""
