"""Previews: size, round and check what was asked, and store it as a pending card."""

from __future__ import annotations

import dataclasses
import html
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot import fmt
from bot import parse as P
from bot.errors import ExchangeError, NotFound, UserError
from bot.exchange import contracts
from bot.exchange.types import (
    Exchange,
    Instrument,
    Margin,
    Order,
    Position,
    display_currency,
    to_unit,
)
from bot.parse.values import SizeSpec
from bot.side import Side
from bot.trading import sizing
from bot.trading.cards import ZERO, Card, CardBook, Plan, plain_reason
from bot.trading.stops import trail_offset

DEFAULT_LEVERAGE = Decimal(10)


class Previews(CardBook):
    """Turn a parsed order, close, cancel or leverage change into a pending card."""

    async def _instrument(self, ex: Exchange, symbol: str) -> Instrument:
        try:
            return await ex.instrument(symbol)
        except NotFound as e:
            raise UserError(f"Unknown symbol {html.escape(symbol)} on this exchange.") from e

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
        side = o.side
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
        sl_from = ""
        if o.sl_pct is not None:
            # `sl -2%`: from the price the position opens at, rounded away from it (never a
            # tighter stop than asked); from here on it is sized and shown like a typed one.
            base = price or stop_px or ref
            sl_px = contracts.round_price(inst, base * (1 + o.sl_pct / 100),
                                          "down" if side == "Buy" else "up").value
            sl_from = f" ({P.fmt_pct(o.sl_pct)} from {fmt.price(inst, base)})"
            if o.sl_pct > 0:
                sl_from = sl_from.replace(" (", " (+", 1)
            o = dataclasses.replace(o, sl=sl_px, sl_pct=None)

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
        risk_note: list[str] = []
        if size.kind == "risk":
            raw_qty = self._risk_contracts(inst, o, m, price or stop_px or ref, risk_note)
        else:
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
            exits.append(f"SL {fmt.price(inst, sl)}{sl_from}")
        if exits:
            lines.append(" · ".join(exits) + " (reduce-only, after entry fills)")
        lines += risk_note  # also when it rounds to 0 lots: it says what was sized from
        if sl is not None and qty > 0 and not o.reduce_only:
            lines += await self._risk_lines(ex, inst, side, qty, entry, sl, tps, m)
        if notes:
            lines.append("Rounded: " + "; ".join(notes))
        for w in warnings:
            lines.append(f"⚠️ {w}")

        plan = Plan(
            kind="order", network=acc.network, symbol=symbol, side=side, qty=qty,
            ord_type=ord_type, price=price, stop_px=stop_px, exec_inst=tuple(exec_inst),
            tps=tps, sl=sl, leverage=leverage, usd=usd, summary=head,
            peg_offset=(trail_offset(inst, o.trail, entry, side == "Buy")
                        if o.trail is not None and sl is not None else None),
        )
        if plan.peg_offset is not None:  # `sl 58k trail 1%` (bot/trading/stops.py)
            lines.insert(-1 if notes or warnings else len(lines),
                         f"The stop trails {fmt.price(inst, abs(plan.peg_offset))} behind the "
                         "mark from the fill on (BitMEX trailing stop, which sets the stop "
                         f"itself): it starts there, not at {fmt.price(inst, sl)}.")
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
        side: Side = "Sell" if pos.current_qty > 0 else "Buy"
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

    @staticmethod
    def _risk_contracts(inst: Instrument, o: P.Order, m: Margin | None, entry: Decimal,
                        notes: list[str]) -> Decimal:
        """Contracts (unrounded) that lose `risk`% of the margin balance at the stop, fees
        included; the caller rounds down to the lot, so the loss never exceeds it."""
        pct = o.size.value
        if o.sl is None:
            raise UserError("Risk sizing needs a stop-loss: add sl PRICE.")
        if pct > P.RISK_LIMIT and not o.force:
            raise UserError(f"Risk {fmt.num(pct)}% is over {fmt.num(P.RISK_LIMIT)}% of your "
                            f"margin balance. If you mean it: risk {fmt.num(pct)}% force.")
        if m is None or m.margin_balance <= 0:
            raise UserError(f"No margin balance in {display_currency(inst.settl_currency)} "
                            f"to size a risk order for {inst.symbol} from.")
        sl = contracts.round_price(inst, o.sl).value
        Previews._check_exits(o.side, entry, (), sl)
        budget = Decimal(m.margin_balance) * pct / 100
        per = sizing.loss_per_contract(inst, o.side, entry, sl)
        notes.append(f"Sized: {fmt.num(pct)}% risk of {fmt.money(m.margin_balance, m.currency)} "
                     f"margin balance = {fmt.money(budget, m.currency)} at the stop")
        return budget / per

    async def _settle_usd(self, ex: Exchange, inst: Instrument,
                          units: Decimal) -> Decimal | None:
        """USD worth of an amount in the settlement currency: USDT counts as USD, XBt
        through XBTUSD's price."""
        if inst.settl_currency == "USDt":
            return Decimal(to_unit(units, "USDt"))
        if inst.settl_currency != "XBt":
            return None
        px = (inst.last_price or inst.mark_price) if inst.symbol == "XBTUSD" else None
        if px is None:
            try:
                xbt = await ex.instrument("XBTUSD")
            except ExchangeError:
                return None
            px = xbt.last_price or xbt.mark_price
        return Decimal(to_unit(units, "XBt")) * px if px else None

    async def _risk_lines(self, ex: Exchange, inst: Instrument, side: Side, qty: Decimal,
                          entry: Decimal, sl: Decimal, tps: tuple[Decimal, ...],
                          m: Margin | None) -> list[str]:
        """The loss at the stop in coin and USD (fees included), its share of the margin
        balance, and each take-profit's R-multiple."""
        if (sl >= entry) if side == "Buy" else (sl <= entry):
            return []  # refused by _check_exits already; nothing meaningful to show
        loss = sizing.loss_at_stop(inst, side, qty, entry, sl)
        line = f"Loss at stop ≈ {fmt.money(loss, inst.settl_currency)}"
        usd = await self._settle_usd(ex, inst, loss)
        if usd is not None:
            line += f" (${fmt.num(usd, 2)})"
        line += " incl. fees"
        if m is not None and m.margin_balance > 0:
            line += f" · {fmt.pct(loss / Decimal(m.margin_balance) * 100, 2, signed=False)} " \
                    "of margin balance"
        out = [line]
        if tps:
            out.append("R: " + " · ".join(
                f"TP {fmt.price(inst, tp)} = "
                f"{fmt.num(sizing.r_multiple(inst, side, entry, sl, tp), 1)}R" for tp in tps))
        return out

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
    def _reference_price(inst: Instrument, side: Side, price: Decimal | None,
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
        if size.kind == "risk":
            raise UserError("Risk sizing is for new orders: give a size here.")
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
    def _check_exits(side: Side, entry: Decimal, tps: tuple[Decimal, ...],
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

    async def preview_plan(self, user_id: int, chat_id: int, plan: Plan,
                           lines: list[str]) -> Card:
        """Store an already-built plan as a pending card: same buttons, expiry and press
        rules as every other card. Kinds: those `_send` knows, plus `amend_stop`
        (move the stop of order `order_ids[0]`, a clOrdID, to `stop_px`)."""
        user = await self._user(user_id)
        return await self._store(user, chat_id, plan, [*lines], False)

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
            if len(ref) >= 32:
                # A whole order id, most likely from a Cancel button: maybe someone else's
                # (a forwarded or forged press), so it is not echoed into this chat.
                raise UserError("That order is not open on your account (any more). "
                                "See /orders.")
            raise UserError(f"No open order matches {html.escape(ref)}. See /orders.")
        if len(matches) > 1:
            raise UserError(f"{html.escape(ref)} matches {len(matches)} orders; "
                            "type more of the id.")
        return matches[0]

    @staticmethod
    def order_line(o: Order, inst: Instrument | None = None) -> str:
        return f"{html.escape(fmt.order(o, inst))} · <code>{o.order_id[:8]}</code>"
