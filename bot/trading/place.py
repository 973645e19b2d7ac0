"""Place a claimed card's order exactly once, and settle the cards left in flight."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import col, select

from bot import fmt
from bot.db.models import OrderCard
from bot.errors import (
    ExchangeError,
    ExchangeUnreachable,
    NotPlaced,
    OutcomeUnknown,
    Overloaded,
    RateLimited,
    Rejected,
    Temporary,
    UserError,
)
from bot.exchange.client import BitmexClient
from bot.exchange.types import Exchange
from bot.trading.cards import CONFIRMED, EXPIRED, FAILED, PLACED, WAITING, Card, Plan, plain_reason
from bot.trading.exits import Exits
from bot.trading.panic import KIND as PANIC
from bot.trading.panic import send_panic
from bot.trading.stops import STOP_KINDS, send_stop_plan

log = logging.getLogger(__name__)

# An order sent without an answer stays `confirmed` with this note until its clOrdID is
# looked up (settle_in_flight): calling it "rejected" would invite a second order.
UNKNOWN_NOTE = ("BitMEX did not confirm in time, so the order may or may not be on the "
                "exchange. I'm looking it up by its id and will update this card; please "
                "don't place it again (/orders and /positions show the truth).")
UNKNOWN_DONE = ("BitMEX did not answer, so I can't tell whether it happened; /orders and "
                "/positions show the truth")
SETTLE_AFTER = timedelta(minutes=2)  # a card `confirmed` this long is no longer in flight
# A card's order is only sent (and signed to be valid) within this window after Confirm,
# so once it and a margin have passed, "not found by its clOrdID" means "never placed".
SEND_WINDOW = timedelta(seconds=30)
ARRIVAL_MARGIN = timedelta(seconds=10)
NOT_PLACED_NOTE = ("it never reached BitMEX (I looked it up by its id until it could no "
                   "longer arrive)")


def _never_reached(err: ExchangeError, kind: str) -> str | None:
    """Why a failed send certainly never reached BitMEX's engine; None when it may have."""
    if isinstance(err, RateLimited):
        return (f"BitMEX asked us to slow down for your key (retry in about "
                f"{max(1, round(err.retry_after))} s)")
    if isinstance(err, Overloaded):
        return "BitMEX is overloaded and did not take it"
    if kind in ("order", "close") or type(err) is ExchangeUnreachable:
        # place_order turns every maybe-sent failure into OutcomeUnknown, so for an order
        # what is left never went out (a plain ExchangeUnreachable is a failed connect).
        return "BitMEX did not answer"
    return None



class Placement(Exits):
    """Sending a claimed card (execute) and settling the cards a crash or a lost answer
    left `confirmed` (settle_in_flight)."""

    async def execute(self, card_id: int, claimed: OrderCard | None = None) -> Card:
        """Send a card claimed by `take_press` (`claimed`: its row as the claim left it);
        the card as it should now look."""
        card = await self._execute(card_id, claimed)
        try:
            await self._count_outcome(card_id)
        except Exception:  # a metric must never turn a placed order into an error reply
            log.exception("could not count the outcome of card %s", card_id)
        return card

    async def _count_outcome(self, card_id: int) -> None:
        """The confirmed card's outcome as the metrics name it (from its stored state)."""
        async with self.db.read() as s:
            row = await s.get(OrderCard, card_id)
        if row is None:
            return
        flags = row.intent
        outcome = {PLACED: "placed", CONFIRMED: "in_flight"}.get(row.state) or (
            "not_sent" if flags.get("not_sent") else "not_placed" if flags.get("not_placed")
            else "unknown" if flags.get("unknown") else "rejected")
        self.outcomes[(str(flags.get("kind", "order")), outcome)] += 1

    async def _execute(self, card_id: int, row: OrderCard | None = None) -> Card:
        if row is None or row.id != card_id:
            # Read outside SQLite's writer turn: the order must not queue behind other
            # writers (fills, alerts) just to read what it sends.
            async with self.db.read() as s:
                row = await s.get(OrderCard, card_id)
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

    async def _send(self, ex: Exchange, row: OrderCard, plan: Plan) -> dict[str, Any]:
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
        if plan.kind == PANIC:  # issue #14 item 6
            report = await send_panic(ex, row.cl_ord_id)
            await self._finish(row.id, PLACED, extra={"report": report})
            return {}
        if plan.kind in STOP_KINDS:
            return await send_stop_plan(self, ex, row, plan)
        assert plan.symbol and plan.side and plan.qty is not None
        if plan.leverage is not None:
            await ex.set_leverage(plan.symbol, plan.leverage)
        # Stored before sending: the settlement after a crash must know until when the
        # order could still reach BitMEX (no attempt is signed to be valid past it).
        # In BitMEX's time: it judges api-expires by its clock, not ours.
        send_by = row.intent.get("send_by")  # stored by the claim (Presses.take_press)
        if send_by is None:
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

    async def _send_by_at(self, row: OrderCard, plan: Plan, confirmed_at: datetime
                          ) -> float | None:
        """The `send_by` of an order confirmed at `confirmed_at`, in BitMEX's time; None
        when the account's client is not at hand (the send then works it out itself)."""
        if plan.kind not in ("order", "close"):
            return None
        try:
            ex = await self.accounts.exchange(row.user_id, plan.network)
        except Exception:  # no key any more, a broken vault: `execute` reports it
            return None
        return (confirmed_at + SEND_WINDOW).timestamp() + _exchange_offset(ex)

    def _send_by(self, row: OrderCard) -> float:
        start = row.confirmed_at or self.now()
        if start.tzinfo is None:  # SQLite hands datetimes back naive; they are UTC
            start = start.replace(tzinfo=UTC)
        return (start + SEND_WINDOW).timestamp()

    async def _send_amend_stop(self, ex: Exchange, row: OrderCard,
                               plan: Plan) -> dict[str, Any]:
        assert row.id is not None and plan.order_ids and plan.stop_px is not None
        order = await ex.amend_order(orig_cl_ord_id=plan.order_ids[0], stop_px=plan.stop_px)
        await self._finish(row.id, PLACED, order_id=order.order_id,
                           error=f"Stop moved to {fmt.num(plan.stop_px)}.")
        return {"order_id": order.order_id}

    async def expire_due(self) -> list[OrderCard]:
        """Mark every waiting card past its time as expired; the caller edits the messages."""
        now = self.now()
        async with self.db.session() as s:
            rows = (await s.exec(select(OrderCard).where(
                col(OrderCard.state).in_(WAITING), OrderCard.expires_at <= now))).all()
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
        q = select(OrderCard).where(OrderCard.state == CONFIRMED)
        if older_than is not None:
            q = q.where(col(OrderCard.confirmed_at) <= self.now() - older_than)
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
                log.info("card %s still unsettled: %s", row.id, e)
                continue  # tried again on the next sweep
            if order is None:
                send_by = float(row.intent.get("send_by") or self._send_by(row))
                if _exchange_now_at_least(ex, self.now()) <= (
                        send_by + ARRIVAL_MARGIN.total_seconds()):
                    # A request still on its way (BitMEX can be seconds slow) may yet arrive:
                    # "not found" is only final once its api-expires is behind us.
                    log.info("card %s not found yet; looked up again later", row.id)
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


async def settle_cards(trading: Placement, notifier: Any, *,
                       older_than: timedelta | None = SETTLE_AFTER) -> int:
    """Settle in-flight cards (see `Trading.settle_in_flight`) and edit them to say how
    they ended; how many. Called once at start-up (older_than=None) and on a timer."""
    ids = await trading.settle_in_flight(older_than)
    for card_id in ids:
        async with trading.db.session() as s:
            row = await s.get(OrderCard, card_id)
        if notifier is None or row is None or row.message_id is None:
            continue
        card = await trading.current(card_id)
        if card.text:
            await trading.show_outcome(notifier, card_id, row.chat_id, row.message_id,
                                       card.text)
    return len(ids)


async def repair_cards(trading: Placement, notifier: Any) -> int:
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
        repaired += await trading.show_outcome(notifier, row.id, row.chat_id,
                                               row.message_id, card.text)
    return repaired


def _exchange_offset(ex: Exchange) -> float:
    """Seconds BitMEX's clock is ahead of ours, as the client learned it (paper: 0)."""
    return ex.exchange_clock.offset if isinstance(ex, BitmexClient) else 0.0


def _exchange_now_at_least(ex: Exchange, now: datetime) -> float:
    """The earliest BitMEX's clock can read now: a send_by is only behind BitMEX once this
    is past it (the lookup just made taught the client the offset, if it could)."""
    if isinstance(ex, BitmexClient):
        return ex.exchange_time_at_least(now.timestamp())
    return now.timestamp()


def _orders_word(n: int) -> str:
    return f"{fmt.num(n)} order" + ("" if n == 1 else "s")
