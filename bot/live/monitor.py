"""/monitor (issue #14 item 7): one message per open position that the bot edits in place.

Driven by what the bot already receives, never by polling BitMEX per user: the private
stream's position updates (BitMEX sends one whenever the mark moves the position's
numbers) and the account's order updates (the exits shown). A message is edited only when
its rendered text changed, and at most once per `monitor_interval` seconds (Telegram
limits edits per chat; the delivery queue paces what is left): an update that comes sooner
is kept and shown when the interval is over, so the last state always reaches the chat.
The messages are stored (`MonitorMessage`), so a restarted bot goes on editing them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlmodel import col, delete, select

from bot import fmt
from bot.db.models import MonitorMessage
from bot.errors import ExchangeError, UserError
from bot.exchange.types import Instrument, Order, Position, to_unit
from bot.live.base import STOP_TYPES, LiveBase, Watch
from bot.notify import Edited
from bot.trading.stops import position_buttons

log = logging.getLogger(__name__)

MONITOR_INTERVAL = 3.0  # seconds between two edits of one message, at least
FUNDING_HOURS = (4, 12, 20)  # BitMEX perpetual funding, UTC
CLOSED = "closed"


@dataclass
class MonitorState:
    """One monitored position's message, as the chat shows it now."""

    row_id: int
    user_id: int
    chat_id: int
    network: str
    symbol: str
    message_id: int
    text: str
    last_edit: float = float("-inf")
    latest: Position | None = None
    exits: list[str] | None = None  # None: to be read again (an order changed)
    flush: asyncio.Task[None] | None = field(default=None, repr=False)
    pinned: bool = False  # pinned by /monitor pin: /monitor off unpins it


def next_funding(now: datetime) -> datetime:
    """The next funding time of a BitMEX perpetual after `now` (every 8 h from 04:00 UTC)."""
    day = now.replace(minute=0, second=0, microsecond=0)
    for days in (0, 1):
        for hour in FUNDING_HOURS:
            at = day.replace(hour=hour) + timedelta(days=days)
            if at > now:
                return at
    raise AssertionError("unreachable")  # pragma: no cover


def _until(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    return f"{minutes // 60}h {minutes % 60:02d}m"


def exit_lines(orders: Sequence[Order], inst: Instrument | None) -> list[str]:
    """The position's exits in force: reduce-only (or Close) orders, stops first."""
    exits = [o for o in orders if o.is_open and ("ReduceOnly" in o.exec_inst
                                                 or "Close" in o.exec_inst)]
    stops = [f"SL {fmt.price(inst, o.stop_px)}" for o in exits
             if o.ord_type in STOP_TYPES and o.stop_px is not None]
    tps = [f"TP {fmt.price(inst, o.price)}" for o in exits
           if o.ord_type not in STOP_TYPES and o.price is not None]
    return stops + tps


def monitor_text(pos: Position, inst: Instrument | None, network: str, exits: list[str],
                 now: datetime, usd_per_coin: Decimal | None) -> str:
    """What a monitor message shows for `pos` (HTML). Only what a trader reads at a glance;
    everything shown is what decides whether the message is edited."""
    px = fmt.price
    if pos.current_qty == 0:
        return (f"📡 <b>{html.escape(pos.symbol)}</b> · {html.escape(network)}\n"
                f"Position {CLOSED}. This message is no longer updated.")
    lev = "cross" if pos.cross_margin else f"{fmt.num(pos.leverage)}x"
    lines = [f"📡 <b>{html.escape(pos.symbol)}</b> {pos.side.lower()} "
             f"{fmt.num(abs(pos.current_qty))} · {lev} · {html.escape(network)}",
             f"mark {px(inst, pos.mark_price)} · entry {px(inst, pos.avg_entry_price)}"]
    upnl = fmt.money(pos.unrealised_pnl, pos.currency)
    if usd_per_coin is not None:
        usd = to_unit(pos.unrealised_pnl, pos.currency) * usd_per_coin
        upnl += f" (${fmt.num(usd, 2)})"
    roe = ""
    if pos.pos_margin:
        roe = f" · ROE {fmt.pct(Decimal(pos.unrealised_pnl) / Decimal(pos.pos_margin) * 100)}"
    lines.append(f"uPnL {upnl}{roe}")
    if pos.liquidation_price and pos.mark_price:
        dist = abs(pos.liquidation_price - pos.mark_price) / pos.mark_price * 100
        lines.append(f"liquidation {px(inst, pos.liquidation_price)} "
                     f"({fmt.pct(dist, signed=False)} away)")
    if inst is not None and inst.is_perpetual:
        rate = (f" · rate {fmt.pct(inst.funding_rate * 100, 4)}"
                if inst.funding_rate is not None else "")
        # BitMEX's own time when it sent one (a future it announced); else its schedule
        at = inst.funding_at if inst.funding_at is not None and inst.funding_at > now \
            else next_funding(now)
        lines.append(f"funding in {_until(at - now)}{rate}")
    lines.append("exits: " + (" · ".join(exits) if exits else "none"))
    return "\n".join(lines)


class PositionMonitor(LiveBase):
    """`/monitor`, `/monitor off`, and the edits that keep the messages current."""

    monitor_interval: float = MONITOR_INTERVAL
    monitor_clock: Callable[[], float] = staticmethod(time.monotonic)
    monitor_sleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)
    monitor_now: Callable[[], datetime] = staticmethod(lambda: datetime.now(UTC))

    def _monitors(self) -> dict[tuple[int, str, str], MonitorState]:
        # Kept on the instance without touching LiveBase's constructor (one owner each).
        mons: dict[tuple[int, str, str], MonitorState] | None = self.__dict__.get("_mon")
        if mons is None:
            mons = self.__dict__["_mon"] = {}
        return mons

    async def load_monitors(self) -> None:
        """At start-up: the stored messages are edited again from the next update on."""
        async with self.db.session() as s:
            rows = (await s.exec(select(MonitorMessage))).all()
        for r in rows:
            assert r.id is not None
            self._monitors()[(r.user_id, r.network, r.symbol)] = MonitorState(
                r.id, r.user_id, r.chat_id, r.network, r.symbol, r.message_id, r.text,
                pinned=r.pinned)
            await self._watch_market(r.network, r.symbol)

    async def start_monitor(self, user_id: int, chat_id: int) -> str:
        """`/monitor`: post one message per open position of the active account."""
        acc = await self.accounts.require_active(user_id)
        ex = await self.accounts.exchange(user_id, acc.network)
        positions = [p for p in await ex.positions() if p.current_qty != 0]
        if not positions:
            raise UserError(f"No open positions to monitor ({acc.network}).")
        await self._drop_monitors(user_id)  # one set at a time: the old ones stop
        orders = await ex.open_orders()
        for pos in positions:
            await self._watch_market(acc.network, pos.symbol)
            inst = await self._monitor_instrument(acc.network, pos.symbol)
            exits = exit_lines([o for o in orders if o.symbol == pos.symbol], inst)
            text = monitor_text(pos, inst, acc.network, exits, self.monitor_now(),
                                await self._usd_per_coin(acc.network, pos))
            sent = await self.notifier.send(chat_id, text,
                                            buttons=position_buttons(pos, inst))
            if sent is None:
                continue
            row = MonitorMessage(user_id=user_id, chat_id=chat_id, network=acc.network,
                                 symbol=pos.symbol, message_id=sent.message_id, text=text)
            async with self.db.session() as s:
                s.add(row)
                await s.commit()
                await s.refresh(row)
            assert row.id is not None
            self._monitors()[(user_id, acc.network, pos.symbol)] = MonitorState(
                row.id, user_id, chat_id, acc.network, pos.symbol, sent.message_id, text,
                last_edit=self.monitor_clock(), exits=exits)
        n = len(positions)
        return (f"📡 Monitoring {n} position{'' if n == 1 else 's'} on {acc.network}: the "
                "messages above keep themselves up to date. /monitor off stops them; "
                "/monitor pin pins them.")

    async def stop_monitor(self, user_id: int) -> str:
        """`/monitor off`."""
        if not await self._drop_monitors(user_id):
            return "The monitor is not running."
        return "📡 Monitor off: those messages are no longer updated."

    def monitor_messages(self, user_id: int) -> list[tuple[int, int]]:
        """(chat id, message id) of the user's monitor messages, for pinning."""
        return [(m.chat_id, m.message_id) for m in self._monitors().values()
                if m.user_id == user_id]

    async def monitor_pinned(self, user_id: int, pinned: list[tuple[int, int]]) -> None:
        """Remember which monitor messages /monitor pin pinned: /monitor off unpins them
        (stored, so also after a restart)."""
        ids = []
        for m in self._monitors().values():
            if m.user_id == user_id and (m.chat_id, m.message_id) in pinned:
                m.pinned = True
                ids.append(m.row_id)
        if not ids:
            return
        async with self.db.session() as s:
            for row in (await s.exec(select(MonitorMessage).where(
                    col(MonitorMessage.id).in_(ids)))).all():
                row.pinned = True
                s.add(row)
            await s.commit()

    def pinned_monitors(self, user_id: int) -> list[tuple[int, int]]:
        """(chat id, message id) of the user's monitor messages the bot pinned."""
        return [(m.chat_id, m.message_id) for m in self._monitors().values()
                if m.user_id == user_id and m.pinned]

    async def refresh_monitor(self, user_id: int, chat_id: int, message_id: int) -> bool:
        """Refresh pressed under a monitor message: shown again from BitMEX now (exits and
        position re-read); False when it is not one of the user's monitor messages."""
        state = next((m for m in self._monitors().values() if m.user_id == user_id
                      and (m.chat_id, m.message_id) == (chat_id, message_id)), None)
        if state is None:
            return False
        try:
            ex = await self.accounts.exchange(user_id, state.network)
            pos = next((p for p in await ex.positions() if p.symbol == state.symbol), None)
        except (ExchangeError, UserError) as e:
            log.info("monitor: %s not refreshed: %s", state.symbol, e)
            return True
        if pos is None and state.latest is not None:
            pos = dataclasses.replace(state.latest, current_qty=Decimal(0))  # closed since
        if pos is None:
            return True
        state.latest, state.exits = pos, None
        await self._monitor_flush(state)
        return True

    async def _drop_monitors(self, user_id: int) -> int:
        mons = self._monitors()
        keys = [k for k in mons if k[0] == user_id]
        for k in keys:
            state = mons.pop(k)
            if state.flush is not None:
                state.flush.cancel()
        async with self.db.session() as s:
            await s.exec(delete(MonitorMessage).where(col(MonitorMessage.user_id) == user_id))
            await s.commit()
        return len(keys)

    # --- updates ----------------------------------------------------------------------

    async def _monitor_position(self, w: Watch, pos: Position) -> None:
        state = self._monitors().get((w.user_id, w.network, pos.symbol))
        if state is None:
            return
        state.latest = pos
        if pos.current_qty == 0:  # final: shown at once, then forgotten
            await self._monitor_flush(state)
            return
        await self._monitor_due(state)

    async def _monitor_tick(self, network: str, inst: Instrument) -> None:
        """A shared market socket's instrument update: the funding rate and its time are
        shown from it (the position's own numbers come with its updates)."""
        for state in list(self._monitors().values()):
            if (state.symbol == inst.symbol and state.latest is not None
                    and self.hub.network_of(state.network) == network):
                await self._monitor_due(state)

    async def _watch_market(self, network: str, symbol: str) -> None:
        """Subscribe the symbol on the shared market socket (one per network, rule 6)."""
        if not self.__dict__.get("_mon_ticks"):
            self.__dict__["_mon_ticks"] = True
            self.hub.on_tick(self._monitor_tick)
        try:
            await self.hub.watch(self.hub.network_of(network), symbol)
        except Exception as e:  # the position updates alone still keep it current
            log.info("monitor: no market socket for %s on %s: %s", symbol, network, e)

    async def _monitor_due(self, state: MonitorState) -> None:
        wait = state.last_edit + self.monitor_interval - self.monitor_clock()
        if wait <= 0:
            await self._monitor_flush(state)
        elif state.flush is None or state.flush.done():
            state.flush = asyncio.create_task(self._monitor_later(state, wait),
                                              name=f"monitor-{state.row_id}")
            self._tasks.add(state.flush)  # cancelled by close() like every live task
            state.flush.add_done_callback(self._tasks.discard)

    async def _monitor_order(self, w: Watch, order: Order) -> None:
        state = self._monitors().get((w.user_id, w.network, order.symbol))
        if state is not None:
            state.exits = None  # read again at the next edit

    async def _monitor_later(self, state: MonitorState, wait: float) -> None:
        await self.monitor_sleep(wait)
        try:
            await self._monitor_flush(state)
        except Exception:  # a failed edit must not end the monitor
            log.exception("monitor edit of %s failed", state.symbol)

    async def _monitor_flush(self, state: MonitorState) -> None:
        pos = state.latest
        key = (state.user_id, state.network, state.symbol)
        if pos is None or self._monitors().get(key) is not state:
            return
        inst = await self._monitor_instrument(state.network, state.symbol)
        if state.exits is None and pos.current_qty != 0:
            state.exits = await self._read_exits(state, inst)
        text = monitor_text(pos, inst, state.network, state.exits or [], self.monitor_now(),
                            await self._usd_per_coin(state.network, pos))
        closed = pos.current_qty == 0
        if closed:  # forgotten first: nothing, not even a restart, edits it after this
            await self._forget_monitor(key, state)
        if text != state.text:  # nothing visible changed: no edit at all
            stamp = self.monitor_clock()  # the interval runs from the edit's start
            edited = await self.notifier.edit(
                state.chat_id, state.message_id, text,
                buttons=None if closed else position_buttons(pos, inst))
            if edited is Edited.GONE and not closed:
                # Deleted by the user: that is "stop", and every later edit would fail.
                log.info("monitor message of %s was deleted: monitor stopped", state.symbol)
                await self._forget_monitor(key, state)
            elif edited and not closed:
                state.text, state.last_edit = text, stamp
                await self._store_text(state)

    async def _forget_monitor(self, key: tuple[int, str, str], state: MonitorState) -> None:
        if self._monitors().get(key) is state:
            self._monitors().pop(key)
        if state.pinned:  # /monitor pin pinned it: a closed position leaves the pin bar
            state.pinned = False
            await self.notifier.unpin(state.chat_id, state.message_id)
        async with self.db.session() as s:
            await s.exec(delete(MonitorMessage).where(col(MonitorMessage.id) == state.row_id))
            await s.commit()

    async def _store_text(self, state: MonitorState) -> None:
        async with self.db.session() as s:
            row = await s.get(MonitorMessage, state.row_id)
            if row is not None:
                row.text, row.updated_at = state.text, datetime.now(UTC)
                s.add(row)
                await s.commit()

    async def _read_exits(self, state: MonitorState, inst: Instrument | None) -> list[str]:
        try:
            ex = await self.accounts.exchange(state.user_id, state.network)
            return exit_lines(await ex.open_orders(state.symbol), inst)
        except (ExchangeError, UserError) as e:
            log.info("monitor: exits of %s not read: %s", state.symbol, e)
            return []

    async def _monitor_instrument(self, network: str, symbol: str) -> Instrument | None:
        # The shared market socket's row when it has one (live funding rate), else the
        # public contract list (cached by the client).
        live = self.hub.instrument(network, symbol)
        return live or await self._instrument(network, symbol)

    async def _usd_per_coin(self, network: str, pos: Position) -> Decimal | None:
        """The USD value of one settlement coin: 1 for USDT, the XBT price for XBt."""
        cur = pos.currency.lower()
        if cur in ("usdt", "usdc"):
            return Decimal(1)
        if cur != "xbt":
            return None
        if pos.symbol.startswith("XBTUSD") and pos.mark_price:
            return pos.mark_price
        inst = await self._monitor_instrument(network, "XBTUSD")
        return inst.mark_price if inst is not None else None

