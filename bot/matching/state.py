"""The engine's books (accounts, orders, positions, fills, price history) and its event stream.

Every state change is reported as an `Event(table, action, data, account)` so the server
can fan it out on the WebSocket exactly like BitMEX does.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.matching.clock import Clock
from bot.matching.instruments import Instrument, default_instruments
from bot.matching.records import Account, Event, Order, Position, PricePoint
from bot.matching.terms import EngineError, Row, iso, to_int


class EngineState:
    """The data every part of the engine works on, its listeners, accounts and lookups."""

    def __init__(
        self, clock: Clock | None = None, instruments: Iterable[Instrument] | None = None
    ) -> None:
        self.clock = clock or Clock()
        self.instruments: dict[str, Instrument] = {}
        for inst in instruments or default_instruments():
            self.instruments[inst.symbol] = inst
        self.accounts: dict[int, Account] = {}
        self._by_key: dict[str, Account] = {}
        self.orders: dict[str, Order] = {}
        self._open: dict[str, dict[str, Order]] = {s: {} for s in self.instruments}
        self._by_account: dict[int, list[Order]] = {}
        self._cl_ids: dict[int, dict[str, Order]] = {}
        self.positions: dict[tuple[int, str], Position] = {}
        self.executions: dict[int, list[Row]] = {}
        self.history: dict[str, deque[PricePoint]] = {
            s: deque(maxlen=200000) for s in self.instruments
        }
        self.fundings: list[Row] = []
        self.liquidations: dict[str, Row] = {}
        self._liq_schedule: list[tuple[datetime, str, str]] = []
        self._listeners: list[Callable[[Event], None]] = []
        self._next_account = 100001
        self._last_time = self.clock.now()

    def listen(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    def _emit(self, table: str, action: str, data: list[Row], account: int | None = None) -> None:
        if not data:
            return
        event = Event(table, action, data, account)
        for callback in list(self._listeners):
            callback(event)

    def add_account(
        self,
        key: str,
        secret: str,
        permissions: Iterable[str] = ("order", "orderCancel"),
        *,
        xbt: Decimal | float | int = 1,
        usdt: Decimal | float | int = 10000,
        enabled: bool = True,
        bmex: Decimal | float | int = 0,
    ) -> Account:
        account = Account(
            id=self._next_account,
            key=key,
            secret=secret,
            permissions=list(permissions),
            enabled=enabled,
            key_id=key,
            created=self.clock.now(),
        )
        self._next_account += 1
        account.wallet["XBt"] = to_int(Decimal(str(xbt)) * 100000000)
        account.wallet["USDt"] = to_int(Decimal(str(usdt)) * 1000000)
        # Every live account has a BMEx wallet (the exchange token), usually empty.
        account.wallet["BMEx"] = to_int(Decimal(str(bmex)) * 1000000)
        account.deposited = dict(account.wallet)
        # Strict by default: an older key of the same account, with withdraw permission,
        # is listed before the caller's own, so judging by the first row is caught.
        account.other_keys.append({
            "id": uuid.uuid4().hex[:24], "name": "withdrawals", "nonce": 0, "cidr": "",
            "cidrs": [], "permissions": ["order", "orderCancel", "withdraw"], "enabled": True,
            "userId": account.id, "created": iso(self.clock.now() - timedelta(days=400)),
        })
        self.accounts[account.id] = account
        self._by_key[key] = account
        self._by_account[account.id] = []
        self._cl_ids[account.id] = {}
        self.executions[account.id] = []
        return account

    def api_key_rows(self, account_id: int) -> list[Row]:
        """GET /apiKey: every key of the account, the caller's own among them."""
        acct = self.accounts[account_id]
        rows = [dict(r) for r in acct.other_keys]
        if not acct.hide_own_key:
            rows.append({
                "id": acct.key, "name": "simulator", "nonce": 0,
                "cidr": acct.cidrs[0] if acct.cidrs else "", "cidrs": list(acct.cidrs),
                "permissions": list(acct.permissions), "enabled": acct.enabled,
                "userId": acct.id, "created": iso(acct.created or self.clock.now()),
            })
        return rows

    def account_by_key(self, key: str) -> Account | None:
        return self._by_key.get(key)

    def instrument(self, symbol: Any) -> Instrument:
        inst = self.instruments.get(str(symbol)) if symbol else None
        if inst is None:
            raise EngineError("Invalid symbol")
        return inst

    def _position(self, account_id: int, symbol: str) -> Position:
        key = (account_id, symbol)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position(account_id, symbol)
        return pos
