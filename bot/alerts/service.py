"""The alert service: alerts in the database, the index in memory, messages out.

Life of an alert: `create` validates and stores it (state ``active``) and adds it
to the `AlertIndex`; every instrument tick of the shared market stream goes
through `on_instrument`, which asks the index what fired. A one-shot alert is
then marked ``fired`` by one ``UPDATE ... WHERE state='active'`` *before* its
message goes out, so it fires exactly once even when a delete, a second tick or
a restart races it. Telling it is recorded as closely as the process can know it
(a crash can land anywhere, and Telegram has no idempotency key):
``fired``: the message is at most queued, never asked for (the next start sends it);
``sending`` (with `sending_at`): the request went on the wire, the answer is not in
(the next start sends it again, marked as a possible repeat, see `REPEATED`);
``sent``: Telegram answered with the message (never sent again). Move alerts are
recurring (see the index): they stay ``active`` and only their `fired_at` moves.

Prices are mainnet's (paper trades on mainnet prices too): last traded price,
the mark price when no trade is known. Funding thresholds are kept as BitMEX's
fraction (0.0005 = 0.05 %).
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import func, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from bot import fmt
from bot import parse as it
from bot.alerts.index import AlertIndex, Direction, Fired, FundingAlert, MoveAlert, PriceAlert
from bot.buttons import DeleteAlert, button
from bot.db.engine import Database, copy_text_value, is_postgres
from bot.db.models import Alert, User
from bot.errors import UserError
from bot.exchange.types import Instrument
from bot.notify import ON_WIRE, REPEATED, Keyboard, Notifier

log = logging.getLogger(__name__)

AlertIntent = it.PriceAlert | it.MoveAlert | it.FundingAlert
Quote = Callable[[str], Awaitable[Instrument | None]]

WINDOW_SECONDS: dict[str, int] = {"15m": 900, "1h": 3600, "4h": 14400, "24h": 86400}
WINDOW_NAMES = {v: k for k, v in WINDOW_SECONDS.items()}
MAX_PER_CHAT = 100
MAX_PER_USER = 200
LISTING_BUDGET = 3800  # characters of /alerts, under Telegram's 4096 after entities
# A fired alert whose message did not go out is delivered at the next start,
# unless it is older than this: a day-old "above 100k" is news no more.
REDELIVER_WITHIN = timedelta(hours=24)
_SQL_CHUNK = 500
# What start-up reads of each active alert: what the index keeps, and the chat (revoked?).
_LOAD_SQL = ("SELECT id, chat_id, kind, symbol, direction, threshold, window_seconds "
             "FROM alerts WHERE state = 'active'")
# The same on PostgreSQL (COPY text), less the chat: the revoked ones are left out by SQL.
_COPY_SQL = ("SELECT id, kind, symbol, direction, threshold, window_seconds "
             "FROM alerts WHERE state = 'active'")
_CHATS_SQL = "SELECT DISTINCT chat_id FROM alerts WHERE state = 'active' AND chat_id > 0"


class AlertInfo(NamedTuple):
    """What the service reads of an alert to write its message (a tuple: made straight
    from a row of `_INFO_COLUMNS`)."""

    id: int
    chat_id: int
    user_id: int
    kind: str
    symbol: str
    direction: str | None
    threshold: Decimal
    window_seconds: int | None
    note: str | None
    thread_id: int | None = None  # the forum topic it was set in; None = General

    @classmethod
    def of(cls, row: Alert) -> AlertInfo:
        assert row.id is not None
        return cls(row.id, row.chat_id, row.user_id, row.kind, row.symbol, row.direction,
                   row.threshold, row.window_seconds, row.note, row.thread_id)


_INFO_COLUMNS = tuple(col(getattr(Alert, name)) for name in AlertInfo._fields)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _price_of(inst: Instrument) -> Decimal | None:
    return inst.last_price if inst.last_price is not None else inst.mark_price


def funding_pct(rate: Decimal) -> str:
    """0.0005 -> "0.05 %" (as BitMEX's site shows it)."""
    return f"{fmt.num(rate * 100, 4)} %".replace("-", "−")


class AlertService:
    """Create, list and delete alerts; evaluate them on every tick; send what fired."""

    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        *,
        quote: Quote | None = None,
        watch: Callable[[str], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        network: str = "mainnet",
        max_per_chat: int = MAX_PER_CHAT,
        max_per_user: int = MAX_PER_USER,
        allowed: Callable[[int], bool] = lambda _uid: True,
    ) -> None:
        self.db = db
        # ALLOWED_USER_IDS: a revoked user's private alerts stay stored but never fire
        # (they come back if the user is allowed again).
        self.allowed = allowed
        self._notifier = notifier
        self._quote = quote
        self._watch = watch
        self.clock = clock
        self.network = network
        self.max_per_chat = max_per_chat
        self.max_per_user = max_per_user
        self.index = AlertIndex()
        self._instruments: dict[str, Instrument] = {}
        self._specs: dict[str, Instrument] = {}  # quoted at creation: the tick, for describe()
        self._deliveries: set[asyncio.Task[None]] = set()
        # Answers that arrive together (a tick's alerts in many chats) share one commit.
        self._sent = GroupCommit(self._mark_sent)
        self.sent = 0  # messages handed to the notifier, for tests and benchmarks
        self.fired = 0  # alerts that fired (exactly once each), for the metrics

    # --- start ----------------------------------------------------------------------------

    async def start(self) -> int:
        """Load active alerts into the index, subscribe their symbols, deliver leftovers."""
        loaded, symbols = await self._load_active()
        async with self.db.session() as s:
            since = self.clock() - REDELIVER_WITHIN
            stranded = (await s.exec(select(Alert).where(
                col(Alert.state).in_(("fired", "sending")),
                col(Alert.fired_at) >= since).order_by(col(Alert.id)))).all()
        stranded = [r for r in stranded if not self._revoked(AlertInfo.of(r))]
        for symbol in sorted(symbols):
            await self._subscribe(symbol)
        if stranded:
            log.info("delivering %d alerts fired before the last stop", len(stranded))
            # One whose request was on the wire when the process died ('sending') is sent
            # again with bot.notify.REPEATED: a trader would rather see a marked possible
            # duplicate than miss "XBTUSD below 58,000" (a one-shot alert is gone once
            # fired: one not re-sent is never told at all). Only this window gets the
            # marker: before the request (queued, paced) nothing was sent, and after the
            # answer the row is 'sent'.
            self._spawn([(AlertInfo.of(r), self.message(AlertInfo.of(r), None)
                          + (REPEATED if r.state == "sending" else ""))
                         for r in stranded])
        return loaded

    async def _load_active(self) -> tuple[int, set[str]]:
        """Every active alert into the index: a million in a few seconds.

        Plain rows in chunks (`Database.bulk_rows`; on PostgreSQL columns of COPY text,
        `Database.bulk_text`), only the columns the index needs, no ORM object, no spec
        object, no Decimal (the index reads the threshold's text). Returns the count and
        the symbols they watch."""
        loader = self.index.bulk_loader()
        allowed: dict[int, bool] = {}
        if is_postgres(self.db.url):
            # COPY text, a column at a time: the driver's rows would cost more than the
            # whole load (bench/alerts_load.py). The chats are asked first, in the same
            # snapshot, and a revoked user's left out by the server.
            def unrevoked(chats: list[Any]) -> str:
                revoked = [chat_id for (chat_id,) in chats if not self.allowed(chat_id)]
                # ints off the database, written back as ints: nothing to quote
                return f" AND chat_id NOT IN ({', '.join(map(str, revoked))})" if revoked else ""

            # Closed (its connection given back) even when a bad row raises mid-load.
            async with aclosing(self.db.bulk_text(
                    _COPY_SQL, probe=(_CHATS_SQL, unrevoked))) as chunks:
                async for columns in chunks:
                    ids, kinds, symbols, directions, thresholds, windows = columns
                    loader.add_columns(ids, kinds, symbols, directions, thresholds, windows,
                                       copy_text_value)
            return loader.finish(), loader.symbols
        add = loader.add
        async for rows in self.db.bulk_rows(_LOAD_SQL):
            for alert_id, chat_id, kind, symbol, direction, threshold, window in rows:
                if chat_id > 0:  # a revoked user's private alerts stay stored, not loaded
                    ok = allowed.get(chat_id)
                    if ok is None:
                        ok = allowed[chat_id] = self.allowed(chat_id)
                    if not ok:
                        continue
                add(alert_id, kind, symbol, direction, threshold, window)
        return loader.finish(), loader.symbols

    async def _subscribe(self, symbol: str) -> None:
        if self._watch is not None:
            try:
                await self._watch(symbol)
            except Exception:
                # The socket retries by itself; the alert is stored and loaded regardless.
                log.exception("could not subscribe %s for alerts", symbol)

    # --- create / list / delete -----------------------------------------------------------

    async def create(self, user_id: int, chat_id: int, intent: AlertIntent,
                     thread_id: int | None = None) -> AlertInfo:
        """Validate and store one alert; it is live in the index when this returns."""
        symbol = intent.symbol or await self._default_symbol(user_id)
        inst = await self._current(symbol)
        kind, direction, threshold, window, note = self._validate(intent, symbol, inst)
        async with self.db.session() as s:
            per_chat = (await s.exec(select(func.count()).select_from(Alert).where(
                Alert.state == "active", Alert.chat_id == chat_id))).one()
            if per_chat >= self.max_per_chat:
                raise UserError(f"This chat has {per_chat} alerts, the most it can hold. "
                                "Delete some with /unalert first.")
            per_user = (await s.exec(select(func.count()).select_from(Alert).where(
                Alert.state == "active", Alert.user_id == user_id))).one()
            if per_user >= self.max_per_user:
                raise UserError(f"You have {per_user} alerts, the most allowed. "
                                "Delete some with /unalert first.")
            if await s.get(User, user_id) is None:
                # Group admins may never have written to the bot privately.
                s.add(User(id=user_id))
                await s.flush()
            row = Alert(user_id=user_id, chat_id=chat_id, kind=kind, symbol=symbol,
                        network=self.network, direction=direction, threshold=threshold,
                        window_seconds=window, note=note, thread_id=thread_id)
            s.add(row)
            await s.commit()
            await s.refresh(row)
        info = AlertInfo.of(row)
        self.index.load([_spec(info)])
        await self._subscribe(symbol)
        return info

    async def _default_symbol(self, user_id: int) -> str:
        async with self.db.session() as s:
            user = await s.get(User, user_id)
        return user.default_symbol if user is not None else "XBTUSD"

    async def _current(self, symbol: str) -> Instrument | None:
        inst = self._instruments.get(symbol)
        if inst is None and self._quote is not None:
            try:
                inst = await self._quote(symbol)
                if inst is not None:
                    self._specs[symbol] = inst
            except Exception:
                # No quote only means the "already past it" check is skipped.
                log.warning("no quote for %s while creating an alert", symbol)
                inst = None
        return inst

    def _validate(
        self, intent: AlertIntent, symbol: str, inst: Instrument | None
    ) -> tuple[str, str | None, Decimal, int | None, str | None]:
        if isinstance(intent, it.MoveAlert):
            if not 0 < intent.percent < 100:
                raise UserError("A move alert needs a percentage between 0 and 100, like 5%.")
            return "move", None, intent.percent, WINDOW_SECONDS[intent.window], None
        if isinstance(intent, it.FundingAlert):
            rate = intent.rate
            now_rate = inst.funding_rate if inst is not None else None
            if now_rate is not None and _past(intent.direction, now_rate, rate):
                raise UserError(
                    f"{symbol} funding is already {intent.direction} {funding_pct(rate)} "
                    f"(now {funding_pct(now_rate)}), so the alert would fire at once.")
            return "funding", intent.direction, rate, None, None
        if intent.price <= 0:
            raise UserError("An alert price must be above zero.")
        now = _price_of(inst) if inst is not None else None
        if now is not None and _past(intent.direction, now, intent.price):
            raise UserError(
                f"{symbol} is already {intent.direction} {fmt.price(inst, intent.price)} "
                f"(now {fmt.price(inst, now)}), so the alert would fire at once. "
                f"Did you mean {'below' if intent.direction == 'above' else 'above'}?")
        return "price", intent.direction, intent.price, None, intent.note

    async def for_chat(self, chat_id: int) -> list[AlertInfo]:
        """Active alerts of a chat (a user's private chat, or a group), oldest first."""
        async with self.db.session() as s:
            rows = (await s.exec(select(Alert).where(
                Alert.state == "active", Alert.chat_id == chat_id).order_by(
                col(Alert.id)))).all()
        return [AlertInfo.of(r) for r in rows]

    async def delete(self, chat_id: int, alert_id: int) -> AlertInfo:
        """Delete one active alert of this chat; UserError when there is none."""
        async with self.db.session() as s:
            row = await s.get(Alert, alert_id)
            if row is None or row.chat_id != chat_id or row.state != "active":
                raise UserError(f"No active alert #{alert_id} here. /alerts lists them.")
            result = await s.exec(update(Alert).where(
                col(Alert.id) == alert_id, col(Alert.state) == "active").values(
                state="deleted"))
            await s.commit()
            if result.rowcount != 1:
                raise UserError(f"Alert #{alert_id} has just fired or was deleted.")
        info = AlertInfo.of(row)
        self._forget(alert_id)
        return info

    async def delete_all(self, chat_id: int) -> int:
        """Delete every active alert of this chat; returns how many."""
        async with self.db.session() as s:
            ids = list((await s.exec(select(Alert.id).where(
                Alert.state == "active", Alert.chat_id == chat_id))).all())
            if ids:
                await s.exec(update(Alert).where(
                    col(Alert.id).in_(ids), col(Alert.state) == "active").values(
                    state="deleted"))
                await s.commit()
        for alert_id in ids:
            if alert_id is not None:
                self._forget(alert_id)
        return len(ids)

    def _revoked(self, a: AlertInfo) -> bool:
        """A private alert of a user no longer in ALLOWED_USER_IDS (groups keep theirs)."""
        return a.chat_id > 0 and not self.allowed(a.chat_id)

    def _forget(self, alert_id: int) -> None:
        self.index.remove(alert_id)

    # --- evaluation -----------------------------------------------------------------------

    async def on_instrument(self, network: str, inst: Instrument) -> None:
        """A market-hub listener: every instrument update of `network`."""
        if network != self.network:
            return
        self._instruments[inst.symbol] = inst
        price = _price_of(inst)
        fired: list[Fired] = []
        if price is not None:
            fired += self.index.on_tick(inst.symbol, price, inst.timestamp or self.clock())
        if inst.funding_rate is not None:
            fired += self.index.on_funding(inst.symbol, inst.funding_rate)
        if fired:
            await self.fire(fired)

    async def on_tick(self, symbol: str, price: Decimal, at: datetime | None = None) -> int:
        """Feed one price directly (tests, benchmarks); returns how many alerts fired."""
        fired = self.index.on_tick(symbol, price, at or self.clock())
        if fired:
            await self.fire(fired)
        return len(fired)

    async def fire(self, fired: Iterable[Fired]) -> None:
        """Mark one-shot alerts fired (exactly once), then queue their messages.

        What a message says (chat, note, topic) is read here, with the marking, rather than
        held in memory for every alert: a million alerts would keep 300 MB for the few that
        ever fire, and take seconds more to load."""
        fired = list(fired)
        now = self.clock()
        won: set[int] = set()
        infos: dict[int, AlertInfo] = {}
        try:
            async with self.db.session() as s:
                ids = [f.alert_id for f in fired]
                for i in range(0, len(ids), _SQL_CHUNK):
                    rows = (await s.exec(sa_select(  # type: ignore[call-overload]
                        *_INFO_COLUMNS, col(Alert.state)).where(
                        col(Alert.id).in_(ids[i:i + _SQL_CHUNK])))).all()
                    # Deleted (or fired) meanwhile: not news any more. A revoked user's
                    # private alert is left active in the database and out of the index
                    # until a restart (which does not load it while they are revoked).
                    infos.update((info.id, info) for *values, state in rows
                                 if state == "active" and not self._revoked(
                                     info := AlertInfo._make(values)))
                gone = [f for f in fired if f.alert_id not in infos]
                for f in gone:
                    self.index.remove(f.alert_id)  # a move still there; one-shots are out
                fired = [f for f in fired if f.alert_id in infos]
                once = [f.alert_id for f in fired if f.kind != "move"]
                for i in range(0, len(once), _SQL_CHUNK):
                    chunk = once[i:i + _SQL_CHUNK]
                    # The WHERE on state makes this the one place an alert can fire: a
                    # concurrent delete, or a stale index after a restart, loses the race.
                    result = await s.exec(update(Alert).where(
                        col(Alert.id).in_(chunk), col(Alert.state) == "active").values(
                        state="fired", fired_at=now).returning(col(Alert.id)))
                    won.update(result.scalars().all())
                moves = [f.alert_id for f in fired if f.kind == "move"]
                if moves:
                    await s.exec(update(Alert).where(
                        col(Alert.id).in_(moves)).values(fired_at=now))
                await s.commit()
        except Exception:
            # Nothing was marked (the transaction rolled back), but the index has already
            # dropped the one-shot alerts: put them back, so the next tick tries again
            # instead of the alert going quiet until a restart.
            log.exception("could not mark %d fired alert(s); they stay armed", len(fired))
            self.index.rearm(f for f in fired if f.kind != "move")
            return
        # Words are fixed now: "now 100,012.5" is the price that fired it, not a later one.
        batch = [(infos[f.alert_id], self.message(infos[f.alert_id], f)) for f in fired
                 if f.kind == "move" or f.alert_id in won]
        self.fired += len(batch)
        if batch:
            self._spawn(batch)

    def _spawn(self, batch: list[tuple[AlertInfo, str]]) -> None:
        # Delivery runs beside the socket loop, so a slow chat never delays the next tick.
        task = asyncio.create_task(self._deliver(batch), name="alert-delivery")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, batch: list[tuple[AlertInfo, str]]) -> None:
        # At start-up, leftovers fire before the Telegram side is attached: the notifier
        # (bot/relay.py behind the delivery queue) holds them until it is.
        notifier = self._notifier
        by_chat: dict[int, list[tuple[AlertInfo, str]]] = {}
        for info, text in batch:
            by_chat.setdefault(info.chat_id, []).append((info, text))

        async def to_chat(items: list[tuple[AlertInfo, str]]) -> None:
            # One chat's alerts in order; chats side by side, so one slow or paced
            # chat does not hold back everyone else's alerts of the same tick.
            for info, text in items:
                once = info.kind != "move"
                token = ON_WIRE.set(self._on_wire(info.id) if once else None)
                try:
                    sent = await notifier.send(info.chat_id, text, kind="alert",
                                               thread_id=info.thread_id)
                except Exception:
                    # Left 'fired' (or 'sending', if it went out): the next start tries again.
                    log.exception("alert #%d could not be delivered", info.id)
                    continue
                finally:
                    ON_WIRE.reset(token)
                if sent is None and getattr(notifier, "closed", False):
                    # The queue stopped (shutdown) with this one still waiting, or cut
                    # off in flight: it stays 'fired' (or 'sending'), so the next start
                    # delivers it instead of losing it.
                    log.info("alert #%d waits for the next start", info.id)
                    continue
                undelivered = getattr(notifier, "undelivered", None)
                if sent is None and undelivered is not None and undelivered(info.chat_id):
                    # Refused (bot kicked or blocked, or given up on): Telegram's answer
                    # says it was not delivered, so 'fired' again, for the next start.
                    log.info("alert #%d was not delivered to %s", info.id, info.chat_id)
                    if once:
                        await self._mark([info.id], "fired", ("sending",))
                    continue
                self.sent += 1
                if once:
                    # Recorded now, as the answer arrives, not once the whole batch is out:
                    # a crash later must not make this one look unsent.
                    try:
                        await self._sent.add(info.id)
                    except Exception:  # told, not recorded: the next start repeats it
                        log.exception("alert #%d was told but could not be marked sent",
                                      info.id)

        await asyncio.gather(*(to_chat(items) for items in by_chat.values()))

    def _on_wire(self, alert_id: int) -> Callable[[], Awaitable[None]]:
        async def sending() -> None:
            # Committed before the request leaves: a crash from here on is "maybe told".
            try:
                await self._mark([alert_id], "sending", ("fired", "sending"),
                                 sending_at=self.clock())
            except Exception:
                # The message still goes: if the process dies now, the row says 'fired'
                # and the repeat comes unmarked, which beats holding the alert back.
                log.exception("alert #%d: could not record its request", alert_id)
        return sending

    async def _mark(self, ids: list[int], state: str, source: tuple[str, ...],
                    **values: object) -> None:
        async with self.db.session() as s:
            for i in range(0, len(ids), _SQL_CHUNK):
                await s.exec(update(Alert).where(
                    col(Alert.id).in_(ids[i:i + _SQL_CHUNK]),
                    col(Alert.state).in_(source)).values(state=state, **values))
            await s.commit()

    async def _mark_sent(self, ids: list[int]) -> None:
        await self._mark(ids, "sent", ("fired", "sending"))

    async def drain(self) -> None:
        """Wait for the deliveries under way (tests, shutdown)."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    async def close(self) -> None:
        await self.drain()

    async def move_chat(self, old: int, new: int) -> int:
        """A group became a supergroup: its alerts post to the new id; rows moved."""
        async with self.db.session() as s:
            result = await s.exec(update(Alert).where(col(Alert.chat_id) == old)
                                  .values(chat_id=new))
            await s.commit()
        return int(result.rowcount or 0)

    # --- words ------------------------------------------------------------------------------

    def describe(self, a: AlertInfo, note_limit: int = 200) -> str:
        """One line for /alerts and for the confirmation: "#3 XBTUSD above 100,000.0"."""
        inst = self._instruments.get(a.symbol) or self._specs.get(a.symbol)
        sym = f"<b>{html.escape(a.symbol)}</b>"
        if a.kind == "move":
            window = WINDOW_NAMES.get(a.window_seconds or 0, f"{a.window_seconds}s")
            text = f"{sym} moves {fmt.num(a.threshold)} % within {window}"
        elif a.kind == "funding":
            text = f"{sym} funding {a.direction} {funding_pct(a.threshold)}"
        else:
            text = f"{sym} {a.direction} {fmt.price(inst, a.threshold)}"
        if a.note:
            note = a.note if len(a.note) <= note_limit else a.note[:note_limit - 1] + "…"
            text += f" · {html.escape(note)}"
        return f"#{a.id} {text}"

    def message(self, a: AlertInfo, fired: Fired | None) -> str:
        """🔔 XBTUSD above 100,000 — now 100,012.5 (your note)."""
        inst = self._instruments.get(a.symbol)
        sym = f"<b>{html.escape(a.symbol)}</b>"
        value = fired.value if fired is not None else None
        if a.kind == "move":
            window = WINDOW_NAMES.get(a.window_seconds or 0, f"{a.window_seconds}s")
            moved = fmt.pct(value) if value is not None else f"{fmt.num(a.threshold)} %"
            last = _price_of(inst) if inst is not None else None
            now = f" — now {fmt.price(inst, last)}" if last is not None else ""
            text = f"🔔 {sym} moved {moved} within {window}{now}"
        elif a.kind == "funding":
            now = f" — now {funding_pct(value)}" if value is not None else ""
            text = f"🔔 {sym} funding {a.direction} {funding_pct(a.threshold)}{now}"
        else:
            now = f" — now {fmt.price(inst, value)}" if value is not None else ""
            text = f"🔔 {sym} {a.direction} {fmt.price(inst, a.threshold)}{now}"
        if a.note:
            text += f" ({html.escape(a.note)})"
        return text

    def listing(self, alerts: list[AlertInfo]) -> tuple[str, Keyboard]:
        """The /alerts text and one Delete button per alert."""
        if not alerts:
            return ("No active alerts. Set one: <code>/alert btc above 100k</code>, "
                    "<code>/alert eth move 5% in 1h</code>.", [])
        # A full chat (100 alerts with 200-character notes) must still fit in one message
        # (4096 characters, or Telegram refuses it): short notes, and the rest counted.
        lines = [f"<b>Alerts</b> ({len(alerts)})"]
        size = len(lines[0])
        shown: list[AlertInfo] = []
        for a in alerts:
            line = self.describe(a, note_limit=40)
            if size + len(line) + 1 > LISTING_BUDGET:
                break
            lines.append(line)
            size += len(line) + 1
            shown.append(a)
        if len(shown) < len(alerts):
            lines.append(f"… and {len(alerts) - len(shown)} more: /unalert ID deletes one, "
                         "/unalert all every one.")
        buttons = [[button(f"🗑 Delete #{a.id}", DeleteAlert(a.id))] for a in shown]
        return "\n".join(lines), buttons


class GroupCommit:
    """`add(id)` returns once a commit holding `id` is done; ids added while one commit
    runs go in the next, together (group commit: one write per burst, none delayed)."""

    def __init__(self, write: Callable[[list[int]], Awaitable[None]]) -> None:
        self._write = write
        self._ids: list[int] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: int) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._ids.append(item)
        self._waiters.append(waiter)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="alert-sent-commit")
        await waiter

    async def _run(self) -> None:
        while self._ids:
            ids, waiters = self._ids, self._waiters
            self._ids, self._waiters = [], []
            try:
                await self._write(ids)
            except Exception as e:
                for w in waiters:
                    if not w.done():
                        w.set_exception(e)
                continue
            for w in waiters:
                if not w.done():
                    w.set_result(None)


def _past(direction: str, now: Decimal, threshold: Decimal) -> bool:
    """True when an alert of this direction would fire on `now` already."""
    return now >= threshold if direction == "above" else now <= threshold


def _spec(a: AlertInfo) -> PriceAlert | MoveAlert | FundingAlert:
    if a.kind == "move":
        assert a.window_seconds is not None
        return MoveAlert(a.id, a.symbol, a.threshold, a.window_seconds)
    direction: Direction = "above" if a.direction == "above" else "below"
    if a.kind == "funding":
        return FundingAlert(a.id, a.symbol, direction, a.threshold)
    return PriceAlert(a.id, a.symbol, direction, a.threshold)
