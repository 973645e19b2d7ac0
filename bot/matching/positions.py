"""Positions: fills applied to them, average entry, liquidation and bankruptcy prices, leverage.

Position cost is kept exact (Decimal) and only rounded when shown, so an average entry is
exactly the harmonic (inverse) or arithmetic (linear) mean of the fills.

Cross margin liquidation price: the position is backed by the wallet balance minus the
margin reserved for open orders and the other positions of the same currency (unrealised
PnL of other positions is ignored), turned into an effective initial-margin rate for the
isolated formulas.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bot.matching.instruments import Instrument
from bot.matching.margin import Margin
from bot.matching.records import Position
from bot.matching.terms import (
    PRICE_CAP,
    Q_AVG,
    TAKER_FEE,
    EngineError,
    Row,
    iso,
    parse_decimal,
    to_int,
)


class Positions(Margin):
    """Position bookkeeping and the position table."""

    def _apply_to_position(self, pos: Position, inst: Instrument, signed: int,
                           px: Decimal) -> int:
        """Add a fill to a position; returns the gross realised PnL (settlement units)."""
        if signed > 0:
            pos.exec_buy += signed
        else:
            pos.exec_sell += -signed
        realised = Decimal(0)
        if pos.qty != 0 and pos.qty * signed < 0:
            closing = min(abs(signed), abs(pos.qty)) * (1 if pos.qty > 0 else -1)
            closed_cost = pos.cost * Decimal(closing) / Decimal(pos.qty)
            realised = inst.value(closing, px) - closed_cost
            pos.cost -= closed_cost
            pos.qty -= closing
            signed += closing
            if pos.qty == 0:
                pos.cost = Decimal(0)
        if signed != 0:
            if pos.qty == 0:
                pos.realised = 0
                pos.realised_gross = 0
            pos.qty += signed
            pos.cost += inst.value(signed, px)
        gross = to_int(realised)
        pos.realised_gross += gross
        return gross

    def _avg_entry(self, pos: Position, inst: Instrument) -> Decimal:
        if inst.is_inverse:
            return Decimal(pos.qty) * inst.multiplier / pos.cost
        return pos.cost / (Decimal(pos.qty) * inst.multiplier)

    def _liq_prices(self, pos: Position, inst: Instrument) -> tuple[Decimal | None,
                                                                  Decimal | None]:
        if pos.qty == 0 or pos.cost == 0:
            return None, None
        entry = self._avg_entry(pos, inst)
        mm = inst.maint_margin
        if pos.leverage > 0:
            im = self._im_rate(inst, pos)
        else:
            im = self._cross_backing(pos, inst) / abs(pos.cost)
            im = max(im, mm)
        long = pos.qty > 0
        if inst.is_inverse:
            if long:
                liq, bk = entry / (1 + im - mm), entry / (1 + im)
            else:
                liq = entry / (1 - im + mm) if 1 - im + mm > 0 else PRICE_CAP
                bk = entry / (1 - im) if 1 - im > 0 else PRICE_CAP
        elif long:
            liq, bk = entry * (1 - im + mm), entry * (1 - im)
        else:
            liq, bk = entry * (1 + im - mm), entry * (1 + im)
        liq = min(max(inst.round_tick(liq), inst.tick_size), PRICE_CAP)
        bk = min(max(inst.round_tick(bk), inst.tick_size), PRICE_CAP)
        return liq, bk

    def _cross_backing(self, pos: Position, inst: Instrument) -> Decimal:
        acct = self.accounts[pos.account]
        backing = Decimal(acct.wallet.get(inst.settl, 0))
        for (acc, sym), other in self.positions.items():
            other_inst = self.instruments[sym]
            if acc != pos.account or other_inst.settl != inst.settl or other is pos:
                continue
            backing -= self._pos_figures(other, other_inst)[2]
        for order in self._by_account[pos.account]:
            if order.is_open and order.settl == inst.settl:
                backing -= self._order_margin(
                    order, self.instruments[order.symbol],
                    self._position(pos.account, order.symbol),
                )
        return max(backing, Decimal(0))

    def position_row(self, pos: Position) -> Row:
        inst = self.instruments[pos.symbol]
        mark_value, upnl, pos_margin, maint = self._pos_figures(pos, inst)
        is_open = pos.qty != 0
        entry = self._avg_entry(pos, inst).quantize(Q_AVG).normalize() if is_open else None
        liq, bk = self._liq_prices(pos, inst)
        home, foreign = self._notionals(inst, pos.qty, inst.mark) if is_open else (Decimal(0),
                                                                                  Decimal(0))
        buy_q = sum(o.leaves_qty for o in self._open[pos.symbol].values()
                    if o.account == pos.account and o.side == "Buy" and o.working)
        sell_q = sum(o.leaves_qty for o in self._open[pos.symbol].values()
                     if o.account == pos.account and o.side == "Sell" and o.working)
        cost = to_int(pos.cost)
        roe = (Decimal(upnl) / pos_margin).quantize(Q_AVG) if pos_margin else Decimal(0)
        pcnt = (Decimal(upnl) / abs(cost)).quantize(Q_AVG) if cost else Decimal(0)
        leverage = pos.leverage if pos.leverage > 0 else Decimal(1) / inst.init_margin
        return {
            "account": pos.account,
            "symbol": pos.symbol,
            "currency": inst.settl,
            "underlying": inst.root,
            "quoteCurrency": inst.quote,
            "commission": TAKER_FEE,
            "initMarginReq": self._im_rate(inst, pos),
            "maintMarginReq": inst.maint_margin,
            "riskLimit": 20000000000,
            "leverage": leverage.normalize(),
            "crossMargin": pos.leverage == 0,
            "deleveragePercentile": 1 if is_open else None,
            "rebalancedPnl": 0,
            "prevRealisedPnl": 0,
            "openOrderBuyQty": buy_q,
            "openOrderSellQty": sell_q,
            "currentQty": pos.qty,
            "currentCost": cost,
            "realisedCost": 0,
            "unrealisedCost": cost,
            "isOpen": is_open,
            "markPrice": inst.mark if is_open else None,
            "markValue": mark_value,
            "riskValue": abs(mark_value),
            "homeNotional": home,
            "foreignNotional": foreign,
            "posCost": cost,
            "posComm": 0,
            "posMargin": pos_margin,
            "posMaint": maint,
            "initMargin": 0,
            "maintMargin": maint if pos.leverage == 0 else pos_margin,
            "realisedPnl": pos.realised,
            "unrealisedPnl": upnl,
            "unrealisedPnlPcnt": pcnt,
            "unrealisedRoePcnt": roe,
            "avgCostPrice": entry,
            "avgEntryPrice": entry,
            "breakEvenPrice": entry,
            "marginCallPrice": liq,
            "liquidationPrice": liq,
            "bankruptPrice": bk,
            "timestamp": iso(pos.timestamp or self.clock.now()),
        }

    def position_rows(self, account_id: int) -> list[Row]:
        return [self.position_row(p) for (acc, _), p in self.positions.items()
                if acc == account_id]

    def set_leverage(self, account_id: int, symbol: str, leverage: Any) -> Row:
        inst = self.instrument(symbol)
        lev = parse_decimal(leverage, "leverage")
        if lev < 0 or (lev > 0 and (lev < Decimal("0.01") or lev > 1 / inst.init_margin)):
            raise EngineError("Invalid leverage")
        pos = self._position(account_id, inst.symbol)
        old = pos.leverage
        pos.leverage = lev
        if pos.qty:
            margin = self.margin_row(account_id, inst.settl)
            if margin["availableMargin"] <= 0 and lev > old:
                pos.leverage = old
                raise EngineError("Account has insufficient Available Balance")
        pos.timestamp = self.clock.now()
        self._after_change(account_id, inst)
        return self.position_row(pos)

    def _after_change(self, account_id: int, inst: Instrument) -> None:
        pos = self._position(account_id, inst.symbol)
        action = "update" if pos.created else "insert"
        pos.created = True
        self._emit("position", action, [self.position_row(pos)], account_id)
        self._emit("margin", "update", [self.margin_row(account_id, inst.settl)], account_id)
        self._emit("wallet", "update", [self.wallet_row(account_id, inst.settl)], account_id)

    def _refresh_accounts_on(self, inst: Instrument) -> None:
        accounts = {acct for (acct, sym), pos in self.positions.items()
                    if sym == inst.symbol and pos.qty != 0}
        for acct in sorted(accounts):
            pos = self.positions[(acct, inst.symbol)]
            self._emit("position", "update", [self.position_row(pos)], acct)
            self._emit("margin", "update", [self.margin_row(acct, inst.settl)], acct)
