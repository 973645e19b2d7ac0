"""/liqalert: a warning when the mark price nears one of the user's liquidation prices."""

from __future__ import annotations

import html
import logging
from decimal import Decimal

from bot import fmt
from bot.db.models import User
from bot.exchange.types import Position
from bot.live.base import (
    REARM_POINTS,
    LiveBase,
    Watch,
    qty_text,
)

log = logging.getLogger(__name__)


class LiqWarnings(LiveBase):
    # --- liquidation warning ------------------------------------------------------------

    async def _on_position(self, w: Watch, pos: Position) -> None:
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
            f"{fmt.price(inst, liq)} ({side} {qty_text(abs(pos.current_qty))}, "
            f"{html.escape(w.network)}). /liqalert changes this warning.",
            "liqalert")

    async def set_liq_alert(self, user_id: int, percent: Decimal | None) -> str:
        """`/liqalert N% | off`; returns the answer to show."""
        async with self.db.session() as s:
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
