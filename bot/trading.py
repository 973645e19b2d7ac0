"""Preview -> confirm -> place, exactly once.

A typed command becomes an `OrderIntent` row (a *card*) holding exactly what will
be sent. Only the owner's Confirm press moves it, by one atomic UPDATE, from
`pending` to `confirmed`; whoever wins that UPDATE places the order, everyone else
(double press, concurrent press, a press after a restart or after expiry) sees the
current state. The clOrdID is stored with the intent before anything is sent, and
with it `send_by`, the last moment any attempt can still reach BitMEX. BitMEX frees a
clOrdID once its order filled, so an order whose answer was lost is never sent again:
it is looked up by its clOrdID - by the client, or after a crash by the sweep - and
only called "not placed" once `send_by` (plus a margin) is behind us.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import html
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlmodel import col

from bot import fmt
from bot.accounts import Accounts
from bot.buttons import CardAction, CardPress, button
from bot.db.engine import Database
from bot.db.models import AuditLog, OrderIntent, User
from bot.errors import (
    DuplicateClOrdID,
    ExchangeError,
    InsufficientBalance,
    NetworkError,
    NotFound,
    NotPlaced,
    OutcomeUnknown,
    Overloaded,
    RateLimited,
    Rejected,
    Temporary,
    UserError,
)
from bot.exchange import contracts
from bot.exchange.types import Exchange, Instrument, Margin, Order, Position
from bot.notify import Keyboard
from bot.parsing import intents as P
from bot.parsing.values import SizeSpec

log = logging.getLogger(__name__)

ZERO = Decimal(0)
DEFAULT_LEVERAGE = Decimal(10)

# Card states. pending/armed wait for a press; the rest are final or in flight.
PENDING, ARMED, CONFIRMED, PLACED, FAILED, EXPIRED, CANCELLED = (
    "pending", "armed", "confirmed", "placed", "failed", "expired", "cancelled",
)
WAITING = (PENDING, ARMED)
SETTLED = (PLACED, FAILED, EXPIRED, CANCELLED)
# An order sent without an answer stays `confirmed` with this note until its clOrdID is
# looked up (settle_in_flight): calling it "rejected" would invite a second order.
UNKNOWN_NOTE = ("BitMEX did not confirm in time, so the order may or may not be on the "
                "exchange. I'm looking it up by its id and will update this card; please "
                "don't place it again (/orders and /positions show the truth).")
UNKNOWN_DONE = ("BitMEX did not answer, so I can't tell whether it happened; /orders and "
                "/positions show the truth")
KEY_CHANGED = ("your {network} key changed after this card was priced (another key is "
               "connected now), so nothing was sent. Ask again for a card on the new key")
KEY_GONE = ("no {network} key is connected any more, so nothing was sent")
SETTLE_AFTER = timedelta(minutes=2)  # a card `confirmed` this long is no longer in flight
# A card's order is only sent (and signed to be valid) within this window after Confirm,
# so once it and a margin have passed, "not found by its clOrdID" means "never placed".
SEND_WINDOW = timedelta(seconds=30)
ARRIVAL_MARGIN = timedelta(seconds=10)
NOT_PLACED_NOTE = ("it never reached BitMEX (I looked it up by its id until it could no "
                   "longer arrive)")


def new_cl_ord_id() -> str:
    # 22 chars leaves room for ":sl"/":tp9" suffixes of the exits within BitMEX's 36.
    return "tg" + secrets.token_hex(10)


@dataclass(frozen=True)
class Card:
    """A message to show: HTML text and its buttons."""

    intent_id: int | None
    text: str
    buttons: Keyboard
    alert: str | None = None  # a short popup for the presser (answerCallbackQuery)


@dataclass(frozen=True)
class Press:
    """What a press decided before any exchange call (see Trading.take_press)."""

    alert: str | None  # the answer to the press, shown at once
    card: Card | None  # the card's new look; None: `execute` must send it first
    interim: Card | None = None  # what the card shows while it is being sent


@dataclass(frozen=True)
class Plan:
    """Exactly what will be sent; stored as the intent's JSON."""

    kind: str  # order | close | cancel | cancel_all | leverage
    network: str
    symbol: str | None = None
    side: str | None = None  # Buy | Sell
    qty: Decimal | None = None
    ord_type: str = "Market"
    price: Decimal | None = None
    stop_px: Decimal | None = None
    exec_inst: tuple[str, ...] = ()
    tps: tuple[Decimal, ...] = ()
    sl: Decimal | None = None
    leverage: Decimal | None = None  # None: leave as is; 0: cross
    order_ids: tuple[str, ...] = ()
    usd: Decimal | None = None
    summary: str = ""  # the card's headline, for the outcome edits

    def to_json(self) -> dict[str, Any]:
        def enc(v: Any) -> Any:
            if isinstance(v, Decimal):
                return str(v)
            if isinstance(v, tuple):
                return [enc(x) for x in v]
            return v

        return {k: enc(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        def dec(v: Any) -> Decimal | None:
            return None if v is None else Decimal(v)

        return cls(
            kind=data["kind"], network=data["network"], symbol=data.get("symbol"),
            side=data.get("side"), qty=dec(data.get("qty")),
            ord_type=data.get("ord_type", "Market"), price=dec(data.get("price")),
            stop_px=dec(data.get("stop_px")), exec_inst=tuple(data.get("exec_inst") or ()),
            tps=tuple(Decimal(x) for x in data.get("tps") or ()), sl=dec(data.get("sl")),
            leverage=dec(data.get("leverage")), order_ids=tuple(data.get("order_ids") or ()),
            usd=dec(data.get("usd")), summary=data.get("summary", ""),
        )


def _buttons(intent_id: int, confirm_label: str = "Confirm", action: CardAction = "c"
             ) -> Keyboard:
    return [[button(f"✅ {confirm_label}", CardPress(action, intent_id)),
             button("✖️ Cancel", CardPress("x", intent_id))]]


def plain_reason(err: ExchangeError) -> str:
    """The exchange's words, made readable for a trader on a phone."""
    msg = err.message.strip().rstrip(".")
    low = msg.lower()
    if isinstance(err, InsufficientBalance) or "insufficient available balance" in low:
        return f"not enough available margin ({msg})"
    if "invalid orderqty" in low or "lotsize" in low.replace(" ", ""):
        return f"the size is not allowed by the contract ({msg})"
    if "ticksize" in low.replace(" ", ""):
        return f"the price is not on the contract's tick ({msg})"
    if "post-only" in low or "participatedonotinitiate" in low.replace(" ", ""):
        return "post-only order would have filled immediately, so it was cancelled"
    return msg


def _never_reached(err: ExchangeError, kind: str) -> str | None:
    """Why a failed send certainly never reached BitMEX's engine; None when it may have."""
    if isinstance(err, RateLimited):
        return (f"BitMEX asked us to slow down for your key (retry in about "
                f"{max(1, round(err.retry_after))} s)")
    if isinstance(err, Overloaded):
        return "BitMEX is overloaded and did not take it"
    if kind in ("order", "close") or type(err) is NetworkError:
        # place_order turns every maybe-sent failure into OutcomeUnknown, so for an order
        # what is left never went out (a plain NetworkError is a failed connect).
        return "BitMEX did not answer"
    return None


class Trading:
    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        *,
        mainnet_confirm_usd: Decimal = Decimal(10_000),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.mainnet_confirm_usd = mainnet_confirm_usd
        self.now = now
        # (kind, outcome) -> confirmed cards, read by the metrics at scrape time.
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()

    # --- previews ---------------------------------------------------------------

    async def _user(self, user_id: int) -> User:
        async with self.db.session() as s:
            user = await s.get(User, user_id)
        return user or User(id=user_id)

    async def _instrument(self, ex: Exchange, symbol: str) -> Instrument:
        try:
            return await ex.instrument(symbol)
        except NotFound as e:
            raise UserError(f"Unknown symbol {html.escape(symbol)} on this exchange.") from e
        # Anything else (503, timeout, 429) is not the symbol's fault: it reaches the
        # error handler, which says BitMEX is not answering instead of "unknown symbol".

    @staticmethod
    async def _instrument_or_none(ex: Exchange, symbol: str) -> Instrument | None:
        """For a price's tick precision only: a plain format is better than no card."""
        try:
            return await ex.instrument(symbol)
        except ExchangeError:
            return None

    async def _priced(self, ex: Exchange, symbol: str) -> Instrument:
        """The contract with today's quote: the instrument list is cached for a minute,
        and a card's price, cost, size from $ or % and liquidation must not be that old."""
        inst = await self._instrument(ex, symbol)
        t = await ex.ticker(symbol)
        return dataclasses.replace(
            inst, last_price=t.last or inst.last_price, mark_price=t.mark or inst.mark_price,
            bid_price=t.bid or inst.bid_price, ask_price=t.ask or inst.ask_price)

    async def preview_order(self, user_id: int, chat_id: int, o: P.Order, *,
                            sized: bool = False) -> Card:
        """Size, round and check an order; store it as a pending card. `sized`: the size
        is already in contracts (a feed's sizing), never re-read in the /settings unit."""
        acc = await self.accounts.require_active(user_id, trading=True)
        user = await self._user(user_id)
        ex = await self.accounts.exchange(user_id, acc.network)
        symbol = (o.symbol or user.default_symbol).upper()
        inst = await self._priced(ex, symbol)
        side = "Buy" if o.side == "buy" else "Sell"
        notes: list[str] = []
        warnings: list[str] = []

        ref = self._reference_price(inst, side, o.price, o.stop_px)
        if ref is None:
            raise UserError(f"No price for {symbol} yet; try again in a moment.")

        price = stop_px = None
        if o.price is not None:
            r = contracts.round_price(inst, o.price)
            price = r.value
            if r.changed:
                notes.append(f"price {fmt.num(o.price)} → {fmt.price(inst, price)} "
                             f"(tick {fmt.num(inst.tick_size)})")
        if o.stop_px is not None:
            r = contracts.round_price(inst, o.stop_px)
            stop_px = r.value
            if r.changed:
                notes.append(f"stop {fmt.num(o.stop_px)} → {fmt.price(inst, stop_px)}")

        positions = {p.symbol: p for p in await ex.positions()}
        pos = positions.get(symbol)
        leverage = o.leverage
        if leverage is not None and not (Decimal("0.01") <= leverage <= 100):
            raise UserError("Leverage must be between 0.01 and 100.")
        # BitMEX keeps a leverage setting per symbol even when flat; a symbol never traded
        # is cross. Previews must show what the exchange will actually do.
        cross = leverage is None and (pos is None or pos.cross_margin)
        iso_lev = leverage if leverage is not None else (
            pos.leverage if pos is not None and not cross and pos.leverage > 0 else None)
        eff_lev = iso_lev or DEFAULT_LEVERAGE
        margins = {m.currency: m for m in await ex.margins()}
        m = margins.get(inst.settl_currency)

        size = o.size
        unit = str((user.notify_prefs or {}).get("unit") or "contracts")
        if size.kind == "contracts" and unit in ("usd", "coin") and not sized:
            # A bare number means the user's chosen unit (/settings unit usd|coin).
            size = (SizeSpec("usd", size.value) if unit == "usd"
                    else SizeSpec("coin", size.value, inst.underlying))
            notes.append(f"{fmt.num(o.size.value)} read as "
                         f"{'USD' if unit == 'usd' else inst.underlying} (/settings unit)")
        # `10%` on cross means 10 % of the balance as notional (1x), never 100x of it.
        raw_qty = await self._contracts(ex, inst, size, ref, iso_lev or Decimal(1))
        rq = contracts.round_qty(inst, raw_qty)
        qty = rq.value
        shown_raw = raw_qty.quantize(Decimal("0.01"))
        if rq.changed and qty > 0 and shown_raw != qty:  # never "size 500 → 500"
            notes.append(f"size {fmt.num(shown_raw)} → {fmt.num(qty)} "
                         f"contracts (lot {fmt.num(inst.lot_size)})")

        blocked = False
        if qty <= 0:
            warnings.append(f"the size is below one lot ({fmt.num(inst.lot_size)} contracts) "
                            "— BitMEX would reject it")
            blocked = True
        if qty > inst.max_order_qty:
            warnings.append(f"the size is above BitMEX's maximum order of "
                            f"{fmt.num(inst.max_order_qty)} contracts")
            blocked = True

        tps = tuple(contracts.round_price(inst, t).value for t in o.tps)
        sl = contracts.round_price(inst, o.sl).value if o.sl is not None else None
        self._check_exits(side, ref if price is None else price, tps, sl)

        exec_inst: list[str] = []
        if o.post_only:
            exec_inst.append("ParticipateDoNotInitiate")
        if o.reduce_only:
            exec_inst.append("ReduceOnly")
        ord_type = {"market": "Market", "limit": "Limit", "stop": "Stop",
                    "stop_limit": "StopLimit"}[o.order_type]

        entry = price or stop_px or ref
        signed = qty if side == "Buy" else -qty
        pos_qty = pos.current_qty if pos is not None else ZERO
        # Only the part that opens or adds needs margin; closing part of an opposite
        # position first frees some.
        opening = qty if pos_qty == 0 or (pos_qty > 0) == (signed > 0) else max(
            ZERO, qty - abs(pos_qty))
        value_units = abs(contracts.inst_value(inst, qty, entry)) if qty > 0 else ZERO
        open_units = abs(contracts.inst_value(inst, opening, entry)) if opening > 0 else ZERO
        if qty <= 0:
            margin_units = ZERO
        elif cross:
            margin_units = open_units * inst.init_margin  # cross orders reserve initial margin
        else:
            margin_units = open_units / eff_lev
        if o.reduce_only and qty > 0 and opening == qty:
            wanted = "short" if side == "Buy" else "long"
            warnings.append(f"reduce-only, but you have no {wanted} {symbol} position for it "
                            "to reduce — BitMEX would cancel it")
        usd = self._usd(inst, qty, entry, ref)
        if usd is None and qty > 0 and contracts.needs_xbt_price(inst):
            usd = await self._quanto_usd(ex, inst, value_units)
        if not o.reduce_only and qty > 0 and m is not None and margin_units > m.available_margin:
            warnings.append(f"needs ≈ {fmt.money(margin_units, inst.settl_currency)} margin but "
                            f"only {fmt.money(m.available_margin, inst.settl_currency)} is "
                            "available — BitMEX would reject it")

        type_text = {"Market": "Market", "Limit": f"Limit {fmt.price(inst, price)}",
                     "Stop": f"Stop {fmt.price(inst, stop_px)}",
                     "StopLimit": f"Stop {fmt.price(inst, stop_px)} → "
                                  f"Limit {fmt.price(inst, price)}"}[ord_type]
        flags = [f for f, on in (("post-only", o.post_only), ("reduce-only", o.reduce_only)) if on]
        head = f"{side.upper()} {fmt.num(qty)} {symbol} · {type_text} · {acc.network}"
        if flags:  # part of the headline, so the outcome edits keep saying it
            head += f" · {', '.join(flags)}"
        lines = [f"<b>{html.escape(head)}</b>"]
        lev_text = "cross" if cross else f"{fmt.num(eff_lev)}x"
        if qty > 0:
            lines.append(
                f"≈ {fmt.money(value_units, inst.settl_currency)} "
                f"(price ≈ {fmt.price(inst, entry)}) · {lev_text} · "
                f"margin ≈ {fmt.money(margin_units, inst.settl_currency)}"
            )
            if usd is not None:
                lines[-1] += f" · ${fmt.num(usd, 0)}"
            if not o.reduce_only:
                lines.extend(self._liq_line(inst, signed + pos_qty,
                                            self._entry_after(inst, pos, signed, entry),
                                            None if cross else eff_lev, m, from_px=entry))
        exits = []
        if tps:
            exits.append("TP " + ", ".join(fmt.price(inst, t) for t in tps))
        if sl is not None:
            exits.append(f"SL {fmt.price(inst, sl)}")
        if exits:
            lines.append(" · ".join(exits) + " (reduce-only, after entry fills)")
        if notes:
            lines.append("Rounded: " + "; ".join(notes))
        for w in warnings:
            lines.append(f"⚠️ {w}")

        plan = Plan(
            kind="order", network=acc.network, symbol=symbol, side=side, qty=qty,
            ord_type=ord_type, price=price, stop_px=stop_px, exec_inst=tuple(exec_inst),
            tps=tps, sl=sl, leverage=leverage, usd=usd, summary=head,
        )
        return await self._store(user, chat_id, plan, lines, blocked)

    async def preview_close(self, user_id: int, chat_id: int, c: P.Close) -> Card:
        acc = await self.accounts.require_active(user_id, trading=True)
        user = await self._user(user_id)
        ex = await self.accounts.exchange(user_id, acc.network)
        open_pos = [p for p in await ex.positions() if p.current_qty != 0]
        if c.symbol is not None:
            symbol = c.symbol.upper()
            open_pos = [p for p in open_pos if p.symbol == symbol]
        elif len(open_pos) > 1:
            default = [p for p in open_pos if p.symbol == user.default_symbol]
            if not default:
                names = ", ".join(p.symbol for p in open_pos)
                raise UserError(f"You have several positions ({names}); say which: /close SYM.")
            open_pos = default
        if not open_pos:
            where = f" in {c.symbol.upper()}" if c.symbol else ""
            raise UserError(f"No open position{where} to close.")
        pos = open_pos[0]
        inst = await self._instrument(ex, pos.symbol)
        full = abs(pos.current_qty)
        if c.size is None:
            raw = full
        elif c.size.kind == "percent":
            raw = full * c.size.value / 100
        elif c.size.kind == "contracts":
            raw = c.size.value
        else:
            ref = pos.mark_price or self._reference_price(inst, "Sell", None, None) or ZERO
            raw = await self._contracts(ex, inst, c.size, ref, DEFAULT_LEVERAGE)
        qty = contracts.round_qty(inst, raw).value
        if qty <= 0:
            raise UserError(f"That rounds to 0 contracts (lot size {fmt.num(inst.lot_size)}).")
        notes = []
        shown_raw = raw.quantize(Decimal("0.01"))
        if qty < full and shown_raw != qty:  # "/close 50%" of 300 is 150: lot 100 makes 100
            notes.append(f"Rounded: size {fmt.num(shown_raw)} → {fmt.num(qty)} contracts "
                         f"(lot {fmt.num(inst.lot_size)})")
        qty = min(qty, full)
        side = "Sell" if pos.current_qty > 0 else "Buy"
        price = contracts.round_price(inst, c.price).value if c.price is not None else None
        ord_type = "Limit" if price is not None else "Market"
        part = "all" if qty == full else f"{fmt.num(qty)} of {fmt.num(full)}"
        head = (f"CLOSE {part} {pos.symbol} {pos.side.lower()} · "
                f"{'Limit ' + fmt.price(inst, price) if price else 'Market'} · {acc.network}")
        full_close = qty == full
        how = "close (whole position)" if full_close else "reduce-only"
        lines = [f"<b>{html.escape(head)}</b>",
                 f"{side} {fmt.num(qty)} {how} · entry {fmt.price(inst, pos.avg_entry_price)}"
                 f" · mark {fmt.price(inst, pos.mark_price)}"]
        if pos.avg_entry_price and pos.mark_price:
            signed = qty if pos.current_qty > 0 else -qty
            est = contracts.pnl(inst.kind, signed, pos.avg_entry_price, price or pos.mark_price,
                                inst.multiplier)
            lines.append(f"Est. PnL on this part ≈ {fmt.money(est, inst.settl_currency)}")
        lines += notes
        if not full_close:
            lines.append("⚠️ A partial close carries a size, and BitMEX refuses those while "
                         "it sheds load; closing all (/close) still goes through then.")
        # A full close is execInst Close with no quantity: the one order BitMEX still takes
        # while shedding load, and it closes whatever the position is by then.
        plan = Plan(kind="close", network=acc.network, symbol=pos.symbol, side=side, qty=qty,
                    ord_type=ord_type, price=price,
                    exec_inst=("Close",) if full_close else ("ReduceOnly",), summary=head)
        return await self._store(user, chat_id, plan, lines, False)

    async def preview_cancel(self, user_id: int, chat_id: int, ref: str | None,
                             symbol: str | None = None) -> Card:
        """Cancel one order (id prefix or /orders number) or all (optionally of a symbol)."""
        acc = await self.accounts.require_active(user_id, trading=True)
        user = await self._user(user_id)
        ex = await self.accounts.exchange(user_id, acc.network)
        orders = await ex.open_orders(symbol.upper() if symbol else None)
        if ref is None:
            if not orders:
                raise UserError("No open orders" + (f" in {symbol.upper()}." if symbol else "."))
            n = len(orders)
            head = f"CANCEL all {fmt.num(n)} open order{'' if n == 1 else 's'}" + (
                f" in {symbol.upper()}" if symbol else "") + f" · {acc.network}"
            insts = {sym: await self._instrument_or_none(ex, sym)
                     for sym in {o.symbol for o in orders[:10]}}
            lines = [f"<b>{html.escape(head)}</b>"] + [
                self.order_line(o, insts[o.symbol]) for o in orders[:10]]
            if len(orders) > 10:
                lines.append(f"… and {len(orders) - 10} more")
            plan = Plan(kind="cancel_all", network=acc.network,
                        symbol=symbol.upper() if symbol else None,
                        order_ids=tuple(o.order_id for o in orders), summary=head)
            return await self._store(user, chat_id, plan, lines, False)
        order = self.find_order(await self.sorted_orders(ex), ref)
        head = f"CANCEL order {order.order_id[:8]} · {acc.network}"
        plan = Plan(kind="cancel", network=acc.network, symbol=order.symbol,
                    order_ids=(order.order_id,), summary=head)
        inst = await self._instrument_or_none(ex, order.symbol)
        return await self._store(user, chat_id, plan,
                                 [f"<b>{html.escape(head)}</b>",
                                  html.escape(fmt.order(order, inst))], False)

    async def preview_leverage(self, user_id: int, chat_id: int,
                               lv: P.Leverage) -> Card | str:
        """Set leverage now when flat; with a position open, ask first (it moves liquidation)."""
        acc = await self.accounts.require_active(user_id, trading=True)
        user = await self._user(user_id)
        ex = await self.accounts.exchange(user_id, acc.network)
        symbol = (lv.symbol or user.default_symbol).upper()
        inst = await self._instrument(ex, symbol)
        value = ZERO if lv.value is None else lv.value
        if lv.value is not None and not (Decimal("0.01") <= lv.value <= 100):
            raise UserError("Leverage must be between 0.01 and 100, or cross.")
        shown = "cross" if value == 0 else f"{fmt.num(value)}x"
        pos = next((p for p in await ex.positions() if p.symbol == symbol), None)
        if pos is None or pos.current_qty == 0:
            try:
                await ex.set_leverage(symbol, value)
            except ExchangeError as e:
                raise UserError(f"BitMEX refused: {html.escape(plain_reason(e))}") from e
            return f"Leverage for {symbol} set to {shown} ({acc.network})."
        head = f"LEVERAGE {symbol} → {shown} · {acc.network}"
        lines = [f"<b>{html.escape(head)}</b>",
                 f"Open position {fmt.num(pos.current_qty)} @ "
                 f"{fmt.price(inst, pos.avg_entry_price)}; liquidation now "
                 f"{fmt.price(inst, pos.liquidation_price)}."]
        if value > 0 and pos.avg_entry_price:
            liq = contracts.liquidation_price(inst.kind, pos.current_qty, pos.avg_entry_price,
                                              value, inst.maint_margin)
            if liq.is_finite():
                lines.append(f"Est. liquidation after: {fmt.price(inst, liq)}")
        plan = Plan(kind="leverage", network=acc.network, symbol=symbol, leverage=value,
                    summary=head)
        return await self._store(user, chat_id, plan, lines, False)

    # --- helpers for previews -------------------------------------------------------

    @staticmethod
    def _entry_after(inst: Instrument, pos: Position | None, signed: Decimal,
                     entry: Decimal) -> Decimal:
        """The position's average entry once this order fills: adding averages (harmonic
        for inverse), reducing keeps the old entry, flipping starts at this order's."""
        pos_qty = pos.current_qty if pos is not None else ZERO
        if pos is None or pos_qty == 0 or not pos.avg_entry_price:
            return entry
        total = pos_qty + signed
        if (pos_qty > 0) == (signed > 0):
            avg = contracts.average_entry(inst.kind, [(pos_qty, pos.avg_entry_price),
                                                      (signed, entry)])
            return avg if avg is not None else entry
        if total != 0 and (total > 0) == (pos_qty > 0):
            return pos.avg_entry_price
        return entry

    async def _quanto_usd(self, ex: Exchange, inst: Instrument,
                          value_units: Decimal) -> Decimal | None:
        """A quanto's notional in USD (its value is in XBt): for the mainnet threshold."""
        try:
            xbt = await ex.instrument("XBTUSD")
        except ExchangeError:
            return None
        px = xbt.last_price or xbt.mark_price
        return value_units / Decimal(100_000_000) * px if px else None

    @staticmethod
    def _liq_line(inst: Instrument, total: Decimal, entry: Decimal, lev: Decimal | None,
                  m: Margin | None, *, from_px: Decimal | None = None) -> list[str]:
        """The liquidation estimate of the position after this order (isolated or cross);
        `entry` is the position's average entry, the distance is from `from_px`."""
        if total == 0:
            return []
        note = ""
        if lev is None:
            # Cross: the whole available balance backs the position, like a low leverage.
            backing = Decimal(m.available_margin) if m is not None else ZERO
            value = abs(contracts.inst_value(inst, total, entry))
            if backing <= 0 or value <= 0:
                return ["Cross margin: liquidation depends on your whole balance."]
            lev = value / backing
            note = " · cross, whole balance as margin"
        liq = contracts.liquidation_price(inst.kind, total, entry, lev, inst.maint_margin)
        base = from_px or entry
        # Beyond a doubling (or at zero) the number means nothing to a trader: say so.
        if not liq.is_finite() or liq <= 0 or abs(liq - base) > base:
            where = "your whole balance backs it (cross)" if note else "the margin covers it"
            return [f"Est. liquidation: none in sight — {where}"]
        dist = (liq - base) / base * 100
        return [f"Est. liquidation {fmt.price(inst, liq)} ({fmt.pct(dist)}){note}"]

    @staticmethod
    def _reference_price(inst: Instrument, side: str, price: Decimal | None,
                         stop_px: Decimal | None) -> Decimal | None:
        if price is not None:
            return price
        if stop_px is not None:
            return stop_px
        quote = inst.ask_price if side == "Buy" else inst.bid_price
        return quote or inst.last_price or inst.mark_price

    async def _contracts(self, ex: Exchange, inst: Instrument, size: Any, ref: Decimal,
                         lev: Decimal) -> Decimal:
        if size.kind == "contracts":
            return Decimal(size.value)
        if size.kind == "usd":
            xbt = None
            if contracts.needs_xbt_price(inst):
                xbt = (await ex.instrument("XBTUSD")).last_price
            return contracts.contracts_for_usd(inst, size.value, ref, xbt_usd=xbt)
        if size.kind == "coin":
            if size.coin and size.coin.upper() not in (inst.underlying.upper(),
                                                        "XBT" if inst.underlying == "XBT" else ""):
                raise UserError(f"{inst.symbol} is sized in {inst.underlying}, not {size.coin}.")
            try:
                return contracts.contracts_for_coin(inst, size.value, ref)
            except ValueError as e:
                raise UserError(str(e)) from e
        margins = {m.currency: m for m in await ex.margins()}
        m = margins.get(inst.settl_currency)
        if m is None or m.available_margin <= 0:
            raise UserError("No available margin to size a % order from.")
        return contracts.contracts_for_margin_fraction(inst, size.value / 100, m.available_margin,
                                                       ref, lev)

    @staticmethod
    def _usd(inst: Instrument, qty: Decimal, entry: Decimal, ref: Decimal) -> Decimal | None:
        if qty <= 0:
            return None
        if inst.kind == "inverse" or inst.settl_currency == "USDt":
            return contracts.usd_notional(inst, qty, entry)
        return None  # quanto: shown in XBT only

    @staticmethod
    def _check_exits(side: str, entry: Decimal, tps: tuple[Decimal, ...],
                     sl: Decimal | None) -> None:
        long = side == "Buy"
        if sl is not None and (sl >= entry if long else sl <= entry):
            where = "below" if long else "above"
            raise UserError(f"The stop-loss must be {where} the entry price "
                            f"({fmt.num(entry)}) for a {'long' if long else 'short'}.")
        for tp in tps:
            if tp <= entry if long else tp >= entry:
                where = "above" if long else "below"
                raise UserError(f"Take-profit {fmt.num(tp)} must be {where} the entry price "
                                f"({fmt.num(entry)}).")

    async def _key_tag(self, user_id: int, network: str) -> str | None:
        """A fingerprint of the key connected on `network` now (None: none is)."""
        for acc in await self.accounts.list(user_id):
            if acc.network == network:
                return hashlib.sha256(f"card-key:{acc.key_id}".encode()).hexdigest()[:16]
        return None

    async def _store(self, user: User, chat_id: int, plan: Plan, lines: list[str],
                     blocked: bool) -> Card:
        now = self.now()
        timeout = user.confirm_timeout or 60
        # The card was sized and checked against this key's account: it may only be
        # placed with the same key (see press).
        key = await self._key_tag(user.id, plan.network)
        row = OrderIntent(
            user_id=user.id, chat_id=chat_id, network=plan.network, kind=plan.kind,
            intent={**plan.to_json(), "key": key}, state=CANCELLED if blocked else PENDING,
            cl_ord_id=new_cl_ord_id(), created_at=now, expires_at=now + timedelta(seconds=timeout),
            updated_at=now, error="blocked by preview checks" if blocked else None,
        )
        async with self.db.session() as s:
            s.add(row)
            await s.commit()
            await s.refresh(row)
        assert row.id is not None
        if blocked:
            lines.append("Nothing was sent. Adjust the order and try again.")
            return Card(row.id, "\n".join(lines), [])
        lines.append(f"<i>expires in {timeout} s</i>")
        return Card(row.id, "\n".join(lines), _buttons(row.id))

    async def attach_message(self, intent_id: int, message_id: int) -> None:
        async with self.db.session() as s:
            row = await s.get(OrderIntent, intent_id)
            if row is not None:
                row.message_id = message_id
                s.add(row)
                await s.commit()

    # --- presses ------------------------------------------------------------------

    async def press(self, user_id: int, action: str, intent_id: int) -> Card:
        """A press made by other services (feeds): confirm (c), second confirm (2) or
        cancel (x). The caller shows the outcome itself, so the sweep leaves the card be."""
        taken = await self.take_press(user_id, action, intent_id)
        card = taken.card if taken.card is not None else await self.execute(intent_id)
        if card.intent_id is not None:
            await self.card_shown(card.intent_id, True)
        return card

    async def take_press(self, user_id: int, action: str, intent_id: int) -> Press:
        """The database half of a press, no exchange call: who may press, and whether the
        card is now claimed for sending. The chat answers the press with `alert` at once;
        when `card` is None, `execute` does the slow half."""
        async with self.db.session() as s:
            row = await s.get(OrderIntent, intent_id)
        if row is None:
            return Press("This card is no longer valid.", Card(None, "", []))
        if row.user_id != user_id:
            alert = "Not your order: only the person who asked can confirm or cancel it."
            return Press(alert, Card(None, "", [], alert=alert))
        plan = Plan.from_json(row.intent)
        if action == "x":
            if await self._claim(intent_id, user_id, WAITING, CANCELLED, check_expiry=False):
                await self._audit(row, "card_cancelled")
                return Press("Cancelled", Card(
                    intent_id, self._final(plan, "✖️ Cancelled — nothing was sent."), [],
                    alert="Cancelled"))
            return self._as_press(await self.current(intent_id, alert="Already handled."))
        if "key" in row.intent:  # cards stored before keys were recorded carry none
            now_key = await self._key_tag(user_id, plan.network)
            if now_key != row.intent["key"]:
                why = (KEY_CHANGED if now_key else KEY_GONE).format(network=plan.network)
                if await self._claim(intent_id, user_id, WAITING, FAILED):
                    await self._finish(intent_id, FAILED, error=why)
                    await self._audit(row, "card_refused", reason="key changed")
                    return self._as_press(
                        await self.current(intent_id, alert="Not sent: your key changed"))
                return self._as_press(await self._after_lost_claim(row))
        if action == "c" and self._needs_second(plan):
            if await self._claim(intent_id, user_id, (PENDING,), ARMED):
                size = (f"of about ${fmt.num(plan.usd, 0)} — above" if plan.usd is not None
                        else "whose USD value I could not check against")
                text = (f"<b>{html.escape(plan.summary)}</b>\n⚠️ Mainnet order {size} your "
                        f"${fmt.num(self.mainnet_confirm_usd, 0)} safety threshold.\n"
                        "Press <b>Place it</b> to send it to BitMEX.")
                return Press("Confirm once more", Card(
                    intent_id, text, _buttons(intent_id, "Place it", "2"),
                    alert="Confirm once more"))
            return self._as_press(await self._after_lost_claim(row))
        source = (ARMED,) if action == "2" else (PENDING,)
        if not await self._claim(intent_id, user_id, source, CONFIRMED):
            return self._as_press(await self._after_lost_claim(row))
        return Press("Sending to BitMEX…", None,
                     Card(intent_id, self._final(plan, "⏳ Sending to BitMEX…"), []))

    @staticmethod
    def _as_press(card: Card) -> Press:
        return Press(card.alert, card)

    async def execute(self, intent_id: int) -> Card:
        """Send a card claimed by `take_press`; the card as it should now look."""
        card = await self._execute(intent_id)
        try:
            await self._count_outcome(intent_id)
        except Exception:  # a metric must never turn a placed order into an error reply
            log.exception("could not count the outcome of intent %s", intent_id)
        return card

    async def _count_outcome(self, intent_id: int) -> None:
        """The confirmed card's outcome as the metrics name it (from its stored state)."""
        async with self.db.session() as s:
            row = await s.get(OrderIntent, intent_id)
        if row is None:
            return
        flags = row.intent
        outcome = {PLACED: "placed", CONFIRMED: "in_flight"}.get(row.state) or (
            "not_sent" if flags.get("not_sent") else "not_placed" if flags.get("not_placed")
            else "unknown" if flags.get("unknown") else "rejected")
        self.outcomes[(str(flags.get("kind", "order")), outcome)] += 1

    async def card_shown(self, intent_id: int, ok: bool) -> None:
        """The chat now shows the card's outcome (ok), or the edit failed and the sweep
        must repair it."""
        async with self.db.session() as s:
            await s.exec(update(OrderIntent).where(col(OrderIntent.id) == intent_id)
                         .values(card_stale=not ok))
            await s.commit()

    async def stale_cards(self, older_than: timedelta = timedelta(seconds=3)
                          ) -> list[OrderIntent]:
        """Cards whose outcome is known but whose message may not show it: their edit
        failed, or the process stopped before it. Young ones are still being edited by
        the press that settled them."""
        from sqlmodel import select

        q = select(OrderIntent).where(
            col(OrderIntent.card_stale).is_(True), col(OrderIntent.state).in_(SETTLED),
            col(OrderIntent.message_id).is_not(None),
            col(OrderIntent.updated_at) <= self.now() - older_than)
        async with self.db.session() as s:
            return list((await s.exec(q)).all())

    def _needs_second(self, plan: Plan) -> bool:
        # A notional the bot could not price in USD counts as large: ask twice.
        return (plan.network == "mainnet" and plan.kind == "order"
                and (plan.usd is None or plan.usd > self.mainnet_confirm_usd))

    async def _claim(self, intent_id: int, user_id: int, source: tuple[str, ...], target: str,
                     *, check_expiry: bool = True) -> bool:
        """The single atomic step that decides who acts on a card."""
        now = self.now()
        stmt = (
            update(OrderIntent)
            .where(col(OrderIntent.id) == intent_id, col(OrderIntent.user_id) == user_id,
                   col(OrderIntent.state).in_(source))
            .values(state=target, updated_at=now, card_stale=True,
                    **({"confirmed_at": now} if target == CONFIRMED else {}))
        )
        if check_expiry:
            stmt = stmt.where(col(OrderIntent.expires_at) > now)
        async with self.db.session() as s:
            result = await s.exec(stmt)
            await s.commit()
        return bool(result.rowcount == 1)

    async def _after_lost_claim(self, row: OrderIntent) -> Card:
        assert row.id is not None
        if row.state in WAITING and row.expires_at <= self.now():
            await self._claim(row.id, row.user_id, WAITING, EXPIRED, check_expiry=False)
            return await self.current(row.id, alert="This card has expired; nothing was sent.")
        return await self.current(row.id, alert="Already handled.")

    async def current(self, intent_id: int, alert: str | None = None) -> Card:
        """The card as its stored state says it should look now."""
        async with self.db.session() as s:
            row = await s.get(OrderIntent, intent_id)
        assert row is not None
        plan = Plan.from_json(row.intent)
        text = {
            EXPIRED: "⌛ Expired — nothing was sent.",
            CANCELLED: "✖️ Cancelled — nothing was sent.",
            CONFIRMED: f"⏳ {html.escape(row.error)}" if row.error else "⏳ Sending to BitMEX…",
            FAILED: (f"❌ Not sent: {html.escape(row.error or '')}. Nothing reached the "
                     "exchange; try again in a moment." if row.intent.get("not_sent")
                     else f"❌ Not placed: {html.escape(row.error or '')}. Nothing is on the "
                     "exchange; you may send it again." if row.intent.get("not_placed")
                     else f"❓ {html.escape(row.error or '')}." if row.intent.get("unknown")
                     else f"❌ Rejected: {html.escape(row.error or 'unknown reason')}"),
            PLACED: self._placed_text(plan, row),
        }.get(row.state)
        if text is None:
            return Card(intent_id, "", [], alert=alert)
        return Card(intent_id, self._final(plan, text), [], alert=alert)

    @staticmethod
    def _final(plan: Plan, outcome: str) -> str:
        return f"<b>{html.escape(plan.summary)}</b>\n{outcome}"

    @staticmethod
    def _placed_text(plan: Plan, row: OrderIntent) -> str:
        if plan.kind in ("cancel", "cancel_all", "amend_stop"):
            return f"✅ {html.escape(row.error or 'Done.')}"
        if plan.kind == "leverage":
            return "✅ Leverage changed."
        status = row.intent.get("status", "New")
        oid = (row.order_id or "")[:8]
        exits = []  # as the preview wrote them: TP first, in the stored tick precision
        if plan.tps:
            exits.append("TP " + ", ".join(_px(t) for t in plan.tps))
        if plan.sl is not None:
            exits.append(f"SL {_px(plan.sl)}")
        if status == "Filled":
            avg = row.intent.get("avg_px")
            text = f"✅ Filled · order {oid}" + (f" @ {fmt.num(Decimal(avg))}" if avg else "")
            if exits and row.intent.get("exits_placed"):
                text += "\n" + " · ".join(exits) + " placed (reduce-only)"
            elif exits and row.intent.get("exits_error"):
                text += (f"\n⚠️ {' · '.join(exits)} could not be placed: "
                         f"{html.escape(str(row.intent['exits_error']))}. Your position is "
                         "open without them; please set them yourself.")
            return text
        text = f"✅ Placed · order {oid} · {status}"
        if exits:
            text += "\n" + " · ".join(exits) + " go in when it fills"
        return text

    # --- execution ----------------------------------------------------------------

    async def _execute(self, intent_id: int) -> Card:
        async with self.db.session() as s:
            row = await s.get(OrderIntent, intent_id)
        assert row is not None and row.id is not None
        plan = Plan.from_json(row.intent)
        try:
            ex = await self.accounts.exchange(row.user_id, plan.network)
            result = await self._send(ex, row, plan)
        except NotPlaced as e:
            await self._audit(row, "order_not_placed", reason=e.message)
            if not e.looked_up:  # BitMEX kept us waiting (503s, 429s) past the send window
                await self._finish(row.id, FAILED, error="BitMEX kept refusing it for too "
                                   "long", extra={"not_sent": True})
                return await self.current(row.id, alert="Not sent")
            await self._finish(row.id, FAILED, error=NOT_PLACED_NOTE, extra={"not_placed": True})
            return await self.current(row.id, alert="Not placed")
        except OutcomeUnknown as e:
            await self._audit(row, "order_unknown", reason=e.message)
            if plan.kind in ("order", "close"):
                # It may be on BitMEX: the card stays in flight until the lookup settles it.
                await self._finish(row.id, CONFIRMED, error=UNKNOWN_NOTE)
                return await self.current(row.id, alert="No answer from BitMEX yet")
            await self._finish(row.id, FAILED, error=UNKNOWN_DONE, extra={"unknown": True})
            return await self.current(row.id, alert="No answer from BitMEX")
        except (Temporary, RateLimited) as e:
            why = _never_reached(e, plan.kind)
            await self._audit(row, "order_not_sent" if why else "order_unknown", reason=e.message)
            if why is None:  # a cancel or leverage change that may have gone through
                await self._finish(row.id, FAILED, error=UNKNOWN_DONE, extra={"unknown": True})
                return await self.current(row.id, alert="No answer from BitMEX")
            await self._finish(row.id, FAILED, error=why, extra={"not_sent": True})
            return await self.current(row.id, alert="Not sent: BitMEX is not answering")
        except ExchangeError as e:
            reason = plain_reason(e)
            await self._finish(row.id, FAILED, error=reason[:500])
            await self._audit(row, "order_failed", reason=reason)
            return await self.current(row.id, alert="Rejected")
        except UserError as e:
            await self._finish(row.id, FAILED, error=str(e)[:500])
            return await self.current(row.id, alert="Rejected")
        await self._audit(row, "order_placed", order=result.get("order_id") or "")
        return await self.current(row.id, alert="Done")

    async def _send(self, ex: Exchange, row: OrderIntent, plan: Plan) -> dict[str, Any]:
        assert row.id is not None
        if plan.kind == "leverage":
            assert plan.symbol is not None and plan.leverage is not None
            await ex.set_leverage(plan.symbol, plan.leverage)
            await self._finish(row.id, PLACED)
            return {}
        if plan.kind in ("cancel", "cancel_all"):
            results = await ex.cancel_orders(list(plan.order_ids))
            done = sum(1 for r in results if r.ok)
            failed = [r for r in results if not r.ok]
            note = f"Cancelled {_orders_word(done)}."
            if failed:
                note += f" {len(failed)} could not be cancelled ({failed[0].error})."
            await self._finish(row.id, PLACED, error=note)
            return {}
        if plan.kind == "amend_stop":
            return await self._send_amend_stop(ex, row, plan)
        assert plan.symbol and plan.side and plan.qty is not None
        if plan.leverage is not None:
            await ex.set_leverage(plan.symbol, plan.leverage)
        # Stored before sending: the settlement after a crash must know until when the
        # order could still reach BitMEX (no attempt is signed to be valid past it).
        # In BitMEX's time: it judges api-expires by its clock, not ours.
        send_by = self._send_by(row) + _exchange_offset(ex)
        await self._finish(row.id, CONFIRMED, extra={"send_by": send_by})
        # A full close names no quantity: BitMEX refuses every order with an orderQty
        # while it sheds load, a Close without one still gets through.
        qty = None if "Close" in plan.exec_inst else plan.qty
        order = await ex.place_order(
            plan.symbol, plan.side, qty, plan.ord_type, plan.price,
            stop_px=plan.stop_px, exec_inst=plan.exec_inst, cl_ord_id=row.cl_ord_id,
            text="telegram", send_by=send_by,
        )
        if order.ord_status == "Canceled" and order.cum_qty == 0:
            raise Rejected(order.text or "the exchange cancelled the order")
        extra = {"status": order.ord_status,
                 "avg_px": str(order.avg_px) if order.avg_px else None}
        await self._finish(row.id, PLACED, order_id=order.order_id, extra=extra)
        if order.ord_status == "Filled" and (plan.tps or plan.sl is not None):
            await self._exits_or_note(row.id)
        return {"order_id": order.order_id}

    def _send_by(self, row: OrderIntent) -> float:
        start = row.confirmed_at or self.now()
        if start.tzinfo is None:  # SQLite hands datetimes back naive; they are UTC
            start = start.replace(tzinfo=UTC)
        return (start + SEND_WINDOW).timestamp()

    async def _exits_or_note(self, intent_id: int) -> None:
        """Place a filled entry's TP/SL; a failure is told on the card, never turned into a
        "rejected" entry (the entry did fill)."""
        try:
            await self.place_exits(intent_id)
        except ExchangeError as e:
            log.warning("exits of intent %s not placed: %s", intent_id, e.message)
            await self._finish(intent_id, PLACED, extra={"exits_error": plain_reason(e)[:300]})

    async def _finish(self, intent_id: int, state: str, *, order_id: str | None = None,
                      error: str | None = None, extra: dict[str, Any] | None = None) -> None:
        async with self.db.session() as s:
            row = await s.get(OrderIntent, intent_id)
            assert row is not None
            row.state = state
            row.updated_at = self.now()
            if order_id is not None:
                row.order_id = order_id
            if error is not None:
                row.error = error
            if extra:
                row.intent = {**row.intent, **extra}
            s.add(row)
            await s.commit()

    async def place_exits(self, intent_id: int) -> list[Order]:
        """Reduce-only SL and TPs for a filled entry; derived clOrdIDs make this idempotent."""
        async with self.db.session() as s:
            row = await s.get(OrderIntent, intent_id)
        if row is None or row.intent.get("exits_placed"):
            return []
        plan = Plan.from_json(row.intent)
        if not (plan.tps or plan.sl is not None) or plan.qty is None or plan.symbol is None:
            return []
        ex = await self.accounts.exchange(row.user_id, plan.network)
        inst = await ex.instrument(plan.symbol)
        exit_side = "Sell" if plan.side == "Buy" else "Buy"
        wanted: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        if plan.sl is not None:
            wanted.append((f"{row.cl_ord_id}:sl", (plan.qty, "Stop"), {
                "stop_px": plan.sl, "exec_inst": ("ReduceOnly", "MarkPrice"),
                "text": "telegram sl"}))
        for i, (tp, qty) in enumerate(zip(plan.tps, split_qty(plan.qty, len(plan.tps),
                                                             inst.lot_size), strict=True)):
            if qty > 0:
                wanted.append((f"{row.cl_ord_id}:tp{i + 1}", (qty, "Limit", tp), {
                    "exec_inst": ("ReduceOnly",), "text": "telegram tp"}))
        # An exit placed by an earlier call that failed further on may have filled since,
        # and a filled order's clOrdID is free again: sending it anew would close twice.
        done = set(row.intent.get("exits_done") or [])
        tried = set(row.intent.get("exits_tried") or [])
        placed: list[Order] = []
        for cl, args, kw in wanted:
            if cl in done:
                continue
            found = await ex.order_by_cl_ord_id(cl) if cl in tried else None
            if found is not None:
                placed.append(found)
                done.add(cl)
                await self._finish(intent_id, PLACED, extra={"exits_done": sorted(done)})
                continue
            tried.add(cl)
            await self._finish(intent_id, PLACED, extra={"exits_tried": sorted(tried)})
            placed.append(await _place_exit(ex, plan.symbol, exit_side, *args,
                                            cl_ord_id=cl, **kw))
            done.add(cl)
            await self._finish(intent_id, PLACED, extra={"exits_done": sorted(done)})
        await self._finish(intent_id, PLACED, extra={"exits_placed": True})
        return placed

    # --- for other services (signal feeds): cards they size themselves ----------------

    async def preview_plan(self, user_id: int, chat_id: int, plan: Plan,
                           lines: list[str]) -> Card:
        """Store an already-built plan as a pending card: same buttons, expiry and press
        rules as every other card. Kinds: those `_send` knows, plus `amend_stop`
        (move the stop of order `order_ids[0]`, a clOrdID, to `stop_px`)."""
        user = await self._user(user_id)
        return await self._store(user, chat_id, plan, [*lines], False)

    async def _send_amend_stop(self, ex: Exchange, row: OrderIntent,
                               plan: Plan) -> dict[str, Any]:
        assert row.id is not None and plan.order_ids and plan.stop_px is not None
        order = await ex.amend_order(orig_cl_ord_id=plan.order_ids[0], stop_px=plan.stop_px)
        await self._finish(row.id, PLACED, order_id=order.order_id,
                           error=f"Stop moved to {fmt.num(plan.stop_px)}.")
        return {"order_id": order.order_id}

    async def intent_by_cl_ord_id(self, cl_ord_id: str) -> OrderIntent | None:
        from sqlmodel import select

        async with self.db.session() as s:
            return (await s.exec(select(OrderIntent).where(
                OrderIntent.cl_ord_id == cl_ord_id))).first()

    # --- upkeep -------------------------------------------------------------------

    async def expire_due(self) -> list[OrderIntent]:
        """Mark every waiting card past its time as expired; the caller edits the messages."""
        from sqlmodel import select

        now = self.now()
        async with self.db.session() as s:
            rows = (await s.exec(select(OrderIntent).where(
                col(OrderIntent.state).in_(WAITING), OrderIntent.expires_at <= now))).all()
        expired = []
        for row in rows:
            assert row.id is not None
            if await self._claim(row.id, row.user_id, WAITING, EXPIRED, check_expiry=False):
                expired.append(row)
        return expired

    async def settle_in_flight(self, older_than: timedelta | None = None) -> list[int]:
        """Cards left `confirmed` (a crash mid-send, or no answer from BitMEX) are settled
        by looking their clOrdID up; the ids whose card changed, for the caller to edit.
        Not found is final only once the order can no longer arrive (`send_by` + margin);
        before that the card says it is still being looked up.

        At start-up every such card is stale; on a timer pass `older_than` so a press that
        is still sending in this process is never touched."""
        from sqlmodel import select

        q = select(OrderIntent).where(OrderIntent.state == CONFIRMED)
        if older_than is not None:
            q = q.where(col(OrderIntent.confirmed_at) <= self.now() - older_than)
        async with self.db.session() as s:
            rows = (await s.exec(q)).all()
        settled = []
        for row in rows:
            assert row.id is not None
            plan = Plan.from_json(row.intent)
            if plan.kind != "order" and plan.kind != "close":
                # A cancel or leverage change may or may not have happened: not "rejected".
                await self._finish(row.id, FAILED, error="interrupted before BitMEX answered "
                                   "and not retried; /orders and /positions show whether it "
                                   "happened", extra={"unknown": True})
                settled.append(row.id)
                continue
            try:
                ex = await self.accounts.exchange(row.user_id, plan.network)
                order = await ex.order_by_cl_ord_id(row.cl_ord_id)
            except (ExchangeError, UserError) as e:
                log.info("intent %s still unsettled: %s", row.id, e)
                continue  # tried again on the next sweep
            if order is None:
                send_by = float(row.intent.get("send_by") or self._send_by(row))
                if _exchange_now_at_least(ex, self.now()) <= (
                        send_by + ARRIVAL_MARGIN.total_seconds()):
                    # A request still on its way (BitMEX can be seconds slow) may yet arrive:
                    # "not found" is only final once its api-expires is behind us.
                    log.info("intent %s not found yet; looked up again later", row.id)
                    if row.error != UNKNOWN_NOTE:  # say "still looking" once, not per sweep
                        await self._finish(row.id, CONFIRMED, error=UNKNOWN_NOTE)
                        settled.append(row.id)
                    continue
                await self._finish(row.id, FAILED, error=NOT_PLACED_NOTE,
                                   extra={"not_placed": True})
            elif order.ord_status in ("Canceled", "Rejected") and order.cum_qty == 0:
                await self._finish(row.id, FAILED, order_id=order.order_id,
                                   error=f"BitMEX {order.ord_status.lower()} it" + (
                                       f" ({order.text})" if order.text
                                       and not order.text.startswith("telegram") else ""))
            else:
                await self._finish(row.id, PLACED, order_id=order.order_id,
                                   extra={"status": order.ord_status,
                                          "avg_px": str(order.avg_px) if order.avg_px else None})
                await self._audit(row, "order_settled", order=order.order_id)
                if order.ord_status == "Filled" and (plan.tps or plan.sl is not None):
                    await self._exits_or_note(row.id)
            settled.append(row.id)
        return settled

    async def _audit(self, row: OrderIntent, action: str, **detail: str) -> None:
        async with self.db.session() as s:
            s.add(AuditLog(user_id=row.user_id, chat_id=row.chat_id, action=action,
                           detail={"intent": row.id, "cl_ord_id": row.cl_ord_id, **detail}))
            await s.commit()

    # --- listings -----------------------------------------------------------------

    @staticmethod
    async def sorted_orders(ex: Exchange, symbol: str | None = None) -> list[Order]:
        orders = await ex.open_orders(symbol)
        return sorted(orders, key=lambda o: (o.timestamp or datetime.min.replace(tzinfo=UTC),
                                             o.order_id))

    @staticmethod
    def find_order(orders: list[Order], ref: str) -> Order:
        if ref.isdigit() and len(ref) <= 3:
            n = int(ref)
            if 1 <= n <= len(orders):
                return orders[n - 1]
            raise UserError(f"There is no order #{n}; /orders lists {len(orders)}.")
        matches = [o for o in orders if o.order_id.startswith(ref.lower())
                   or (o.cl_ord_id and o.cl_ord_id.startswith(ref))]
        if not matches:
            raise UserError(f"No open order matches {html.escape(ref)}. See /orders.")
        if len(matches) > 1:
            raise UserError(f"{html.escape(ref)} matches {len(matches)} orders; "
                            "type more of the id.")
        return matches[0]

    @staticmethod
    def order_line(o: Order, inst: Instrument | None = None) -> str:
        return f"{html.escape(fmt.order(o, inst))} · <code>{o.order_id[:8]}</code>"


async def settle_cards(trading: Trading, notifier: Any, *,
                       older_than: timedelta | None = SETTLE_AFTER) -> int:
    """Settle in-flight cards (see `Trading.settle_in_flight`) and edit them to say how
    they ended; how many. Called once at start-up (older_than=None) and on a timer."""
    ids = await trading.settle_in_flight(older_than)
    for intent_id in ids:
        async with trading.db.session() as s:
            row = await s.get(OrderIntent, intent_id)
        if notifier is None or row is None or row.message_id is None:
            continue
        card = await trading.current(intent_id)
        if card.text:
            ok = await notifier.edit(row.chat_id, row.message_id, card.text, buttons=None)
            await trading.card_shown(intent_id, ok)
    return len(ids)


async def repair_cards(trading: Trading, notifier: Any) -> int:
    """Edit the cards whose outcome edit failed (see `Trading.stale_cards`) to show it, so
    no card of a placed order keeps its Confirm button; how many were repaired."""
    if notifier is None:
        return 0
    repaired = 0
    for row in await trading.stale_cards():
        assert row.id is not None and row.message_id is not None
        card = await trading.current(row.id)
        if not card.text:
            continue
        ok = await notifier.edit(row.chat_id, row.message_id, card.text, buttons=None)
        await trading.card_shown(row.id, ok)
        repaired += ok
    return repaired


def _exchange_offset(ex: Exchange) -> float:
    """Seconds BitMEX's clock is ahead of ours, as the client learned it (paper: 0)."""
    from bot.exchange.client import BitmexClient

    return ex.exchange_clock.offset if isinstance(ex, BitmexClient) else 0.0


def _exchange_now_at_least(ex: Exchange, now: datetime) -> float:
    """The earliest BitMEX's clock can read now: a send_by is only behind BitMEX once this
    is past it (the lookup just made taught the client the offset, if it could)."""
    from bot.exchange.client import BitmexClient

    if isinstance(ex, BitmexClient):
        return ex.exchange_time_at_least(now.timestamp())
    return now.timestamp()


def _orders_word(n: int) -> str:
    return f"{fmt.num(n)} order" + ("" if n == 1 else "s")


def _px(value: Decimal) -> str:
    """A price stored already rounded to the tick, shown with its own decimals (45,000.0)."""
    exp = value.as_tuple().exponent
    return fmt.num(value, max(0, -exp) if isinstance(exp, int) else None)


async def _place_exit(ex: Exchange, *args: Any, cl_ord_id: str, **kw: Any) -> Order:
    """Place one exit; one already there (placed before a crash, or by a racing caller,
    under the same derived clOrdID) is that order, not a failure to report."""
    try:
        return await ex.place_order(*args, cl_ord_id=cl_ord_id, **kw)
    except DuplicateClOrdID:
        found = await ex.order_by_cl_ord_id(cl_ord_id)
        if found is None:
            raise
        return found


def split_qty(total: Decimal, parts: int, lot: Decimal) -> list[Decimal]:
    """Split a size across `parts` targets in whole lots; the remainder goes to the first."""
    if parts <= 0:
        return []
    lots = int(total / lot)
    base, extra = divmod(lots, parts)
    out = [Decimal(base) * lot for _ in range(parts)]
    out[0] += Decimal(extra) * lot
    # Leftover below one lot (odd sizes) rides on the first target too.
    out[0] += total - sum(out, ZERO)
    return out

