"""What a price move and the clock set off: stops, crossing limits and liquidations after
`set_mark`; the dead-man's switch, futures expiry, funding every 8 hours and the liquidation
feed on every `tick`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from bot.matching.instruments import Instrument
from bot.matching.liquidation import Liquidations
from bot.matching.records import PricePoint
from bot.matching.terms import FUNDING_INTERVAL, iso, to_int


class Clockwork(Liquidations):
    """Price moves and time: `set_mark` and `tick`."""

    def set_mark(
        self,
        symbol: str,
        price: Decimal | int | str,
        trade_size: int = 0,
        last: Decimal | int | str | None = None,
    ) -> None:
        """Move the market: prices, then stops, crossing limits and liquidations.

        `last` (default: the mark) lets tests separate the two trigger sources;
        bid and ask sit around the last price.
        """
        inst = self.instrument(symbol)
        self._set_prices(inst, Decimal(str(price)), None if last is None else Decimal(str(last)))
        now = self.clock.now()
        self.history[symbol].append(PricePoint(now, inst.last, 0))
        if trade_size > 0:
            side = "Buy" if inst.tick_direction == "PlusTick" else "Sell"
            self._public_trade(inst, side, trade_size, inst.last)
        self._emit(
            "instrument",
            "update",
            [
                self._instrument_delta(
                    inst,
                    (
                        "lastPrice", "markPrice", "bidPrice", "askPrice", "midPrice",
                        "fairPrice", "lastTickDirection", "lastChangePcnt",
                    ),
                )
            ],
        )
        self._emit("quote", "insert", [self.quote_row(inst)])
        self._on_price(inst)

    def _on_price(self, inst: Instrument) -> None:
        self._check_triggers(inst)
        self._match_resting(inst)
        self._check_liquidations(inst)
        self._refresh_accounts_on(inst)

    def tick(self) -> None:
        """Run everything due at the clock's current time (funding, dead-man, feeds)."""
        now = self.clock.now()
        for acct in self.accounts.values():
            if acct.cancel_at is not None and now >= acct.cancel_at:
                acct.cancel_at = None
                self.cancel_all(acct.id, text="Canceled: Cancel all after triggered")
        for inst in self.instruments.values():
            if inst.expiry is not None and inst.state == "Open" and now >= inst.expiry:
                self._settle_future(inst)
            while inst.is_perpetual and now >= inst.funding_ts:
                self._funding(inst, inst.funding_ts)
                inst.funding_ts += FUNDING_INTERVAL
                self._emit("instrument", "update",
                           [self._instrument_delta(inst, ("fundingTimestamp", "fundingRate"))])
        if now - self._last_time >= timedelta(hours=24):
            for inst in self.instruments.values():
                inst.prev_price_24h = inst.last
                inst.volume_24h = 0
            self._last_time = now
        self._run_liquidation_feed(now)

    def _settle_future(self, inst: Instrument) -> None:
        """Expiry: open orders cancelled, positions closed at the mark, state Settled."""
        assert inst.expiry is not None
        for order in list(self._open[inst.symbol].values()):
            self._cancel(order, "Canceled: Instrument settled")
        inst.state = "Settled"
        for (acc, sym), pos in list(self.positions.items()):
            if sym != inst.symbol or pos.qty == 0:
                continue
            qty = pos.qty
            gross = self._apply_to_position(pos, inst, -qty, inst.mark)
            self.accounts[acc].wallet[inst.settl] += gross
            pos.realised += gross
            pos.timestamp = inst.expiry
            row = {
                "execID": str(uuid.uuid4()), "orderID": "00000000-0000-0000-0000-000000000000",
                "clOrdID": "", "account": acc, "symbol": sym, "side": "Sell" if qty > 0 else "Buy",
                "lastQty": abs(qty), "lastPx": inst.mark, "price": inst.mark,
                "orderQty": abs(qty), "ordType": "Settlement", "execType": "Settlement",
                "ordStatus": "Filled", "execInst": "", "timeInForce": "", "leavesQty": 0,
                "cumQty": abs(qty), "avgPx": inst.mark,
                "execCost": to_int(inst.value(-qty, inst.mark)), "execComm": 0,
                "commission": Decimal(0), "realisedPnl": gross, "currency": inst.quote,
                "settlCurrency": inst.settl, "text": "Settlement", "lastLiquidityInd": "",
                "trdMatchID": str(uuid.uuid4()), "transactTime": iso(inst.expiry),
                "timestamp": iso(inst.expiry),
            }
            self.executions[acc].append(row)
            self._emit("execution", "insert", [row], acc)
            self._after_change(acc, inst)
        self._emit("instrument", "update", [self._instrument_delta(inst, ("state",))])

    def active_instruments(self) -> list[Instrument]:
        """What /instrument/active lists: open ones and those expired within 24 hours."""
        now = self.clock.now()
        return [i for i in self.instruments.values()
                if i.state == "Open" or (i.expiry is not None
                                         and now - i.expiry < timedelta(hours=24))]

    def _funding(self, inst: Instrument, when: datetime) -> None:
        rate = inst.funding_rate
        row = {"timestamp": iso(when), "symbol": inst.symbol, "fundingInterval":
               "2000-01-01T08:00:00.000Z", "fundingRate": rate, "fundingRateDaily": rate * 3}
        self.fundings.append(row)
        self._emit("funding", "insert", [row])
        for (acc, sym), pos in list(self.positions.items()):
            if sym != inst.symbol or pos.qty == 0:
                continue
            mark_value = to_int(inst.value(pos.qty, inst.mark))
            # Longs pay shorts when the rate is positive, whatever the contract's sign.
            payment = to_int(abs(Decimal(mark_value)) * rate) * (1 if pos.qty > 0 else -1)
            self.accounts[acc].wallet[inst.settl] -= payment
            pos.realised -= payment
            pos.timestamp = when
            now = when
            execution = {
                "execID": str(uuid.uuid4()), "orderID": "00000000-0000-0000-0000-000000000000",
                "clOrdID": "", "account": acc, "symbol": sym,
                "side": "", "lastQty": pos.qty, "lastPx": inst.mark, "price": inst.mark,
                "orderQty": pos.qty, "ordType": "Funding", "execType": "Funding",
                "ordStatus": "Filled", "execInst": "", "timeInForce": "",
                "leavesQty": 0, "cumQty": pos.qty, "avgPx": inst.mark,
                "execCost": mark_value, "execComm": payment, "commission": rate,
                "realisedPnl": -payment, "currency": inst.quote, "settlCurrency": inst.settl,
                "text": "Funding", "lastLiquidityInd": "", "homeNotional": None,
                "foreignNotional": None, "trdMatchID": str(uuid.uuid4()),
                "transactTime": iso(now), "timestamp": iso(now),
            }
            self.executions[acc].append(execution)
            self._emit("execution", "insert", [execution], acc)
            self._after_change(acc, inst)
