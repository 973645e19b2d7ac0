"""The book and matching: a live order against the synthetic book, resting limits, stops.

A marketable order takes liquidity at ask (buy) or bid (sell) and, when `depth` is set for a
symbol, walks further levels one tick apart with `depth` contracts each. Resting limits fill
at their own price when the opposite quote reaches them, at most `depth` per price update.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from bot.matching.instruments import Instrument
from bot.matching.positions import Positions
from bot.matching.records import Order
from bot.matching.terms import (
    MAKER_FEE,
    Q_AVG,
    STOP_TYPES,
    TAKER_FEE,
    EngineError,
    Row,
    iso,
    to_int,
)


class Book(Positions):
    """Matching, triggers, fills and their execution records."""

    def _activate(self, order: Order, inst: Instrument) -> None:
        """Trade a live order against the synthetic book: taker part, then rest or cancel."""
        is_market = order.ord_type in ("Market", "Stop", "MarketIfTouched")
        limit = None if is_market else order.price
        touch = inst.ask if order.side == "Buy" else inst.bid
        crosses = limit is None or (limit >= touch if order.side == "Buy" else limit <= touch)
        if crosses and "ParticipateDoNotInitiate" in order.exec_inst:
            self._cancel(order, "Canceled: Order had execInst of ParticipateDoNotInitiate")
            return
        if order.reduce_only:
            room = self._reducible(order)
            if room <= 0:
                self._cancel(order, "Canceled: Order had execInst of ReduceOnly")
                return
        if crosses:
            levels = self._levels(inst, order.side, limit)
            if order.time_in_force == "FillOrKill":
                available = sum(q for _, q in levels)
                if available < order.leaves_qty:
                    self._cancel(order, "Canceled: Order had timeInForce of FillOrKill")
                    return
            for px, avail in levels:
                if not order.is_open:
                    break
                take = min(avail, order.leaves_qty)
                if order.reduce_only:
                    take = min(take, self._reducible(order))
                    if take <= 0:
                        break
                self._fill(order, take, px, maker=False)
        if not order.is_open:
            return
        if order.reduce_only and self._reducible(order) <= 0:
            self._cancel(order, "Canceled: Order had execInst of ReduceOnly")
        elif is_market or order.time_in_force in ("ImmediateOrCancel", "FillOrKill"):
            self._cancel(order, f"Canceled: Order had timeInForce of {order.time_in_force}")

    def _levels(self, inst: Instrument, side: str, limit: Decimal | None) -> list[tuple[Decimal,
                                                                                     int]]:
        start = inst.ask if side == "Buy" else inst.bid
        step = inst.tick_size if side == "Buy" else -inst.tick_size
        if inst.depth is None:
            return [(start, 10**15)]
        levels = []
        px = start
        for _ in range(50):
            if px <= 0 or (limit is not None and (px > limit if side == "Buy" else px < limit)):
                break
            levels.append((px, inst.depth))
            px += step
        return levels

    def _reducible(self, order: Order) -> int:
        pos = self._position(order.account, order.symbol)
        if pos.qty * order.sign >= 0:
            return 0
        return min(abs(pos.qty), order.leaves_qty)

    def _match_resting(self, inst: Instrument) -> None:
        for order in sorted(self._open[inst.symbol].values(), key=lambda o: o.created):
            if not order.working or order.price is None or order.ord_type == "Market":
                continue
            if order.ord_type in ("Stop", "MarketIfTouched"):
                continue
            crossed = inst.ask <= order.price if order.side == "Buy" else inst.bid >= order.price
            if not crossed:
                continue
            take = order.leaves_qty if inst.depth is None else min(inst.depth, order.leaves_qty)
            if order.reduce_only:
                take = min(take, self._reducible(order))
                if take <= 0:
                    self._cancel(order, "Canceled: Order had execInst of ReduceOnly")
                    continue
            self._fill(order, take, order.price, maker=True)

    def fill_order(self, order_id: str, qty: int, price: Decimal | None = None) -> Row:
        """Test/sandbox control: let a resting order trade `qty` (a partial fill if less)."""
        order = self.orders[order_id]
        if not order.is_open:
            raise EngineError("Invalid ordStatus")
        inst = self.instruments[order.symbol]
        px = price if price is not None else (order.price or inst.last)
        self._fill(order, min(qty, order.leaves_qty), px, maker=True)
        self._after_change(order.account, inst)
        return order.row()

    def _check_triggers(self, inst: Instrument, only: Order | None = None) -> None:
        candidates = [only] if only else list(self._open[inst.symbol].values())
        for order in candidates:
            if order.ord_type not in STOP_TYPES or order.triggered or not order.is_open:
                continue
            assert order.stop_px is not None
            if order.peg_offset is not None:
                self._trail(order, inst)
            ref = inst.last if "LastPrice" in order.exec_inst else inst.mark
            if order.ord_type in ("Stop", "StopLimit"):
                hit = ref >= order.stop_px if order.side == "Buy" else ref <= order.stop_px
            else:
                hit = ref <= order.stop_px if order.side == "Buy" else ref >= order.stop_px
            if not hit:
                continue
            order.triggered = "StopOrderTriggered"
            order.timestamp = self.clock.now()
            self._emit(
                "order",
                "update",
                [self._order_delta(order, ("triggered", "workingIndicator", "ordStatus"))],
                order.account,
            )
            # BitMEX's exec type for a stop that fired (there is no "Trigger").
            self._execution(order, "TriggeredOrActivatedBySystem")
            self._activate(order, inst)
            self._after_change(order.account, inst)

    @staticmethod
    def _trailed_px(inst: Instrument, exec_inst: str, offset: Decimal) -> Decimal:
        """Where a trailing stop sits now: the reference price plus the signed offset,
        rounded to the tick away from the price (a sell stop never rounds up into it)."""
        ref = inst.last if "LastPrice" in exec_inst else inst.mark
        return max(inst.round_tick(ref + offset, ROUND_FLOOR if offset < 0 else ROUND_CEILING),
                   inst.tick_size)

    def _trail(self, order: Order, inst: Instrument) -> None:
        """Move a trailing stop with the price, only in the favourable direction: a sell
        stop only up, a buy stop only down (BitMEX's TrailingStopPeg)."""
        assert order.peg_offset is not None and order.stop_px is not None
        new = self._trailed_px(inst, order.exec_inst, order.peg_offset)
        better = new > order.stop_px if order.peg_offset < 0 else new < order.stop_px
        if not better:
            return
        order.stop_px = new
        order.timestamp = self.clock.now()
        self._emit("order", "update", [self._order_delta(order, ("stopPx",))], order.account)

    def _order_delta(self, order: Order, fields: Iterable[str]) -> Row:
        full = order.row()
        row = {"orderID": order.order_id, "clOrdID": order.cl_ord_id, "account": order.account,
               "symbol": order.symbol}
        for name in fields:
            row[name] = full[name]
        row["timestamp"] = full["timestamp"]
        return row

    def _cancel(self, order: Order, text: str) -> None:
        now = self.clock.now()
        order.ord_status = "Canceled"
        order.leaves_qty = 0
        order.text = text
        order.timestamp = now
        order.transact_time = now
        self._open[order.symbol].pop(order.order_id, None)
        self._emit(
            "order",
            "update",
            [self._order_delta(order, ("ordStatus", "leavesQty", "text", "workingIndicator"))],
            order.account,
        )
        self._execution(order, "Canceled")

    def _fill(self, order: Order, qty: int, px: Decimal, *, maker: bool) -> None:
        if qty <= 0:
            return
        inst = self.instruments[order.symbol]
        now = self.clock.now()
        pos = self._position(order.account, order.symbol)
        signed = qty * order.sign
        realised_gross = self._apply_to_position(pos, inst, signed, px)
        exec_cost = to_int(inst.value(signed, px))
        rate = MAKER_FEE if maker else TAKER_FEE
        comm = to_int(abs(Decimal(exec_cost)) * rate)
        acct = self.accounts[order.account]
        acct.wallet[inst.settl] += realised_gross - comm
        pos.realised += realised_gross - comm
        pos.timestamp = now
        order.cum_qty += qty
        order.leaves_qty -= qty
        order.notional += px * qty
        order.avg_px = inst.round_tick(order.notional / order.cum_qty) if not inst.is_inverse \
            else (order.notional / order.cum_qty).quantize(Q_AVG).normalize()
        order.ord_status = "Filled" if order.leaves_qty == 0 else "PartiallyFilled"
        order.timestamp = now
        order.transact_time = now
        if not order.is_open:
            self._open[order.symbol].pop(order.order_id, None)
        self._emit(
            "order",
            "update",
            [self._order_delta(order, ("ordStatus", "leavesQty", "cumQty", "avgPx",
                                       "workingIndicator"))],
            order.account,
        )
        self._execution(
            order, "Trade", last_qty=qty, last_px=px, exec_cost=exec_cost, exec_comm=comm,
            commission=rate, realised=realised_gross - comm,
            liquidity="AddedLiquidity" if maker else "RemovedLiquidity",
        )
        self._public_trade(inst, order.side, qty, px)

    def _execution(
        self,
        order: Order,
        exec_type: str,
        *,
        last_qty: int = 0,
        last_px: Decimal | None = None,
        exec_cost: int = 0,
        exec_comm: int = 0,
        commission: Decimal | None = None,
        realised: int = 0,
        liquidity: str = "",
    ) -> Row:
        now = self.clock.now()
        row = order.row()
        row.update(
            {
                "execID": str(uuid.uuid4()),
                "lastQty": last_qty,
                "lastPx": last_px,
                "lastLiquidityInd": liquidity,
                "execType": exec_type,
                "execCost": exec_cost,
                "execComm": exec_comm,
                "commission": commission,
                "homeNotional": None,
                "foreignNotional": None,
                "tradePublishIndicator": "PublishTrade" if last_qty else "",
                "trdMatchID": str(uuid.uuid4()) if last_qty else "00000000-0000-0000-0000-"
                "000000000000",
                "realisedPnl": realised,
                "timestamp": iso(now),
                "transactTime": iso(now),
            }
        )
        if last_qty and last_px is not None:
            inst = self.instruments[order.symbol]
            home, foreign = self._notionals(inst, last_qty * order.sign, last_px)
            row["homeNotional"] = home
            row["foreignNotional"] = foreign
        self.executions[order.account].append(row)
        self._emit("execution", "insert", [row], order.account)
        return row
