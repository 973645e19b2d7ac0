"""What every answer of the simulator shares with BitMEX's: JSON numbers, error bodies, signing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.matching import iso

OVERLOADED = "The system is currently overloaded. Please try again later."
MAX_COUNT = 1000
DEFAULT_COUNT = 100
# Test hook (the contract test): called with ("rest", exchange) for every REST request
# and its answer, and ("ws", message) for every WebSocket data message, of every
# simulator in the process. Empty outside tests, so it costs one truth test.
OBSERVERS: list[Callable[[str, dict[str, Any]], None]] = []


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        # JSON numbers, like BitMEX: integral values without a fraction.
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    if isinstance(obj, datetime):
        return iso(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_default, separators=(",", ":"))


def sign(secret: str, verb: str, path: str, expires: int | str, body: str | bytes = "") -> str:
    """hex(HMAC_SHA256(secret, VERB + PATH + EXPIRES + BODY)), as BitMEX computes it."""
    data = body.decode() if isinstance(body, bytes) else body
    message = f"{verb}{path}{expires}{data}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        name: str = "HTTPError",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.name = name
        self.headers = headers or {}


def error_response(
    status: int, message: str, name: str = "HTTPError", headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=dumps({"error": {"message": message, "name": name}}),
        content_type="application/json",
        headers=headers,
    )
