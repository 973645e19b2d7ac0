"""The BitMEX contract check: what the client sends and the simulator answers, against
the REST shape derived from BitMEX's swagger spec (tests/exchange/bitmex-api-shape.json).

A `ContractChecker` is installed as a simulator observer (`server.OBSERVERS`) for the
whole test session by tests/conftest.py, so every exchange and e2e test feeds it; the
session fails at its end if anything did not have the real shape. Violations are kept
deduplicated (route + field + problem) with one example, so a long run stays small.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from bot.sandbox.bitmex.server import dumps

SPEC_PATH = Path(__file__).parent / "exchange" / "bitmex-api-shape.json"
API = "/api/v1"

WS_TABLES = {
    "instrument": "Instrument", "trade": "Trade", "quote": "Quote",
    "liquidation": "Liquidation", "funding": "Funding", "order": "Order",
    "execution": "Execution", "position": "Position", "margin": "Margin",
    "wallet": "Wallet",
}

# Where the live API knowingly differs from its own swagger text, with the reason.
# (verb, path, parameter) -> accepted JSON types beyond the spec's.
PARAM_ALLOWANCES: dict[tuple[str, str, str], tuple[str, ...]] = {
    # "Order ID(s)": BitMEX and its official connectors send a JSON array to cancel many.
    ("delete", "/order", "orderID"): ("array",),
    ("delete", "/order", "clOrdID"): ("array",),
}

# Routes the simulator serves beyond the spec's list (which holds the calls the bot
# makes); the contract test asserts the bot's own code never calls them.
ROUTES_BEYOND_SPEC: dict[tuple[str, str], str] = {
    ("GET", "/user"): "simulator tests read the account id with it; the bot never does",
}

# Routes whose swagger model says one object where the live API answers an array.
ARRAY_ANSWERS: dict[tuple[str, str], str] = {
    ("GET", "/user/margin"): "currency=all answers one Margin row per currency",
}

# Fields the client reads that the spec does not list, and why each is kept. The
# contract test asserts this list is exactly what types.py reads beyond the spec.
CLIENT_READS_BEYOND_SPEC: dict[tuple[str, str], str] = {
    # BITMEX.md lists it among a fill's fields, the 2026 live export carries it and the
    # PnL report is built from it; the 2024 swagger model of Execution omits it.
    ("Execution", "realisedPnl"): "realised PnL of a fill (tradeHistory and the socket)",
    # Cancel answers carry a per-row `error` when that order could not be cancelled
    # (already filled, unknown id); BitMEX documents it in the DELETE /order text, not in
    # the Order model.
    ("Order", "error"): "per-row cancel failure in DELETE /order answers",
}


def load_spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def field_ok(spec_type: Any, value: Any) -> bool:
    """A JSON value against a spec field type ("integer/int64", "number/double",
    "string/date-time", "boolean", ["x-any"], "object", a definition name)."""
    t = json_type(value)
    if isinstance(spec_type, list):
        return t == "array"
    base = str(spec_type).split("/")[0]
    if base == "integer":
        return t == "integer"
    if base == "number":
        return t in ("integer", "number")
    if base in ("string", "boolean", "object"):
        return t == base
    return t == "object"  # a nested definition


def param_ok(spec_type: str, value: Any, *, from_query: bool) -> bool:
    """A request parameter: JSON body values by JSON type; query values are strings on
    the wire, so they must parse as the declared type."""
    if from_query:
        text = str(value)
        if spec_type == "integer":
            return text.lstrip("-").isdigit()
        if spec_type == "number":
            try:
                float(text)
            except ValueError:
                return False
            return True
        if spec_type == "boolean":
            return text in ("true", "false")
        return True
    t = json_type(value)
    if spec_type == "integer":
        return t == "integer"
    if spec_type == "number":
        return t in ("integer", "number")
    if spec_type == "boolean":
        return t == "boolean"
    if spec_type == "string":
        return t == "string"
    return True


@dataclass
class ContractChecker:
    spec: dict[str, Any] = field(default_factory=load_spec)
    problems: dict[str, str] = field(default_factory=dict)  # problem -> one example
    seen: Counter[str] = field(default_factory=Counter)  # "GET /order", "ws order", ...

    def _problem(self, key: str, example: Any) -> None:
        if key not in self.problems:
            self.problems[key] = repr(example)[:300]

    # ------------------------------------------------------------------ REST
    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "rest":
            self.check_rest(data)
        elif kind == "ws":
            self.check_ws(data)

    def check_rest(self, ex: dict[str, Any]) -> None:
        path = str(ex["path"])
        if not path.startswith(API + "/"):
            return
        route, verb = path[len(API):], str(ex["method"]).lower()
        self.seen[f"{verb.upper()} {route}"] += 1
        op = self.spec["paths"].get(route, {}).get(verb)
        if op is None:
            if (verb.upper(), route) in ROUTES_BEYOND_SPEC:
                return
            if ex["status"] != 404:  # a 404 for an unknown route is what BitMEX does too
                self._problem(f"{verb.upper()} {route}: route not in the spec", ex["status"])
            return
        self._check_params(verb, route, op, ex)
        status = int(ex["status"])
        raw = ex.get("response")
        if raw is None:
            return
        try:
            payload = json.loads(raw)
        except ValueError:
            self._problem(f"{verb.upper()} {route}: answer is not JSON", raw[:80])
            return
        if status >= 400:
            self._check_error(f"{verb.upper()} {route} {status}", payload)
            return
        shape = op["response"]
        if (verb.upper(), route) in ARRAY_ANSWERS and isinstance(payload, list):
            shape = [shape]
        self._check_answer(f"{verb.upper()} {route}", shape, payload, rest=True)

    def _check_params(self, verb: str, route: str, op: dict[str, Any],
                      ex: dict[str, Any]) -> None:
        declared = {p["name"]: p for p in op["parameters"]}
        given: list[tuple[str, Any, bool]] = [(k, v, True) for k, v in ex["query"]]
        body = ex.get("body") or b""
        if body:
            text = body.decode()
            if text.lstrip().startswith("{"):
                try:
                    parsed = json.loads(text)
                except ValueError:
                    self._problem(f"{verb.upper()} {route}: body is not JSON", text[:80])
                    return
                given += [(k, v, False) for k, v in parsed.items()]
            else:
                given += [(k, v, True) for k, v in parse_qsl(text, keep_blank_values=True)]
        where = f"{verb.upper()} {route}"
        for name, value, from_query in given:
            p = declared.get(name)
            if p is None:
                self._problem(f"{where}: parameter {name!r} not in the spec", value)
                continue
            allowed = PARAM_ALLOWANCES.get((verb, route, name), ())
            if json_type(value) in allowed:
                continue
            if not param_ok(str(p["type"]), value, from_query=from_query):
                self._problem(f"{where}: parameter {name!r} is {json_type(value)}, "
                              f"spec says {p['type']}", value)
        names = {n for n, _, _ in given}
        for name, p in declared.items():
            if p.get("required") and name not in names:
                self._problem(f"{where}: required parameter {name!r} missing", sorted(names))

    def _check_error(self, where: str, payload: Any) -> None:
        err = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(err, dict) or not isinstance(err.get("message"), str) \
                or not isinstance(err.get("name"), str):
            self._problem(f"{where}: error body is not {{error: {{message, name}}}}", payload)

    def _check_answer(self, where: str, shape: Any, payload: Any, *, rest: bool) -> None:
        if isinstance(shape, list):
            rows = payload if isinstance(payload, list) else None
            if rows is None:
                # BitMEX answers one object to a few array routes (e.g. a single margin).
                rows = [payload] if isinstance(payload, dict) else []
                if not isinstance(payload, dict):
                    self._problem(f"{where}: answer is {json_type(payload)}, not an array",
                                  payload)
            for row in rows:
                self.check_row(where, shape[0], row, nulls=rest)
        elif isinstance(shape, str) and shape in self.spec["definitions"]:
            self.check_row(where, shape, payload, nulls=rest)

    def check_row(self, where: str, definition: str, row: Any, *, nulls: bool) -> None:
        fields = self.spec["definitions"][definition]["fields"]
        if not isinstance(row, dict):
            self._problem(f"{where}: {definition} row is {json_type(row)}", row)
            return
        for name, value in row.items():
            if name not in fields:
                if (definition, name) in CLIENT_READS_BEYOND_SPEC:
                    continue
                self._problem(f"{where}: {definition}.{name} is not in the spec", value)
                continue
            if value is None:
                if not nulls:
                    self._problem(f"{where}: {definition}.{name} is null", row.get("symbol"))
                continue
            if not field_ok(fields[name], value):
                self._problem(f"{where}: {definition}.{name} is {json_type(value)}, spec "
                              f"says {fields[name]}", value)
        for name in self.spec["definitions"][definition].get("required", []):
            if name not in row and definition != "APIKey":
                self._problem(f"{where}: {definition} row lacks required {name!r}",
                              sorted(row))

    # ------------------------------------------------------------------ WebSocket
    def check_ws(self, message: dict[str, Any]) -> None:
        table = str(message.get("table"))
        definition = WS_TABLES.get(table)
        self.seen[f"ws {table}"] += 1
        if definition is None:
            self._problem(f"ws: table {table!r} has no definition", message.get("action"))
            return
        # The wire form, exactly: Decimals become JSON numbers as the server sends them.
        wire = json.loads(dumps(message.get("data") or []))
        for row in wire:
            # Nulls in WebSocket partials are the socket owner's to remove (issue #10 S9);
            # here the field names and types are checked.
            self.check_row(f"ws {table}", definition, row, nulls=True)

    def report(self) -> str:
        return "\n".join(f"- {k}\n    e.g. {v}" for k, v in sorted(self.problems.items()))


def spec_fields(spec: dict[str, Any], definition: str) -> set[str]:
    return set(spec["definitions"][definition]["fields"])


def routes(spec: dict[str, Any]) -> Iterable[tuple[str, str]]:
    for path, ops in spec["paths"].items():
        for verb in ops:
            yield verb.upper(), path
