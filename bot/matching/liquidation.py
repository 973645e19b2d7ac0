"""Liquidation: an account's position closed at its bankruptcy price, and the public
`liquidation` feed (ours and other traders').
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from bot.matching.instruments import Instrument
from bot.matching.orders import Orders
from bot.matching.records import Order, Position
from bot.matching.terms import Row, to_int


class Liquidations(Orders):
    """Liquidating positions and running the public liquidation feed."""

    def _check_liquidations(self, inst: Instrument) -> None:
        for (_, sym), pos in list(self.positions.items()):
            if sym != inst.symbol or pos.qty == 0:
                continue
            liq, bk = self._liq_prices(pos, inst)
            if liq is None or bk is None:
                continue
            if (pos.qty > 0 and inst.mark <= liq) or (pos.qty < 0 and inst.mark >= liq):
                self._liquidate(pos, inst, bk)

    def _liquidate(self, pos: Position, inst: Instrument, bankrupt: Decimal) -> None:
        """Close at the bankruptcy price: the account loses the position's margin."""
        acc = pos.account
        for order in list(self._open[inst.symbol].values()):
            if order.account == acc:
                self._cancel(order, "Canceled: Liquidation")
        now = self.clock.now()
        side = "Sell" if pos.qty > 0 else "Buy"
        qty = abs(pos.qty)
        order = Order(
            order_id=str(uuid.uuid4()), cl_ord_id="", account=acc, symbol=inst.symbol,
            side=side, order_qty=qty, price=bankrupt, stop_px=None, ord_type="Limit",
            time_in_force="ImmediateOrCancel", exec_inst="Close", currency=inst.quote,
            settl=inst.settl, text="Liquidation", created=now, leaves_qty=qty,
            transact_time=now, timestamp=now,
        )
        self.orders[order.order_id] = order
        self._by_account[acc].append(order)
        self._open[inst.symbol][order.order_id] = order
        self._emit("order", "insert", [order.row()], acc)
        self._emit_liquidation(inst, side, qty, bankrupt, order.order_id)
        signed = qty * order.sign
        realised = self._apply_to_position(pos, inst, signed, bankrupt)
        account = self.accounts[acc]
        account.wallet[inst.settl] = max(0, account.wallet[inst.settl] + realised)
        pos.realised += realised
        pos.timestamp = now
        order.cum_qty = qty
        order.leaves_qty = 0
        order.notional = bankrupt * qty
        order.avg_px = bankrupt
        order.ord_status = "Filled"
        self._open[inst.symbol].pop(order.order_id, None)
        self._emit("order", "update", [order.row()], acc)
        self._execution(
            order, "Trade", last_qty=qty, last_px=bankrupt,
            exec_cost=to_int(inst.value(signed, bankrupt)), commission=Decimal(0),
            realised=realised, liquidity="RemovedLiquidity",
        )
        self._after_change(acc, inst)

    def liquidate_market(
        self, symbol: str, side: str, qty: int, price: Decimal | int | str,
        duration: float = 2.0,
    ) -> Row:
        """Inject a public liquidation (someone else's) into the `liquidation` feed."""
        inst = self.instrument(symbol)
        return self._emit_liquidation(inst, side, qty, Decimal(str(price)), str(uuid.uuid4()),
                                      duration)

    def _emit_liquidation(self, inst: Instrument, side: str, qty: int, price: Decimal,
                          order_id: str, duration: float = 2.0) -> Row:
        row: Row = {"orderID": order_id, "symbol": inst.symbol, "side": side,
                    "price": inst.round_tick(price), "leavesQty": qty}
        self.liquidations[order_id] = row
        self._emit("liquidation", "insert", [dict(row)])
        now = self.clock.now()
        self._liq_schedule.append((now + timedelta(seconds=duration / 2), order_id, "update"))
        self._liq_schedule.append((now + timedelta(seconds=duration), order_id, "delete"))
        return dict(row)

    def _run_liquidation_feed(self, now: datetime) -> None:
        due = [item for item in self._liq_schedule if item[0] <= now]
        if not due:
            return
        self._liq_schedule = [item for item in self._liq_schedule if item[0] > now]
        for _, order_id, action in sorted(due, key=lambda item: item[0]):
            row = self.liquidations.get(order_id)
            if row is None:
                continue
            inst = self.instruments[row["symbol"]]
            if action == "update":
                left = (row["leavesQty"] // 2 // inst.lot_size) * inst.lot_size
                if left <= 0 or left == row["leavesQty"]:
                    continue
                taken = row["leavesQty"] - left
                row["leavesQty"] = left
                self._emit("liquidation", "update",
                           [{"orderID": order_id, "symbol": row["symbol"], "leavesQty": left}])
                self._public_trade(inst, row["side"], taken, row["price"])
            else:
                del self.liquidations[order_id]
                self._emit("liquidation", "delete",
                           [{"orderID": order_id, "symbol": row["symbol"]}])
