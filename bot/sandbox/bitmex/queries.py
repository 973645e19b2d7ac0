"""BitMEX's list-call semantics (GET /order, /execution, /trade, ...): symbol, filter, columns,
count, start, reverse, startTime and endTime, checked as strictly as the live API checks them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot.matching import OPEN_STATUSES, Row, iso
from bot.sandbox.bitmex.wire import DEFAULT_COUNT, MAX_COUNT, ApiError


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "1", "yes")


def parse_time(value: Any) -> datetime:
    text = str(value).strip()
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ApiError(400, "startTime is invalid", "ValidationError") from e
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts


def json_param(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as e:
            raise ApiError(400, f"{what} is not valid", "ValidationError") from e
    return value


def list_query(rows: list[Row], params: dict[str, Any], *, newest_default: bool = False,
               keep: Iterable[str] = ()) -> list[Row]:
    """BitMEX list-call semantics: symbol, filter, columns, count, start, reverse, times."""
    symbol = params.get("symbol")
    if symbol:
        rows = [r for r in rows if r.get("symbol") == symbol]
    if params.get("filter"):
        flt = json_param(params["filter"], "filter values")
        if not isinstance(flt, dict):
            raise ApiError(400, "filter values are not valid", "ValidationError")
        for key, want in flt.items():
            if key == "open":
                if as_bool(want):
                    rows = [r for r in rows if r.get("ordStatus") in OPEN_STATUSES]
                continue
            wants = want if isinstance(want, list) else [want]
            rows = [r for r in rows if any(same_value(r.get(key), w) for w in wants)]
    for name, keep_if in (("startTime", lambda a, b: a >= b), ("endTime", lambda a, b: a <= b)):
        if params.get(name):
            bound = iso(parse_time(params[name]))
            rows = [r for r in rows if keep_if(str(r.get("timestamp", "")), bound)]
    try:
        count = int(params.get("count") or DEFAULT_COUNT)
        start = int(params.get("start") or 0)
    except ValueError as e:
        raise ApiError(400, "count is invalid", "ValidationError") from e
    if count > MAX_COUNT or count < 0:
        raise ApiError(400, "count is invalid", "ValidationError")
    if start < 0:
        raise ApiError(400, "start is invalid", "ValidationError")
    reverse = as_bool(params["reverse"]) if "reverse" in params else newest_default
    if reverse:
        rows = list(reversed(rows))
    rows = rows[start : start + count]
    if params.get("columns"):
        cols = params["columns"]
        if isinstance(cols, str):
            cols = json.loads(cols) if cols.startswith("[") else cols.split(",")
        wanted = set(cols) | set(keep) | {"timestamp"}
        rows = [{k: v for k, v in r.items() if k in wanted} for r in rows]
    return rows


def same_value(have: Any, want: Any) -> bool:
    if have == want:
        return True
    if isinstance(have, Decimal | int) and not isinstance(have, bool):
        try:
            return Decimal(str(want)) == Decimal(have)
        except ArithmeticError:
            return False
    return False
