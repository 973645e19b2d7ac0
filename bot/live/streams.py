"""The private stream of every connected account (paper accounts: the engine's
callbacks), watched from start-up and as keys come and go."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from decimal import Decimal
from typing import Any

from sqlmodel import select

from bot.db.models import User
from bot.errors import ExchangeError
from bot.exchange.client import BitmexClient
from bot.exchange.stream import PrivateStream
from bot.exchange.types import Execution, Order, Position
from bot.live.base import (
    Cursor,
    RecordingHistory,
    Watch,
)
from bot.live.deadman import Deadman
from bot.live.fills import Fills
from bot.live.liqwarn import LiqWarnings
from bot.live.monitor import PositionMonitor
from bot.metrics import StreamState
from bot.trading.stops import trail_stops

log = logging.getLogger(__name__)


class LiveUpdates(Fills, LiqWarnings, Deadman, PositionMonitor):
    """Private streams of every connected account, turned into messages."""

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Watch every stored account and start the dead-man refresh loop."""
        if self._started:
            return
        self._started = True
        self.accounts.listeners.append(self._on_account)
        async with self.db.session() as s:
            users = (await s.exec(select(User))).all()
        for u in users:
            self._liq_pct[u.id] = u.liq_alert_pct
            if u.deadman_seconds:
                self._deadman[u.id] = u.deadman_seconds
        await self.load_monitors()  # before the streams: their first updates edit them
        pairs = await self.accounts.watched()
        await asyncio.gather(*(self._watch_quietly(uid, net) for uid, net in pairs))
        self._dm_task = asyncio.create_task(self._deadman_loop(), name="deadman-refresh")

    async def close(self) -> None:
        self._closing = True
        if self._on_account in self.accounts.listeners:
            self.accounts.listeners.remove(self._on_account)
        if self._dm_task is not None:
            self._dm_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dm_task
            self._dm_task = None
        await self._cancel_tasks()
        for key in list(self._watches):
            await self.unwatch(*key)
        # Unwatching lets a fill being told finish; nothing it started may outlive us.
        await self._cancel_tasks()
        self._started = False
        self._closing = False

    async def _on_account(self, event: str, user_id: int, network: str) -> None:
        if event == "connect":
            if network == "paper" and (user_id, network) in self._watches:
                return
            # A new key on the same network: its history is not news, start from it.
            await self.unwatch(user_id, network)
            await self._delete_cursor(user_id, network)
            await self._watch_quietly(user_id, network)
        elif event == "disconnect":
            await self.unwatch(user_id, network)
            await self._delete_cursor(user_id, network)

    async def _watch_quietly(self, user_id: int, network: str) -> None:
        try:
            await self.watch(user_id, network)
        except Exception:  # one account's trouble must not keep the others dark
            log.exception("could not watch %s account of user %s", network, user_id)

    # --- watching -----------------------------------------------------------------------

    def watching(self, user_id: int, network: str) -> PrivateStream | Any | None:
        w = self._watches.get((user_id, network))
        return None if w is None else w.source

    def stream_states(self) -> list[StreamState]:
        """Every followed exchange account's private stream, up or not (for the metrics)."""
        return [StreamState(f"private-{uid}-{net}", w.stream.connected.is_set())
                for (uid, net), w in list(self._watches.items()) if w.stream is not None]

    async def watch(self, user_id: int, network: str) -> None:
        """Follow one account (idempotent)."""
        key = (user_id, network)
        if key in self._watches:
            return
        if not self.users.is_allowed(user_id):
            log.info("user %s is not in ALLOWED_USER_IDS: their %s stream stays closed",
                     user_id, network)
            return
        if user_id not in self._liq_pct:
            user = await self.users.get_user(user_id)
            self._liq_pct[user_id] = user.liq_alert_pct if user else Decimal(10)
        if network == "paper":
            paper = await self.accounts.exchange(user_id, "paper")
            w = Watch(user_id, network, paper)
            self._watches[key] = w
            self._subscribe(w, paper)
            self._bracket_soon(w)  # a paper book restored from its state file
            return
        key_id, secret = await self.accounts.credentials(user_id, network)
        client = await self.accounts.exchange(user_id, network)
        loaded = await self._load_cursor(user_id, network)
        history = RecordingHistory(client)
        # Every account's stream rides the network's few multiplexed sockets: a socket per
        # user would spend BitMEX's 60 connects an hour (per IP) after a few dozen users.
        pool = self.hub.pool(network)
        # The login is signed in BitMEX's time, as the client learned it (a host clock
        # behind BitMEX's would have it refused as expired).
        clock = client.exchange_time if isinstance(client, BitmexClient) else None
        stream = PrivateStream(self.ws_url(network), key_id, secret,
                               session=self.http, history=history, pool=pool, clock=clock,
                               name=f"private-{user_id}-{network}", **self.stream_options)
        w = Watch(user_id, network, stream, stream=stream,
                   cursor=loaded.copy() if loaded else Cursor())
        self._watches[key] = w
        self._subscribe(w, stream)
        stream.on_table(lambda t, a, rows: self._on_table(w, t, a, rows))
        stream.on_health(lambda live: self._on_health(w, live))
        await stream.start()
        baseline = history.first
        if baseline is None:
            # No history to compare with: say nothing rather than guess what is new.
            log.warning("no fill history for user %s on %s at start", user_id, network)
            return
        fills = [e for e in baseline if e.is_fill]
        if loaded is not None:
            missed = [ex for ex in fills if loaded.is_new(ex)]
            if missed:
                self._spawn(self._report_missed(w, missed), f"missed-{user_id}-{network}")
                return  # the cursor moves as they are told
        changed = False
        for ex in fills:
            changed = (w.cursor is not None and w.cursor.advance(ex)) or changed
        if changed or loaded is None:
            await self._save_cursor(w)

    async def _report_missed(self, w: Watch, missed: list[Execution]) -> None:
        """Fills made while the bot was down: told once, after the socket's partial
        arrived (its rows carry the order's size for "100/300")."""
        if w.stream is not None:
            with contextlib.suppress(Exception):
                await w.stream.wait_ready(10.0)
        for ex in missed:
            if not w.closed:
                await self._report_fill(w, ex)

    async def _on_health(self, w: Watch, live: bool) -> None:
        """Told once when the account's live updates stayed down, once when they are back."""
        if w.closed:
            return
        net = html.escape(w.network)
        fatal = getattr(w.stream, "fatal", None)
        if not live and isinstance(fatal, ExchangeError):
            text = (f"⚠️ BitMEX {net} refused your key for live updates "
                    f"({html.escape(fatal.message)}), so fills are not reported as they "
                    f"happen. Connect a working key with /connect {net}.")
            await self._send(w.user_id, text, "stream")
            return
        if live:
            text = (f"✅ Live updates from your BitMEX {net} account are back. Fills made "
                    "meanwhile are reported now, if there were any.")
        else:
            minutes = max(1, round(getattr(w.stream, "dark_after", 180) / 60))
            text = (f"⚠️ I have lost the live updates from your BitMEX {net} account for "
                    f"{minutes} min. I keep trying to restore them; fills made meanwhile "
                    "will be reported when they are back. Your orders on BitMEX are not "
                    "affected.")
        await self._send(w.user_id, text, "stream")

    def _subscribe(self, w: Watch, source: Any) -> None:
        async def fill(ex: Execution) -> None:
            if not w.closed:
                await self._report_fill(w, ex)

        async def order(o: Order) -> None:
            if not w.closed:
                if o.is_open and o.text.startswith("telegram trail "):
                    w.bot_trailed.add(o.symbol)
                await self._on_order(w, o)
                await self._monitor_order(w, o)

        async def position(p: Position) -> None:
            if not w.closed:
                await self._on_position(w, p)
                await self._monitor_position(w, p)
                if p.symbol in w.bot_trailed:
                    await self._trail_own_stop(w, p)

        source.on_fill(fill)
        source.on_order(order)
        source.on_position(position)

    async def _trail_own_stop(self, w: Watch, p: Position) -> None:
        """Where BitMEX refused a pegged stop, move the bot's plain one with the mark."""
        inst = await self._instrument(w.network, p.symbol)
        if p.mark_price is None or inst is None:
            return
        try:
            ex = await self.accounts.exchange(w.user_id, w.network)
            if not await trail_stops(ex, p.symbol, p.mark_price, inst.tick_size,
                                     keep=w.bot_trailed):
                return
        except ExchangeError as e:
            log.warning("bot trailing of %s not moved: %s", p.symbol, e.message)

    async def wait_ready(self, user_id: int, network: str = "testnet",
                         within: float = 10.0) -> None:
        """Wait until the account's private tables arrived (tests, health checks)."""
        w = self._watches.get((user_id, network))
        if w is not None and w.stream is not None:
            await w.stream.wait_ready(within)
