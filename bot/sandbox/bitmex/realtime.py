"""The realtime WebSocket: /realtime (one stream per socket) and /realtimemd (multiplexed),
login, subscribe with its partial, and every engine event fanned out to its subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from bot.matching import Account, EngineError, Event, Row, iso
from bot.sandbox.bitmex.gateway import Conn, Gateway
from bot.sandbox.bitmex.wire import OBSERVERS, ApiError, dumps

PUBLIC_TABLES = ("instrument", "trade", "quote", "liquidation", "funding")
PRIVATE_TABLES = ("order", "execution", "position", "margin", "wallet")
KEYS: dict[str, list[str]] = {
    "instrument": ["symbol"],
    "trade": [],
    "quote": [],
    "liquidation": ["orderID"],
    "funding": ["timestamp", "symbol"],
    "order": ["orderID"],
    "execution": ["execID"],
    "position": ["account", "symbol", "currency"],
    "margin": ["account", "currency"],
    "wallet": ["account", "currency"],
}


def field_types(rows: list[Row]) -> dict[str, str]:
    types: dict[str, str] = {}
    for row in rows[:1]:
        for key, value in row.items():
            if key in ("timestamp", "transactTime") or key.endswith("Timestamp"):
                types[key] = "timestamp"
            elif key == "symbol":
                types[key] = "symbol"
            elif key.endswith("ID"):
                types[key] = "guid"
            elif isinstance(value, bool):
                types[key] = "boolean"
            elif isinstance(value, int):
                types[key] = "long"
            elif isinstance(value, Decimal | float):
                types[key] = "float"
            else:
                types[key] = "symbol"
    return types


class Realtime(Gateway):
    """WebSocket endpoints, subscriptions and the event fan-out."""

    def _admit(self, request: web.Request) -> tuple[int, web.Response | None]:
        """Count one handshake against the IP's hourly budget, or refuse it with 429."""
        ip = request.remote or "unknown"
        remaining, retry = self.ws_limit.admit(ip, self.engine.clock.now())
        if remaining >= 0:
            return remaining, None
        wait = max(1, math.ceil(retry))
        body = dumps({"error": {"message": "Rate limit exceeded, retry in "
                                f"{wait} seconds.", "name": "HTTPError"}})
        return -1, web.Response(status=429, text=body, content_type="application/json",
                                headers={"Retry-After": str(wait)})

    def _welcome(self, remaining: int) -> dict[str, Any]:
        return {
            "info": "Welcome to the BitMEX Realtime API.",
            "version": "2.0.0-sim",
            "timestamp": iso(self.engine.clock.now()),
            "docs": "https://www.bitmex.com/app/wsAPI",
            "heartbeatEnabled": False,
            "limit": {"remaining": remaining},
        }

    async def _realtime(self, request: web.Request) -> web.StreamResponse:
        remaining, refused = self._admit(request)
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = Conn(ws, asyncio.Queue())
        self._conns.add(conn)
        sender = asyncio.create_task(self._sender(ws, conn.queue))
        self._send(conn, self._welcome(remaining))
        creds = {
            name: request.query.get(name) or request.headers.get(name)
            for name in ("api-key", "api-expires", "api-signature")
        }
        try:
            if creds["api-key"]:
                try:
                    self._set_account(conn, self._verify(
                        str(creds["api-key"]), str(creds["api-expires"] or ""),
                        str(creds["api-signature"] or ""), "GET", "/realtime", b"",
                    ))
                except ApiError as e:
                    self._send(conn, {"status": e.status, "error": e.message, "meta": {}})
                    conn.queue.put_nowait(None)
                    await sender
                    await ws.close()
                    return ws
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if msg.data == "ping":
                    conn.queue.put_nowait("pong")
                    continue
                self._on_ws_message(conn, msg.data)
        finally:
            self._drop(conn)
            conn.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await sender
        return ws

    async def _realtimemd(self, request: web.Request) -> web.StreamResponse:
        """Many streams on one socket: frames `[type, id, topic, payload]` (BitMEX's format).

        1 opens a stream, 2 closes it, 0 carries a message; each stream logs in and
        subscribes on its own and receives exactly what a /realtime socket would.
        """
        remaining, refused = self._admit(request)
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        sender = asyncio.create_task(self._sender(ws, queue))
        streams: dict[str, Conn] = {}
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                if msg.data == "ping":
                    queue.put_nowait("pong")
                    continue
                try:
                    frame = json.loads(msg.data)
                    kind, sid, topic = frame[0], frame[1], frame[2]
                    if kind not in (0, 1, 2) or not isinstance(sid, str) or not isinstance(
                            topic, str):
                        raise ValueError(frame)
                except (ValueError, TypeError, IndexError, KeyError):
                    queue.put_nowait(dumps({"status": 400, "error": "Unrecognized request.",
                                            "meta": {}, "request": msg.data[:100]}))
                    continue
                conn = streams.get(sid)
                if kind == 1:
                    if conn is None:
                        conn = streams[sid] = Conn(ws, queue, mux=(sid, topic))
                        self._conns.add(conn)
                        self._send(conn, self._welcome(remaining))
                elif kind == 2:
                    if conn is not None:
                        del streams[sid]
                        self._drop(conn)
                elif conn is not None and len(frame) > 3:
                    payload = frame[3]
                    if isinstance(payload, str):
                        self._on_ws_message(conn, payload)
                    else:
                        self._on_ws_request(conn, payload)
        finally:
            for conn in streams.values():
                self._drop(conn)
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await sender
        return ws

    def _set_account(self, conn: Conn, account: Account | None) -> None:
        if conn.account is not None:
            self._account_conns.get(conn.account.id, set()).discard(conn)
        conn.account = account
        if account is not None:
            self._account_conns.setdefault(account.id, set()).add(conn)

    def _drop(self, conn: Conn) -> None:
        conn.closed = True
        self._conns.discard(conn)
        for table, _ in conn.subs:
            self._table_conns.get(table, set()).discard(conn)
        self._set_account(conn, None)

    async def _sender(self, ws: web.WebSocketResponse, queue: asyncio.Queue[str | None]) -> None:
        while True:
            text = await queue.get()
            if text is None or ws.closed:
                return
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    def _send(self, conn: Conn, message: Any) -> None:
        if conn.closed and conn.mux is not None:
            return
        if OBSERVERS and isinstance(message, dict) and "table" in message:
            for observer in list(OBSERVERS):
                observer("ws", message)
        if conn.mux is not None:
            sid, topic = conn.mux
            conn.queue.put_nowait(dumps([0, sid, topic, message]))
        else:
            conn.queue.put_nowait(message if isinstance(message, str) else dumps(message))

    async def _close_sockets(self) -> None:
        sockets = {id(c.ws): c for c in self._conns}
        for conn in list(self._conns):
            self._drop(conn)
        for conn in sockets.values():
            conn.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"closed by simulator")

    def _ws_error(self, conn: Conn, status: int, message: str, request: Any) -> None:
        # BitMEX's error frame: no "success" field, the request echoed back.
        self._send(conn, {"status": status, "error": message, "meta": {}, "request": request})

    def _on_ws_message(self, conn: Conn, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            self._ws_error(conn, 400, f"Unrecognized request. {text[:100]}", text)
            return
        self._on_ws_request(conn, request)

    def _on_ws_request(self, conn: Conn, request: Any) -> None:
        if not isinstance(request, dict):
            self._ws_error(conn, 400, "Unrecognized request.", request)
            return
        op = request.get("op")
        args: Any = request.get("args")
        if op == "authKeyExpires":
            try:
                key, expires, signature = (str(a) for a in args)
            except (TypeError, ValueError):
                self._ws_error(conn, 400, "Invalid args for authKeyExpires", request)
                return
            if self.faults.ws._take_drop_auth():
                return  # lost on the way: no answer, no login
            task = asyncio.get_running_loop().create_task(
                self._login(conn, key, expires, signature, request))
            self._login_tasks.add(task)
            task.add_done_callback(self._login_tasks.discard)
        elif op in ("subscribe", "unsubscribe"):
            topics = args if isinstance(args, list) else [args]
            for topic in topics:
                if op == "subscribe":
                    self._subscribe(conn, str(topic), request)
                else:
                    table, _, symbol = str(topic).partition(":")
                    conn.subs.discard((table, symbol or None))
                    if not any(t == table for t, _ in conn.subs):
                        self._table_conns.get(table, set()).discard(conn)
                    self._send(conn, {"success": True, "unsubscribe": topic, "request": request})
        elif op == "cancelAllAfter":
            if conn.account is None:
                self._ws_error(conn, 401, "You must be authenticated to use cancelAllAfter.",
                               request)
                return
            timeout = args[0] if isinstance(args, list) else args
            try:
                result = self.engine.cancel_all_after(conn.account.id, int(timeout))
            except (TypeError, ValueError, EngineError):
                self._ws_error(conn, 400, "Invalid timeout", request)
                return
            self._send(conn, {**result, "request": request})
        else:
            self._ws_error(conn, 400, f"Unknown or unsupported op: {op}", request)

    async def _login(self, conn: Conn, key: str, expires: str, signature: str,
                     request: Any) -> None:
        if self.ws_auth_delay:
            await asyncio.sleep(self.ws_auth_delay)
        if conn.closed:
            return
        try:
            account = self._verify(key, expires, signature, "GET", "/realtime", b"")
        except ApiError as e:
            self._ws_error(conn, e.status, e.message, request)
            return
        self._set_account(conn, account)
        self._send(conn, {"success": True, "request": request})

    def _subscribe(self, conn: Conn, topic: str, request: Any) -> None:
        table, _, symbol = topic.partition(":")
        if table not in KEYS:
            self._ws_error(conn, 400, f"Unknown table: {table}", request)
            return
        if symbol and symbol not in self.engine.instruments:
            self._ws_error(conn, 400, f"Unknown symbol: {symbol}", request)
            return
        if table in PRIVATE_TABLES and conn.account is None:
            self._ws_error(
                conn, 401, f"You must be authenticated to subscribe to {table}.", request
            )
            return
        if table in PRIVATE_TABLES and self.faults.ws._take_refusal(table):
            self._ws_error(conn, 503, f"Unable to subscribe to {topic} right now. "
                           "Please try again.", request)
            return
        sub = (table, symbol or None)
        if sub in conn.subs:
            self._ws_error(conn, 400, f"You are already subscribed to this topic: {topic}",
                           request)
            return
        conn.subs.add(sub)
        self._table_conns.setdefault(table, set()).add(conn)
        self._send(conn, {"success": True, "subscribe": topic, "request": request})
        # BitMEX leaves empty fields out of a partial rather than sending nulls.
        rows = [{k: v for k, v in r.items() if v is not None}
                for r in self._snapshot(conn, table, symbol or None)]
        flt: dict[str, Any] = {}
        if conn.account is not None and table in PRIVATE_TABLES:
            flt["account"] = conn.account.id
        if symbol:
            flt["symbol"] = symbol
        self._send(conn, {
            "table": table,
            "action": "partial",
            "keys": KEYS[table],
            "types": field_types(rows),
            "foreignKeys": {"symbol": "instrument"} if table not in ("instrument", "margin",
                                                                      "wallet") else {},
            "attributes": {k: "grouped" for k in KEYS[table]},
            "filter": flt,
            "data": rows,
        })

    def _snapshot(self, conn: Conn, table: str, symbol: str | None) -> list[Row]:
        e = self.engine
        acct = conn.account.id if conn.account is not None else None
        rows: list[Row]
        if table == "instrument":
            rows = [e.instrument_row(i) for i in e.instruments.values()]
        elif table == "trade":
            rows = e.trades(symbol)[-100:]
        elif table == "quote":
            rows = [e.quote_row(i) for i in e.instruments.values()]
        elif table == "liquidation":
            rows = [dict(r) for r in e.liquidations.values()]
        elif table == "funding":
            rows = e.fundings[-50:]
        elif acct is None:
            rows = []
        elif table == "order":
            rows = e.open_order_rows(acct)
        elif table == "execution":
            rows = e.execution_rows(acct)[-100:]
        elif table == "position":
            rows = e.position_rows(acct)
        elif table == "margin":
            rows = e.margins(acct)
        else:
            rows = [e.wallet_row(acct, c) for c in ("XBt", "USDt")]
        if symbol:
            rows = [r for r in rows if r.get("symbol") == symbol]
        return rows

    def _on_event(self, event: Event) -> None:
        # Private events go only to that account's streams (thousands of streams share
        # this loop in the benchmarks).
        conns = (self._table_conns.get(event.table, set()) if event.account is None
                 else self._account_conns.get(event.account, set()))
        for conn in list(conns):
            wanted = [sym for (table, sym) in conn.subs if table == event.table]
            if not wanted:
                continue
            if None in wanted:
                rows = event.data
            else:
                rows = [r for r in event.data if r.get("symbol") in wanted]
            if rows:
                self._send(conn, {"table": event.table, "action": event.action, "data": rows})
