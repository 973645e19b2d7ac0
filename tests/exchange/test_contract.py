"""The contract test: the client and the simulator against BitMEX's published REST shape.

The whole session is watched by the `bitmex_contract` fixture (tests/conftest.py): every
request any test sends to a simulator and every REST or WebSocket row it answers is
checked, and the session fails at its end on a mismatch. This module drives every call
of the client once against its own simulator with its own checker (so a green run here
means each call was seen and fit), proves the checker can fail, and keeps the list of
fields the client reads beyond the spec honest.
"""

from __future__ import annotations

import ast
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import aiohttp
import pytest_asyncio

from bot.exchange.client import BitmexClient, RetryPolicy
from bot.exchange.stream import PrivateStream
from bot.sandbox.bitmex import BitmexSimulator, server
from tests.contract import (
    CLIENT_READS_BEYOND_SPEC,
    ROUTES_BEYOND_SPEC,
    ContractChecker,
    load_spec,
)

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec()

# bot.exchange.types class -> the spec definition its from_row reads.
READERS = {
    "Instrument": "Instrument", "Order": "Order", "Execution": "Execution",
    "Position": "Position", "Margin": "Margin", "ApiKeyInfo": "APIKey",
    "Candle": "TradeBin", "Liquidation": "Liquidation",
}


@pytest_asyncio.fixture
async def watched() -> AsyncIterator[tuple[BitmexSimulator, ContractChecker]]:
    checker = ContractChecker()
    sim = BitmexSimulator()
    await sim.start()
    server.OBSERVERS.append(checker)
    try:
        yield sim, checker
    finally:
        server.OBSERVERS.remove(checker)
        await sim.stop()


async def test_every_client_call_has_the_real_shape(
    watched: tuple[BitmexSimulator, ContractChecker]
) -> None:
    sim, checker = watched
    key, secret = sim.add_account(bmex=5)
    fast = RetryPolicy(base_delay=0.01, max_delay=0.05, overload_delay=0.01)
    async with aiohttp.ClientSession() as http:
        client = BitmexClient(sim.url, key, secret, session=http, retry=fast)
        public = BitmexClient(sim.url, None, None, session=http, retry=fast)
        stream = PrivateStream(sim.ws_url, key, secret, session=http)
        await stream.start()
        await stream.wait_ready(5)
        await public.instruments()
        await public.ticker("XBTUSD")
        await public.bucketed("XBTUSD", "1h", count=5)
        await client.api_key_permissions()
        BitmexClient._assets_loaded.pop(client.origin, None)
        await client.load_assets()
        await client.margins()
        await client.set_leverage("XBTUSDT", 10)
        resting = await client.place_order("XBTUSD", "Buy", 100, "Limit", D(40000),
                                           time_in_force="GoodTillCancel")
        await client.amend_order(resting.order_id, price=D(40500))
        await client.open_orders("XBTUSD")
        await client.order_by_cl_ord_id(resting.cl_ord_id)
        await client.cancel_orders([resting.order_id])
        await client.cancel_orders(cl_ord_ids=["never-placed"])
        await client.place_order("XBTUSDT", "Buy", 1000, "Market")
        await client.place_order("XBTUSDT", "Sell", None, "Market", exec_inst=("Close",))
        await client.place_order("XBTUSD", "Sell", 100, "Stop", stop_px=D(30000),
                                 exec_inst=("ReduceOnly", "LastPrice"))
        await client.cancel_all("XBTUSD")
        await client.cancel_all_after(60000)
        await client.cancel_all_after(0)
        await client.positions()
        await client.executions(start_time=datetime.now(UTC) - timedelta(hours=1))
        await client.executions("XBTUSDT", count=10)
        await stream.close()
    assert not checker.problems, checker.report()
    seen = {route for route in checker.seen}
    for route in ("GET /instrument/active", "GET /instrument", "GET /trade/bucketed",
                  "GET /apiKey", "GET /wallet/assets", "GET /user/margin",
                  "POST /position/leverage", "POST /order", "PUT /order", "GET /order",
                  "DELETE /order", "DELETE /order/all", "POST /order/cancelAllAfter",
                  "GET /position", "GET /execution/tradeHistory", "ws order",
                  "ws execution", "ws position", "ws margin"):
        assert route in seen, (route, sorted(seen))


def test_the_checker_catches_what_bitmex_would_not_send() -> None:
    checker = ContractChecker()
    checker.check_rest({
        "method": "POST", "path": "/api/v1/order", "query": [],
        "body": b'{"symbol": "XBTUSD", "orderQty": 100.5, "colour": "red"}',
        "content_type": "application/json", "status": 200,
        "response": b'{"orderID": "x", "symbol": "XBTUSD", "multiLegReportingType": "S",'
                    b' "orderQty": "100", "timestamp": "2026-01-01T00:00:00.000Z"}',
    })
    checker.check_ws({"table": "position", "action": "partial", "data": [
        {"account": 1, "symbol": "XBTUSD", "currency": "XBt", "lastPrice": 1, "posInit": 0}]})
    checker.check_ws({"table": "instrument", "action": "update",
                      "data": [{"symbol": "XBTUSD", "indexPrice": 1}]})
    found = "\n".join(checker.problems)
    for needle in ("parameter 'orderQty' is number", "parameter 'colour' not in the spec",
                   "Order.multiLegReportingType is not in the spec",
                   "Order.orderQty is string", "Position.lastPrice is not in the spec",
                   "Position.posInit is not in the spec",
                   "Instrument.indexPrice is not in the spec"):
        assert needle in found, (needle, found)


def _reads_by_class() -> dict[str, set[str]]:
    """Field names each bot.exchange.types class's from_row reads from a BitMEX row."""
    nodes = [node for path in sorted((ROOT / "bot" / "exchange" / "types").glob("*.py"))
             for node in ast.parse(path.read_text()).body]
    reads: dict[str, set[str]] = {}
    for node in nodes:
        if not isinstance(node, ast.ClassDef) or node.name not in READERS:
            continue
        names: set[str] = set()
        for sub in ast.walk(node):
            if not isinstance(sub, ast.Call):
                continue
            func = sub.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if fname in ("str0", "dec", "dec0", "int0") and len(sub.args) == 2:
                arg = sub.args[1]
            elif fname == "get" and sub.args and isinstance(func, ast.Attribute) \
                    and getattr(func.value, "id", "") == "row":
                arg = sub.args[0]
            else:
                continue
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
        reads[node.name] = names
    return reads


def test_fields_the_client_reads_are_in_the_spec_or_listed_with_a_reason() -> None:
    reads = _reads_by_class()
    assert set(reads) == set(READERS)
    beyond = set()
    for cls, names in reads.items():
        definition = READERS[cls]
        fields = set(SPEC["definitions"][definition]["fields"])
        beyond |= {(definition, n) for n in names - fields}
    # Cancel rows are Order rows read in client.py: their per-row "error".
    client_src = (ROOT / "bot" / "exchange" / "client.py").read_text()
    if 'r.get("error")' in client_src:
        beyond.add(("Order", "error"))
    assert beyond == set(CLIENT_READS_BEYOND_SPEC), beyond ^ set(CLIENT_READS_BEYOND_SPEC)
    assert all(CLIENT_READS_BEYOND_SPEC.values())  # each with its reason


def test_removed_fields_are_neither_read_nor_in_the_spec() -> None:
    reads = _reads_by_class()
    removed = {("Order", "multiLegReportingType"), ("Execution", "lastMkt"),
               ("Execution", "underlyingLastPx"), ("Position", "lastPrice"),
               ("Position", "lastValue"), ("Position", "execBuyQty"),
               ("Position", "execSellQty"), ("Position", "posInit"),
               ("Position", "realisedGrossPnl"), ("Position", "unrealisedGrossPnl"),
               ("Instrument", "indexPrice")}
    for definition, name in removed:
        assert name not in SPEC["definitions"][definition]["fields"]
        cls = next(c for c, d in READERS.items() if d == definition)
        assert name not in reads[cls], (cls, name)


def test_the_bot_calls_only_routes_in_the_spec() -> None:
    sources = [p for p in (ROOT / "bot").rglob("*.py") if "sandbox" not in p.parts]
    text = "\n".join(p.read_text() for p in sources)
    called = set(re.findall(r'_call\(\s*"(GET|POST|PUT|DELETE)",\s*"([^"]+)"', text))
    called |= set(re.findall(r'_send_once\(\s*"(GET|POST|PUT|DELETE)",\s*"([^"]+)"', text))
    assert called, "no calls found: the pattern is stale"
    for verb, path in called:
        assert verb.lower() in SPEC["paths"].get(path, {}), (verb, path)
        assert (verb, path) not in ROUTES_BEYOND_SPEC
