"""One user's private stream: login, fills exactly once, going dark.

The login is signed in exchange time (`clock`, e.g. `BitmexClient.exchange_time`): BitMEX
judges `api-expires` by its own clock, and a host clock behind it by more than the
signature's lifetime would have every login refused as expired, as REST requests were
before they learned BitMEX's clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

import aiohttp

from bot.exchange import auth
from bot.exchange.stream.base import BaseStream, safe
from bot.exchange.stream.connection import jitter
from bot.exchange.stream.tables import Row
from bot.exchange.types import Execution, Margin, Order, Position

log = logging.getLogger(__name__)


class FillHistory(Protocol):
    """What PrivateStream needs to backfill fills missed while disconnected."""

    async def executions(
        self, symbol: str | None = None, *, start_time: datetime | None = None,
        end_time: datetime | None = None, count: int = 100,
    ) -> list[Execution]: ...


class PrivateStream(BaseStream):
    """One user's private tables: order, execution, position, margin.

    Fills are reported exactly once across reconnects: every execID seen is
    remembered, and after a reconnect the execution partial plus recent trade
    history (when a REST client is given) are replayed through that filter.
    """

    TOPICS = ("order", "execution", "position", "margin")
    kind = "private"

    def __init__(self, ws_url: str, key: str, secret: str, *, session: aiohttp.ClientSession,
                 history: FillHistory | None = None, seen_limit: int = 20000,
                 clock: Callable[[], float] | None = None, **kwargs: Any) -> None:
        super().__init__(ws_url, session=session, name=kwargs.pop("name", "private"), **kwargs)
        self.key = key
        self._secret = secret
        self.history = history
        # BitMEX's clock (UNIX s) as best known, what the login is signed in; the REST
        # client's `exchange_time`, which learns it from every answer.
        self.clock: Callable[[], float] = clock or time.time
        self._topics = list(self.TOPICS)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_limit = seen_limit
        self._baseline_done = False
        self._rest_baseline = False
        self._on_fill: list[Callable[[Execution], Awaitable[None]]] = []
        self._on_order: list[Callable[[Order], Awaitable[None]]] = []
        self._on_position: list[Callable[[Position], Awaitable[None]]] = []
        self._on_margin: list[Callable[[Margin], Awaitable[None]]] = []
        self._on_health: list[Callable[[bool], Awaitable[None]]] = []
        self._authed = False
        self._login_tries = 0
        self._dark_timer: asyncio.TimerHandle | None = None
        self.dark = False  # told "dark" and not yet told "back"
        self._started_at = 0.0

    def __repr__(self) -> str:
        return f"PrivateStream({self.ws_url!r}, key=set)"

    def on_fill(self, cb: Callable[[Execution], Awaitable[None]]) -> None:
        self._on_fill.append(cb)

    def on_order(self, cb: Callable[[Order], Awaitable[None]]) -> None:
        self._on_order.append(cb)

    def on_position(self, cb: Callable[[Position], Awaitable[None]]) -> None:
        self._on_position.append(cb)

    def on_margin(self, cb: Callable[[Margin], Awaitable[None]]) -> None:
        self._on_margin.append(cb)

    def on_health(self, cb: Callable[[bool], Awaitable[None]]) -> None:
        """`cb(False)` once when the stream stayed down for `dark_after` seconds,
        `cb(True)` when it is live again."""
        self._on_health.append(cb)

    def orders(self) -> list[Order]:
        return [Order.from_row(r) for r in self.table("order").values()]

    def positions(self) -> list[Position]:
        return [Position.from_row(r) for r in self.table("position").values()]

    async def start(self) -> None:
        if not self._baseline_done and self.history is not None:
            # Fills that exist before we start are history, not news.
            try:
                for ex in await self.history.executions(count=1000):
                    self._remember(ex.exec_id)
                self._rest_baseline = True
            except Exception:
                log.warning("%s: could not read fill history for the baseline", self.name)
        self._started_at = time.monotonic()
        await super().start()
        self._health_changed()

    async def close(self) -> None:
        if self._dark_timer is not None:
            self._dark_timer.cancel()
            self._dark_timer = None
        await super().close()

    # --- login: before any private subscribe ---------------------------------------------

    def _handshake_headers(self) -> dict[str, str]:
        # On its own socket the stream logs in during the handshake, as the official
        # connectors do: no window in which a subscribe could arrive unauthenticated.
        expires = auth.expires_at(self.clock())
        return {"api-expires": str(expires), "api-key": self.key,
                "api-signature": auth.signature(self._secret, "GET", "/realtime", expires)}

    def _may_subscribe(self) -> bool:
        return self.connected.is_set() and self._authed

    async def _after_connect(self) -> None:
        if self._mux is None:
            self._authed = True  # the handshake carried the login
            await self._subscribe_all()
            self._health_changed()
            return
        self._authed = False
        await self._login()

    async def _login(self) -> None:
        """authKeyExpires, then subscribe only on its success; an unanswered login is
        sent again (with backoff) rather than waited for forever."""
        self._login_tries += 1
        expires = auth.expires_at(self.clock())
        await self._send({"op": "authKeyExpires",
                          "args": auth.ws_login_args(self.key, self._secret, expires)})
        tries = self._login_tries
        wait = min(self.backoff_max, self.auth_timeout * (2 ** min(tries - 1, 6)))

        async def check() -> None:
            if not self._authed and self._login_tries == tries and self.connected.is_set():
                log.info("%s: no answer to the login, sending it again", self.name)
                await self._login()

        self._later(wait, check)

    async def _logged_in(self) -> None:
        if self._authed:
            return  # the answer to a login sent again: the first one already subscribed
        self._authed = True
        self._login_tries = 0
        await self._subscribe_all()
        self._health_changed()

    async def _login_failed(self, error: str) -> None:
        self._authed = False
        delay = jitter(min(self.resubscribe_max,
                           self.resubscribe_base * (2 ** min(self._login_tries, 16))))

        async def again() -> None:
            if not self._authed and self.connected.is_set():
                await self._login()

        self._later(delay, again)

    async def _subscribe_refused(self, topic: str, error: str, status: Any) -> None:
        if status == 401 or "authenticat" in error.lower():
            # The login is gone (or never took): log in again; its success resubscribes.
            if self._authed:
                self._authed = False
                self._health_changed()
                await self._login_failed(error)
            return
        await super()._subscribe_refused(topic, error, status)

    # --- going dark ------------------------------------------------------------------------

    def _health_changed(self) -> None:
        if self._closing or not self._started:
            return
        if self.is_live():
            if self._dark_timer is not None:
                self._dark_timer.cancel()
                self._dark_timer = None
            if self.dark:
                self.dark = False
                self._tell_health(True)
        elif self._dark_timer is None and not self.dark:
            self._dark_timer = asyncio.get_running_loop().call_later(
                self.dark_after, self._went_dark)

    def _refused(self) -> None:
        if self.dark:
            # Already told "down, retrying": now the reason, since no retry will help.
            self._tell_health(False)

    def _went_dark(self) -> None:
        self._dark_timer = None
        if self._closing or self.is_live() or self.dark:
            return
        self.dark = True
        log.warning("%s: private stream down for %.0fs", self.name, self.dark_after)
        self._tell_health(False)

    def _tell_health(self, live: bool) -> None:
        async def tell() -> None:
            for cb in self._on_health:
                await safe(cb, live)

        task = asyncio.get_running_loop().create_task(tell())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all_after(self, timeout_ms: int) -> None:
        """Dead-man's switch over the socket (no REST budget spent); 0 disarms it."""
        await self._send({"op": "cancelAllAfter", "args": int(timeout_ms)})

    def _remember(self, exec_id: str) -> bool:
        """True when this execID is new."""
        if not exec_id or exec_id in self._seen:
            return False
        self._seen[exec_id] = None
        if len(self._seen) > self._seen_limit:
            self._seen.popitem(last=False)
        return True

    async def _emit_fills(self, executions: Iterable[Execution]) -> None:
        fresh = [e for e in executions if self._remember(e.exec_id)]
        fresh.sort(key=lambda e: (e.timestamp is None, e.timestamp))
        for ex in fresh:
            if ex.is_fill:
                for cb in self._on_fill:
                    await safe(cb, ex)

    async def _dispatch(self, name: str, action: str, rows: list[Row]) -> None:
        if name == "execution":
            if action == "partial":
                execs = [Execution.from_row(r) for r in rows]
                if not self._baseline_done and not self._rest_baseline:
                    # No REST baseline to tell old from new: the first partial is it.
                    for ex in execs:
                        self._remember(ex.exec_id)
                    execs = []
                # After a reconnect, or a first partial that came late (refused subscribes,
                # a lost login), fills may have happened that the partial no longer holds.
                late = self._rest_baseline and (
                    time.monotonic() - self._started_at > self.auth_timeout)
                if (self._baseline_done or late) and self.history is not None:
                    try:
                        execs += await self.history.executions(count=1000)
                    except Exception:
                        log.warning("%s: fill backfill failed; relying on the partial", self.name)
                self._baseline_done = True
                await self._emit_fills(execs)
            elif action == "insert":
                await self._emit_fills(Execution.from_row(r) for r in rows)
        elif name == "order":
            for row in rows:
                order = Order.from_row(row)
                for order_cb in self._on_order:
                    await safe(order_cb, order)
        elif name == "position":
            for row in rows:
                pos = Position.from_row(row)
                for pos_cb in self._on_position:
                    await safe(pos_cb, pos)
        elif name == "margin":
            for row in rows:
                margin = Margin.from_row(row)
                for margin_cb in self._on_margin:
                    await safe(margin_cb, margin)
