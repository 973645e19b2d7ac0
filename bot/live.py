"""Live updates: each connected account's private stream, told to its owner in chat.

One `PrivateStream` per (user, network) with a verified key, and the paper engine's
callbacks for paper accounts. Fills (partial and complete), stop triggers, TP/SL
hits and liquidations become messages; a filled entry gets its TP/SL placed; the
position updates drive `/liqalert`; a refresh loop keeps `/deadman` armed.

Exactly once: the stream filters execIDs across reconnects; across restarts the
newest reported fill is kept per account (`LiveCursor`), so fills made while the
bot was down are told once on start and older ones never again.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlmodel import select

from bot import fmt
from bot.db.models import LiveCursor, User
from bot.errors import ExchangeError, Rejected, UserError
from bot.exchange.stream import PrivateStream
from bot.exchange.types import Exchange, Execution, Instrument, Order, Position
from bot.metrics import StreamState

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

STOP_TYPES = frozenset({"Stop", "StopLimit", "MarketIfTouched", "LimitIfTouched"})
# The exec type BitMEX reports when a stop fires (it has no "Trigger" type).
TRIGGERED = "TriggeredOrActivatedBySystem"
# The bot's exits carry the entry's clOrdID plus ":sl" or ":tpN" (bot/trading/exits.py).
EXIT_RE = re.compile(r"^(?P<entry>.+):(?P<leg>sl|tp(?P<n>\d+))$")
# Hysteresis of /liqalert, in percentage points: warned at N %, armed again at N + 1 %.
REARM_POINTS = Decimal(1)
DEADMAN_INTERVAL = 15.0
DEADMAN_WARN_AFTER = 3  # consecutive failed refreshes before the user is told
CURSOR_IDS = 500  # execIDs kept for the newest millisecond (many fills can share one)
REPORTED_LIMIT = 5000
ENTRY_SETTLE_WAIT = 15.0  # seconds to let a card's own press finish before placing exits


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _qty(value: Decimal | None) -> str:
    return "?" if value is None else fmt.num(value)


@dataclass
class Cursor:
    """The newest reported fill: its time and every execID reported at that time."""

    at: datetime | None = None
    ids: list[str] = field(default_factory=list)

    def is_new(self, ex: Execution) -> bool:
        if self.at is None or ex.timestamp is None:
            return self.at is None or ex.exec_id not in self.ids
        return ex.timestamp > self.at or (ex.timestamp == self.at and ex.exec_id not in self.ids)

    def advance(self, ex: Execution) -> bool:
        """Move forward to `ex` (never back); True when something changed."""
        ts = ex.timestamp
        if ts is None:
            return False
        if self.at is None or ts > self.at:
            self.at, self.ids = ts, [ex.exec_id]
            return True
        if ts == self.at and ex.exec_id not in self.ids:
            self.ids = [*self.ids, ex.exec_id][-CURSOR_IDS:]
            return True
        return False

    def copy(self) -> Cursor:
        return Cursor(self.at, list(self.ids))


class _RecordingHistory:
    """Hands the stream its REST fill history and keeps the first answer: the baseline."""

    def __init__(self, inner: Exchange) -> None:
        self.inner = inner
        self.first: list[Execution] | None = None

    async def executions(
        self, symbol: str | None = None, *, start_time: datetime | None = None,
        end_time: datetime | None = None, count: int = 100,
    ) -> list[Execution]:
        got = await self.inner.executions(symbol, start_time=start_time, end_time=end_time,
                                          count=count)
        if self.first is None:
            self.first = got
        return got


@dataclass
class _Watch:
    user_id: int
    network: str
    source: Any  # PrivateStream or PaperExchange: same callbacks
    stream: PrivateStream | None = None
    cursor: Cursor | None = None  # None for paper accounts (they do not outlive the process)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reported: OrderedDict[str, None] = field(default_factory=OrderedDict)
    triggered: set[str] = field(default_factory=set)  # orderIDs whose trigger was told
    liq_warned: set[str] = field(default_factory=set)  # symbols warned, not yet re-armed
    closed: bool = False


@dataclass
class _DeadmanState:
    failures: int = 0
    last_ok: float = 0.0
    warned: bool = False


class LiveUpdates:
    """Private streams of every connected account, turned into messages."""

    def __init__(self, services: Services, *, deadman_interval: float = DEADMAN_INTERVAL,
                 stream_options: dict[str, Any] | None = None) -> None:
        self.svc = services
        self.deadman_interval = deadman_interval
        self.stream_options = dict(stream_options or {})
        self._watches: dict[tuple[int, str], _Watch] = {}
        self._liq_pct: dict[int, Decimal | None] = {}
        self._deadman: dict[int, int] = {}
        self._dm_next: dict[int, float] = {}
        self._dm_state: dict[tuple[int, str], _DeadmanState] = {}
        self._dm_paused = False
        self._dm_wake = asyncio.Event()
        self._dm_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._exit_locks: dict[int, asyncio.Lock] = {}
        self._started = False

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Watch every stored account and start the dead-man refresh loop."""
        if self._started:
            return
        self._started = True
        self.svc.accounts.listeners.append(self._on_account)
        async with self.svc.db.session() as s:
            users = (await s.exec(select(User))).all()
        for u in users:
            self._liq_pct[u.id] = u.liq_alert_pct
            if u.deadman_seconds:
                self._deadman[u.id] = u.deadman_seconds
        pairs = await self.svc.accounts.watched()
        await asyncio.gather(*(self._watch_quietly(uid, net) for uid, net in pairs))
        self._dm_task = asyncio.create_task(self._deadman_loop(), name="deadman-refresh")

    async def close(self) -> None:
        if self._on_account in self.svc.accounts.listeners:
            self.svc.accounts.listeners.remove(self._on_account)
        if self._dm_task is not None:
            self._dm_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dm_task
            self._dm_task = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for key in list(self._watches):
            await self.unwatch(*key)
        self._started = False

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        if not self.svc.is_allowed(user_id):
            log.info("user %s is not in ALLOWED_USER_IDS: their %s stream stays closed",
                     user_id, network)
            return
        if user_id not in self._liq_pct:
            user = await self.svc.get_user(user_id)
            self._liq_pct[user_id] = user.liq_alert_pct if user else Decimal(10)
        if network == "paper":
            paper = await self.svc.accounts.exchange(user_id, "paper")
            w = _Watch(user_id, network, paper)
            self._watches[key] = w
            self._subscribe(w, paper)
            return
        key_id, secret = await self.svc.accounts.credentials(user_id, network)
        client = await self.svc.accounts.exchange(user_id, network)
        loaded = await self._load_cursor(user_id, network)
        history = _RecordingHistory(client)
        assert self.svc.http is not None
        hub = self.svc.market_hub
        # Every account's stream rides the network's few multiplexed sockets: a socket per
        # user would spend BitMEX's 60 connects an hour (per IP) after a few dozen users.
        pool = hub.pool(network) if hub is not None else None
        stream = PrivateStream(self.svc.settings.ws_url(network), key_id, secret,
                               session=self.svc.http, history=history, pool=pool,
                               name=f"private-{user_id}-{network}", **self.stream_options)
        w = _Watch(user_id, network, stream, stream=stream,
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

    async def _report_missed(self, w: _Watch, missed: list[Execution]) -> None:
        """Fills made while the bot was down: told once, after the socket's partial
        arrived (its rows carry the order's size for "100/300")."""
        if w.stream is not None:
            with contextlib.suppress(Exception):
                await w.stream.wait_ready(10.0)
        for ex in missed:
            if not w.closed:
                await self._report_fill(w, ex)

    async def _on_health(self, w: _Watch, live: bool) -> None:
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

    def _subscribe(self, w: _Watch, source: Any) -> None:
        async def fill(ex: Execution) -> None:
            if not w.closed:
                await self._report_fill(w, ex)

        async def order(o: Order) -> None:
            if not w.closed:
                await self._on_order(w, o)

        async def position(p: Position) -> None:
            if not w.closed:
                await self._on_position(w, p)

        source.on_fill(fill)
        source.on_order(order)
        source.on_position(position)

    async def unwatch(self, user_id: int, network: str) -> None:
        w = self._watches.pop((user_id, network), None)
        if w is None:
            return
        # Paper callbacks cannot be removed from the engine: the flag silences them.
        w.closed = True
        # A fill being told right now finishes (and saves its cursor) before we stop, or a
        # restart would tell it again.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(w.lock.acquire(), 5.0)
            w.lock.release()
        if w.stream is not None:
            await w.stream.close()

    async def wait_ready(self, user_id: int, network: str = "testnet",
                         within: float = 10.0) -> None:
        """Wait until the account's private tables arrived (tests, health checks)."""
        w = self._watches.get((user_id, network))
        if w is not None and w.stream is not None:
            await w.stream.wait_ready(within)

    # --- fills --------------------------------------------------------------------------

    async def _report_fill(self, w: _Watch, ex: Execution) -> None:
        async with w.lock:
            if ex.exec_id in w.reported:
                return
            w.reported[ex.exec_id] = None
            if len(w.reported) > REPORTED_LIMIT:
                w.reported.popitem(last=False)
            text, kind = await self._describe_fill(w, ex)
            await self._send(w.user_id, text, kind)
            if w.cursor is not None and w.cursor.advance(ex):
                await self._save_cursor(w)
        if ex.ord_status == "Filled" and ex.cl_ord_id and ":" not in ex.cl_ord_id:
            self._spawn(self._exits_after_entry(w, ex), f"exits-{ex.cl_ord_id}")

    def _raw_execution(self, w: _Watch, exec_id: str) -> dict[str, Any]:
        """The socket's full row (orderQty, cumQty, avgPx are not on `Execution`)."""
        tables = getattr(w.source, "tables", None) or getattr(w.source, "_tables", None) or {}
        table = tables.get("execution")
        row = table.get(exec_id) if table is not None else None
        return dict(row) if row else {}

    async def _instrument(self, network: str, symbol: str) -> Instrument | None:
        try:
            return await self.svc.market(network).instrument(symbol)
        except Exception:  # formatting falls back to plain numbers
            return None

    async def _describe_fill(self, w: _Watch, ex: Execution) -> tuple[str, str]:
        raw = self._raw_execution(w, ex.exec_id)
        order_qty, cum = _dec(raw.get("orderQty")), _dec(raw.get("cumQty"))
        avg = _dec(raw.get("avgPx"))
        complete = ex.ord_status == "Filled"
        inst = await self._instrument(w.network, ex.symbol)
        px = fmt.price(inst, ex.last_px)
        sym = html.escape(ex.symbol)
        side = html.escape(ex.side)
        typ = html.escape(ex.ord_type.lower() or "order")
        qty = _qty(ex.last_qty)
        part = "" if complete or order_qty is None else f" ({_qty(cum)}/{_qty(order_qty)})"
        pnl = ""
        exit_leg = EXIT_RE.match(ex.cl_ord_id or "")
        liquidation = "liquidation" in ex.text.lower() or ex.ord_type == "Liquidation"
        closing = exit_leg is not None or liquidation or any(
            x in str(raw.get("execInst") or "") for x in ("ReduceOnly", "Close"))
        # On an opening fill realised PnL is only the fee: noise, not news.
        if closing and ex.realised_pnl and ex.settl_currency:
            sign = "+" if ex.realised_pnl > 0 else "−"
            pnl = f" · PnL {sign}{fmt.money(abs(ex.realised_pnl), ex.settl_currency)}"
        tag = f" · {html.escape(w.network)}"
        if liquidation:
            held = "long" if ex.side == "Sell" else "short"
            return (f"💥 <b>Position liquidated</b>: your {held} {qty} {sym} was closed "
                    f"at {px}{pnl}{tag}", "liquidation")
        if exit_leg is not None and exit_leg["leg"] == "sl":
            return f"🛑 <b>Stop-loss hit</b>: {side} {qty} {sym} @ {px}{part}{pnl}{tag}", "fill"
        if exit_leg is not None:
            return (f"🎯 <b>Take-profit {exit_leg['n']} hit</b>: {side} {qty} {sym} @ {px}"
                    f"{part}{pnl}{tag}", "fill")
        if ex.ord_type in STOP_TYPES and ex.order_id not in w.triggered:
            # The trigger itself was not seen (paper, or while reconnecting): say it now.
            w.triggered.add(ex.order_id)
            state = "filled" if complete else "partly filled"
            return (f"⚡ <b>Stop triggered</b> and {state}: {side} {qty} {sym} @ {px}"
                    f"{part} ({typ}){pnl}{tag}", "fill")
        if complete:
            avg_note = ""
            if avg is not None and cum is not None and cum != ex.last_qty:
                avg_note = f" · {_qty(cum)} in all, avg {fmt.price(inst, avg)}"
            return (f"✅ <b>Order filled</b>: {side} {qty} {sym} @ {px} ({typ}){avg_note}"
                    f"{pnl}{tag}", "fill")
        of = f"{qty}/{_qty(order_qty)}" if order_qty is not None else qty
        if cum is not None and order_qty is not None:
            of = f"{_qty(cum)}/{_qty(order_qty)}"
        return f"🟢 Filled {of} {sym} @ {px} ({side.lower()}, {typ}){pnl}{tag}", "fill"

    async def _on_table(self, w: _Watch, table: str, action: str,
                        rows: list[dict[str, Any]]) -> None:
        """Stop triggers: execType TriggeredOrActivatedBySystem rows (the typed callbacks
        only carry fills)."""
        if w.closed or table != "execution" or action != "insert":
            return
        for row in rows:
            if row.get("execType") != TRIGGERED:
                continue
            order_id = str(row.get("orderID") or "")
            if not order_id or order_id in w.triggered:
                continue
            w.triggered.add(order_id)
            if EXIT_RE.match(str(row.get("clOrdID") or "")):
                continue  # the bot's own SL: told when it fills, as "Stop-loss hit"
            symbol = str(row.get("symbol") or "")
            inst = await self._instrument(w.network, symbol)
            stop = fmt.price(inst, _dec(row.get("stopPx")))
            qty = _qty(_dec(row.get("orderQty")))
            typ = html.escape(str(row.get("ordType") or "stop").lower())
            await self._send(
                w.user_id,
                f"⚡ <b>Stop triggered</b>: {html.escape(str(row.get('side') or ''))} {qty} "
                f"{html.escape(symbol)} · stop {stop} ({typ}) · {html.escape(w.network)}",
                "order")

    async def _on_order(self, w: _Watch, order: Order) -> None:
        if order.ord_status == "Canceled" and "cancel all after" in order.text.lower():
            inst = await self._instrument(w.network, order.symbol)
            price = f" @ {fmt.price(inst, order.price)}" if order.price is not None else ""
            await self._send(
                w.user_id,
                f"💀 <b>Dead-man's switch fired</b>: cancelled {html.escape(order.side)} "
                f"{_qty(order.order_qty)} {html.escape(order.symbol)}{price} "
                f"({html.escape(order.ord_type.lower())}) · {html.escape(w.network)}",
                "deadman")

    async def _exits_after_entry(self, w: _Watch, ex: Execution) -> None:
        """A card's entry filled: place its TP/SL unless the press itself already did."""
        from bot.trading import CONFIRMED, PLACED, Plan

        trading = self.svc.trading
        row = await trading.card_by_cl_ord_id(ex.cl_ord_id)
        if row is None or row.id is None:
            return
        plan = Plan.from_json(row.intent)
        if not (plan.tps or plan.sl is not None):
            return
        deadline = time.monotonic() + ENTRY_SETTLE_WAIT
        while row.state == CONFIRMED and time.monotonic() < deadline:
            # The press is still placing the entry; it decides from the POST's answer.
            await asyncio.sleep(0.05)
            row = await trading.card_by_cl_ord_id(ex.cl_ord_id) or row
        if row.state != PLACED or row.intent.get("exits_placed"):
            return
        if row.intent.get("status") == "Filled":
            return  # filled at once: Trading placed the exits itself after the POST
        card_id = row.id
        assert card_id is not None
        lock = self._exit_locks.setdefault(card_id, asyncio.Lock())
        async with lock:
            try:
                placed = await trading.place_exits(card_id)
            except Rejected as e:
                # Already there (a restart between placing and recording): nothing to add.
                log.info("exits for card %s not placed: %s", row.id, e.message)
                return
            except (ExchangeError, UserError) as e:
                reason = e.message if isinstance(e, ExchangeError) else str(e)
                await self._send(w.user_id, "⚠️ Your entry filled but I could not place its "
                                 f"TP/SL: {html.escape(reason)}. Please set them yourself.",
                                 "order")
                return
        if not placed:
            return
        inst = await self._instrument(w.network, plan.symbol or "")
        parts = []
        if plan.sl is not None:
            parts.append(f"SL {fmt.price(inst, plan.sl)}")
        parts += [f"TP{i + 1} {fmt.price(inst, tp)}" for i, tp in enumerate(plan.tps)]
        await self._send(w.user_id, f"🎯 Exits placed for {html.escape(plan.summary)}: "
                         + " · ".join(parts), "order")

    # --- liquidation warning ------------------------------------------------------------

    async def _on_position(self, w: _Watch, pos: Position) -> None:
        pct = self._liq_pct.get(w.user_id)
        symbol = pos.symbol
        if pos.current_qty == 0:
            w.liq_warned.discard(symbol)
            return
        mark, liq = pos.mark_price, pos.liquidation_price
        if pct is None or mark is None or liq is None or mark <= 0 or liq <= 0:
            return
        distance = abs(mark - liq) / mark * 100
        if symbol in w.liq_warned:
            if distance >= pct + REARM_POINTS:
                w.liq_warned.discard(symbol)
            return
        if distance > pct:
            return
        w.liq_warned.add(symbol)
        inst = await self._instrument(w.network, symbol)
        side = "long" if pos.current_qty > 0 else "short"
        await self._send(
            w.user_id,
            f"⚠️ <b>Liquidation near</b>: {html.escape(symbol)} mark {fmt.price(inst, mark)} is "
            f"{fmt.pct(distance, signed=False)} from your liquidation price "
            f"{fmt.price(inst, liq)} ({side} {_qty(abs(pos.current_qty))}, "
            f"{html.escape(w.network)}). /liqalert changes this warning.",
            "liqalert")

    async def set_liq_alert(self, user_id: int, percent: Decimal | None) -> str:
        """`/liqalert N% | off`; returns the answer to show."""
        async with self.svc.db.session() as s:
            user = await s.get(User, user_id) or User(id=user_id)
            user.liq_alert_pct = percent
            s.add(user)
            await s.commit()
        self._liq_pct[user_id] = percent
        for (uid, _), w in self._watches.items():
            if uid == user_id:
                w.liq_warned.clear()  # a new threshold is judged afresh
        if percent is None:
            return "🔕 Liquidation warnings are off. <code>/liqalert 10%</code> turns them on."
        return (f"🔔 I'll warn you when the mark price comes within {fmt.num(percent)} % of "
                "one of your liquidation prices (once each time; again after it moves "
                f"{fmt.num(REARM_POINTS)} point away).")

    # --- dead-man's switch --------------------------------------------------------------

    async def _trading_networks(self, user_id: int) -> list[str]:
        return [a.network for a in await self.svc.accounts.list(user_id) if a.can_trade]

    async def set_deadman(self, user_id: int, seconds: int | None) -> str:
        """`/deadman SECONDS | off`: arm (or disarm) cancelAllAfter on every trading account."""
        networks = await self._trading_networks(user_id)
        if not networks:
            raise UserError("The dead-man's switch works on your exchange account: connect a "
                            "key with Order permission first (/connect testnet).")
        timeout = 0 if seconds is None else seconds * 1000
        done, failed = [], []
        for net in networks:
            try:
                ex = await self.svc.accounts.exchange(user_id, net)
                await ex.cancel_all_after(timeout)
                done.append(net)
            except ExchangeError as e:
                failed.append(f"{net}: {e.message}")
        if not done:
            raise UserError("BitMEX did not accept the dead-man's switch ("
                            + html.escape("; ".join(failed)) + "). Please try again.")
        async with self.svc.db.session() as s:
            user = await s.get(User, user_id) or User(id=user_id)
            user.deadman_seconds = seconds
            s.add(user)
            await s.commit()
        now = time.monotonic()
        for key in [k for k in self._dm_state if k[0] == user_id]:
            del self._dm_state[key]
        if seconds is None:
            self._deadman.pop(user_id, None)
            self._dm_next.pop(user_id, None)
            text = ("💀 Dead-man's switch is <b>off</b>: your open orders stay on BitMEX "
                    "even if I go down.")
        else:
            self._deadman[user_id] = seconds
            for net in done:
                self._dm_state[(user_id, net)] = _DeadmanState(last_ok=now)
            self._dm_next[user_id] = now + self._period(seconds)
            text = (f"💀 Dead-man's switch is <b>on</b> ({', '.join(done)}): I refresh it every "
                    f"{fmt.num(Decimal(str(round(self._period(seconds), 1))))} s; if I can't "
                    f"for {seconds} s, BitMEX cancels your open orders.")
        if failed:
            text += "\nNot set on " + html.escape("; ".join(failed)) + "."
        self._dm_wake.set()
        return text

    def _period(self, seconds: int) -> float:
        return min(self.deadman_interval, seconds / 4)

    def set_refresh_interval(self, seconds: float) -> None:
        """The dead-man refresh period (at most SECONDS/4 per user); wakes the loop."""
        self.deadman_interval = seconds
        now = time.monotonic()
        for uid, secs in self._deadman.items():
            self._dm_next[uid] = min(self._dm_next.get(uid, now), now + self._period(secs))
        self._dm_wake.set()

    def pause_deadman(self, paused: bool = True) -> None:
        """Stop (or resume) refreshing, as if the bot had died; for tests and drills."""
        self._dm_paused = paused
        self._dm_wake.set()

    async def refresh_deadman(self, user_id: int | None = None) -> None:
        """One refresh of every armed switch (or one user's): what the loop runs when due."""
        users = [user_id] if user_id is not None else list(self._deadman)
        await asyncio.gather(*(self._refresh_user(uid) for uid in users if uid in self._deadman))

    async def _refresh_user(self, user_id: int) -> None:
        seconds = self._deadman.get(user_id)
        if seconds is None:
            return
        self._dm_next[user_id] = time.monotonic() + self._period(seconds)
        try:
            networks = await self._trading_networks(user_id)
        except Exception:
            log.exception("dead-man: could not list accounts of %s", user_id)
            return
        for net in networks:
            state = self._dm_state.setdefault((user_id, net),
                                              _DeadmanState(last_ok=time.monotonic()))
            try:
                ex = await self.svc.accounts.exchange(user_id, net)
                await ex.cancel_all_after(seconds * 1000)
            except (ExchangeError, UserError) as e:
                state.failures += 1
                log.warning("dead-man refresh failed for %s on %s (%d): %s", user_id, net,
                            state.failures, e)
                if state.failures >= DEADMAN_WARN_AFTER and not state.warned:
                    state.warned = True
                    left = max(0, round(seconds - (time.monotonic() - state.last_ok)))
                    await self._send(
                        user_id,
                        f"⚠️ The dead-man's switch could not be refreshed — your orders on "
                        f"{html.escape(net)} may be cancelled in {left} s.", "deadman")
                continue
            if state.warned:
                await self._send(user_id, f"✅ The dead-man's switch on {html.escape(net)} "
                                 "is refreshed again.", "deadman")
            state.failures, state.warned, state.last_ok = 0, False, time.monotonic()

    async def _deadman_loop(self) -> None:
        while True:
            try:
                now = time.monotonic()
                due = [uid for uid in self._deadman if self._dm_next.get(uid, now) <= now]
                if due and not self._dm_paused:
                    await asyncio.gather(*(self._refresh_user(uid) for uid in due))
                    continue
                nexts = [t for uid, t in self._dm_next.items() if uid in self._deadman]
                wait = self.deadman_interval if self._dm_paused or not nexts else max(
                    0.0, min(nexts) - time.monotonic())
                self._dm_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dm_wake.wait(), wait)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep refreshing whatever one pass ran into
                log.exception("dead-man refresh loop")
                await asyncio.sleep(1.0)

    # --- plumbing -----------------------------------------------------------------------

    async def _send(self, user_id: int, text: str, kind: str) -> None:
        if not self.svc.is_allowed(user_id):
            # Revoked while running: nothing more is told, and the streams are closed.
            for key in [k for k in self._watches if k[0] == user_id]:
                self._spawn(self.unwatch(*key), f"unwatch-{user_id}-{key[1]}")
            return
        notifier = self.svc.notifier
        if notifier is None:
            log.warning("no notifier yet: a %s message for %s was not sent", kind, user_id)
            return
        try:
            await notifier.send(user_id, text, kind=kind)
        except Exception:  # the stream must keep going whatever delivery ran into
            log.exception("could not deliver a %s message to %s", kind, user_id)

    async def _load_cursor(self, user_id: int, network: str) -> Cursor | None:
        async with self.svc.db.session() as s:
            row = (await s.exec(select(LiveCursor).where(
                LiveCursor.user_id == user_id, LiveCursor.network == network))).first()
        if row is None:
            return None
        return Cursor(row.last_exec_at, list(row.last_exec_ids or []))

    async def _save_cursor(self, w: _Watch) -> None:
        if w.cursor is None:
            return
        async with self.svc.db.session() as s:
            row = (await s.exec(select(LiveCursor).where(
                LiveCursor.user_id == w.user_id, LiveCursor.network == w.network))).first()
            if row is None:
                if await s.get(User, w.user_id) is None:
                    s.add(User(id=w.user_id))
                row = LiveCursor(user_id=w.user_id, network=w.network)
            row.last_exec_at = w.cursor.at
            row.last_exec_ids = list(w.cursor.ids)
            row.updated_at = datetime.now(UTC)
            s.add(row)
            await s.commit()

    async def _delete_cursor(self, user_id: int, network: str) -> None:
        async with self.svc.db.session() as s:
            row = (await s.exec(select(LiveCursor).where(
                LiveCursor.user_id == user_id, LiveCursor.network == network))).first()
            if row is not None:
                await s.delete(row)
                await s.commit()

