"""Accounts and margin: what orders and positions reserve, and the margin and wallet rows.

availableMargin = marginBalance - position margin - open-order margin.
"""

from __future__ import annotations

from decimal import Decimal

from bot.matching.instruments import Instrument
from bot.matching.market import Market
from bot.matching.records import Order, Position
from bot.matching.terms import STOP_TYPES, TAKER_FEE, Row, iso, to_int


class Margin(Market):
    """Initial and maintenance margin, the margin and wallet tables."""

    def _im_rate(self, inst: Instrument, pos: Position) -> Decimal:
        if pos.leverage > 0:
            return max(Decimal(1) / pos.leverage, inst.init_margin)
        return inst.init_margin

    def _order_margin(self, order: Order, inst: Instrument, pos: Position, extra: bool = False
                      ) -> int:
        """Initial margin an order reserves; a reducing part reserves nothing."""
        if order.reduce_only or (order.ord_type in STOP_TYPES and not order.triggered and
                                 not extra):
            return 0
        qty = order.leaves_qty
        if pos.qty * order.sign < 0:
            qty = max(0, qty - abs(pos.qty))
        if qty == 0:
            return 0
        price = order.price or (inst.ask if order.side == "Buy" else inst.bid)
        if order.stop_px is not None and order.price is None:
            price = order.stop_px
        notional = abs(inst.value(qty, price))
        fee = notional * TAKER_FEE if extra else Decimal(0)
        return to_int(notional * self._im_rate(inst, pos) + fee)

    def _pos_figures(self, pos: Position, inst: Instrument) -> tuple[int, int, int, int]:
        """(markValue, unrealisedPnl, posMargin, maintMargin) of one position."""
        if pos.qty == 0:
            return 0, 0, 0, 0
        mark_value = to_int(inst.value(pos.qty, inst.mark))
        upnl = to_int(inst.value(pos.qty, inst.mark) - pos.cost)
        pos_margin = to_int(abs(pos.cost) * self._im_rate(inst, pos))
        maint = to_int(abs(Decimal(mark_value)) * inst.maint_margin)
        return mark_value, upnl, pos_margin, maint

    def margin_row(self, account_id: int, currency: str) -> Row:
        acct = self.accounts[account_id]
        wallet = acct.wallet.get(currency, 0)
        upnl = pos_margin = maint = order_margin = 0
        for (acc, sym), pos in self.positions.items():
            inst = self.instruments[sym]
            if acc != account_id or inst.settl != currency:
                continue
            _, u, pm, mm = self._pos_figures(pos, inst)
            upnl += u
            pos_margin += pm
            maint += mm
        for order in self._by_account[account_id]:
            if order.is_open and order.settl == currency:
                inst = self.instruments[order.symbol]
                order_margin += self._order_margin(
                    order, inst, self._position(account_id, order.symbol)
                )
        margin_balance = wallet + upnl
        available = max(0, margin_balance - pos_margin - order_margin)
        now = iso(self.clock.now())
        return {
            "account": account_id,
            "currency": currency,
            "riskLimit": 1000000000000,
            "amount": wallet,
            "prevRealisedPnl": 0,
            "grossComm": 0,
            "grossOpenCost": order_margin,
            "grossOpenPremium": 0,
            "grossExecCost": 0,
            "grossMarkValue": 0,
            "riskValue": 0,
            "initMargin": order_margin,
            "maintMargin": maint,
            "targetExcessMargin": 0,
            "realisedPnl": wallet - acct.deposited.get(currency, 0),
            "unrealisedPnl": upnl,
            "walletBalance": wallet,
            "marginBalance": margin_balance,
            "marginLeverage": 0,
            "marginUsedPcnt": 0,
            "excessMargin": available,
            "availableMargin": available,
            "withdrawableMargin": max(0, min(available, wallet)),
            "makerFeeDiscount": None,
            "takerFeeDiscount": None,
            "timestamp": now,
        }

    def margins(self, account_id: int) -> list[Row]:
        return [self.margin_row(account_id, c) for c in self.accounts[account_id].wallet]

    def wallet_row(self, account_id: int, currency: str) -> Row:
        acct = self.accounts[account_id]
        return {
            "account": account_id,
            "currency": currency,
            "deposited": acct.deposited.get(currency, 0),
            "withdrawn": 0,
            "transferIn": 0,
            "transferOut": 0,
            "amount": acct.wallet.get(currency, 0),
            "pendingCredit": 0,
            "pendingDebit": 0,
            "confirmedDebit": 0,
            "timestamp": iso(self.clock.now()),
        }
