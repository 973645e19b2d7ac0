"""The card: one `OrderCard` row per confirmation card, the `Plan` it holds, how it
looks (`Card`), and the steps every stage takes on it: store, claim, finish, show.
"""

from __future__ import annotations

import collections
import hashlib
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import col, select

from bot import fmt
from bot.accounts import Accounts
from bot.buttons import CardAction, CardPress, button
from bot.db.engine import Database
from bot.db.models import AuditLog, OrderCard, User
from bot.errors import ExchangeError, InsufficientBalance
from bot.exchange import new_cl_ord_id
from bot.notify import Edited, Keyboard, Notifier
from bot.side import Side

log = logging.getLogger(__name__)

ZERO = Decimal(0)

# Card states. pending/armed wait for a press; the rest are final or in flight.
PENDING, ARMED, CONFIRMED, PLACED, FAILED, EXPIRED, CANCELLED = (
    "pending", "armed", "confirmed", "placed", "failed", "expired", "cancelled",
)
WAITING = (PENDING, ARMED)
SETTLED = (PLACED, FAILED, EXPIRED, CANCELLED)


@dataclass(frozen=True)
class Card:
    """A message to show: HTML text and its buttons."""

    card_id: int | None
    text: str
    buttons: Keyboard
    alert: str | None = None  # a short popup for the presser (answerCallbackQuery)


@dataclass(frozen=True)
class Press:
    """What a press decided before any exchange call (see Trading.take_press)."""

    alert: str | None  # the answer to the press, shown at once
    card: Card | None  # the card's new look; None: `execute` must send it first
    interim: Card | None = None  # what the card shows while it is being sent
    # The card's row as the claim left it: `execute` sends it without reading it again
    # (one database round trip less between the press and POST /order).
    claimed: OrderCard | None = None


@dataclass(frozen=True)
class Plan:
    """Exactly what will be sent; stored as the card's JSON (its `intent` column)."""

    kind: str  # order | close | cancel | cancel_all | leverage
    network: str
    symbol: str | None = None
    side: Side | None = None
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
    # Issue #14 (bot/trading/stops.py): a trailing stop's signed pegOffsetValue (also the
    # SL of an order's exits), and each take-profit's size where shares were given.
    peg_offset: Decimal | None = None
    tp_qtys: tuple[Decimal, ...] = ()

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
            peg_offset=dec(data.get("peg_offset")),
            tp_qtys=tuple(Decimal(x) for x in data.get("tp_qtys") or ()),
        )


def _buttons(card_id: int, confirm_label: str = "Confirm", action: CardAction = "c"
             ) -> Keyboard:
    return [[button(f"✅ {confirm_label}", CardPress(action, card_id)),
             button("✖️ Cancel", CardPress("x", card_id))]]


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


class CardBook:
    """The card rows: stored, claimed by one atomic UPDATE, finished, shown."""

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

    async def _user(self, user_id: int) -> User:
        async with self.db.session() as s:
            user = await s.get(User, user_id)
        return user or User(id=user_id)

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
        # The clOrdID is random and stored with the card before anything is sent: an order
        # whose answer was lost is looked up by it, never sent again.
        row = OrderCard(
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

    async def attach_message(self, card_id: int, message_id: int) -> None:
        async with self.db.session() as s:
            row = await s.get(OrderCard, card_id)
            if row is not None:
                row.message_id = message_id
                s.add(row)
                await s.commit()

    async def pressed_on(self, card_id: int, chat_id: int, message_id: int) -> None:
        """A press arrived from this message: a card whose message id was never recorded
        (the process died between sending the card and `attach_message`) gets it now, or
        the settling and the repair sweep, which edit by that id, could never reach it.
        Only a card of this chat without one: a forged press cannot move another's."""
        async with self.db.session() as s:
            await s.exec(update(OrderCard).where(
                col(OrderCard.id) == card_id, col(OrderCard.chat_id) == chat_id,
                col(OrderCard.message_id).is_(None)).values(message_id=message_id))
            await s.commit()

    async def card_shown(self, card_id: int, ok: bool, text: str) -> None:
        """Telegram confirmed (ok) or refused an edit of the card to `text`. The card is
        up to date only when that text is what its row says now: an edit made from an
        older read (a second press that saw "Sending…", an edit that landed late) shows a
        state the row has left, and must leave the card to the sweep. `card_stale` is set
        with every change of state (`_claim`, `_finish`), cleared only here."""
        async with self.db.session() as s:
            row = await s.get(OrderCard, card_id, with_for_update=True)
            if row is None:
                return
            shown = ok and text == self._render(row).text
            if row.card_stale != (not shown):
                row.card_stale = not shown
                s.add(row)
            await s.commit()

    async def show_outcome(self, notifier: Notifier, card_id: int, chat_id: int,
                           message_id: int, text: str, *, resend: bool = True) -> bool:
        """Edit the card's message to `text` (no buttons) and record whether it shows it
        (see `card_edited`)."""
        edited = await notifier.edit(chat_id, message_id, text, buttons=None)
        return await self.card_edited(notifier, card_id, chat_id, message_id, edited, text,
                                      resend=resend)

    async def card_edited(self, notifier: Notifier, card_id: int, chat_id: int,
                          message_id: int, edited: Edited, text: str, *,
                          shows: str | None = None, resend: bool = True,
                          settled_only: bool = False, thread_id: int | None = None) -> bool:
        """An edit of the card's message to `text` went as `edited`: record whether the
        card shows what its row says (`shows`, when `text` adds to it). A message deleted
        since (the user cleaned up the chat) can never be edited: with `resend` the text
        is sent anew and becomes the card's message, so an outcome is not left unseen;
        without it (an expiry nobody waits for) there is nothing to show. Either way the
        sweep stops knocking on a message that is gone. `settled_only`: only an outcome is
        sent anew (a press that found "Sending…" gone leaves it to the press that sends)."""
        shown = bool(edited)
        if edited is Edited.GONE:
            shown = not resend or await self._send_anew(
                notifier, card_id, chat_id, message_id, text, settled_only=settled_only,
                thread_id=thread_id)
        await self.card_shown(card_id, shown, text if shows is None else shows)
        return shown

    async def _send_anew(self, notifier: Notifier, card_id: int, chat_id: int,
                         message_id: int, text: str, *, settled_only: bool,
                         thread_id: int | None) -> bool:
        """Send `text` as the card's new message in place of `message_id`, which is gone.
        One atomic UPDATE takes the old id off the row first: of two that found it gone
        (a double tap, a press and the sweep), one sends and the other sends nothing (it
        leaves the card to the sweep, which at most edits the new message to the same
        text)."""
        claim = (update(OrderCard)
                 .where(col(OrderCard.id) == card_id, col(OrderCard.message_id) == message_id)
                 .values(message_id=None))
        if settled_only:
            claim = claim.where(col(OrderCard.state).in_(SETTLED))
        async with self.db.session() as s:
            result = await s.exec(claim)
            await s.commit()
        if result.rowcount != 1:
            return False
        sent = None
        try:
            sent = await notifier.send(chat_id, text, kind="card", thread_id=thread_id)
        finally:
            # Not sent: the old id goes back, so the sweep tries again later.
            await self.attach_message(card_id, message_id if sent is None else sent.message_id)
        return sent is not None

    async def stale_cards(self, older_than: timedelta = timedelta(seconds=3)
                          ) -> list[OrderCard]:
        """Cards whose outcome is known but whose message may not show it: their edit
        failed, or the process stopped before it. Young ones are still being edited by
        the press that settled them. A card in flight whose "looking it up" note (its
        error) could not be shown counts too: it would otherwise keep its Confirm button
        until the lookup settles it, minutes later."""
        q = select(OrderCard).where(
            col(OrderCard.card_stale).is_(True),
            or_(col(OrderCard.state).in_(SETTLED),
                and_(col(OrderCard.state) == CONFIRMED, col(OrderCard.error).is_not(None))),
            col(OrderCard.message_id).is_not(None),
            col(OrderCard.updated_at) <= self.now() - older_than)
        async with self.db.session() as s:
            return list((await s.exec(q)).all())

    async def _claim(self, card_id: int, user_id: int, source: tuple[str, ...], target: str,
                     *, check_expiry: bool = True, now: datetime | None = None,
                     intent: dict[str, Any] | None = None) -> bool:
        """The single atomic step that decides who acts on a card (`intent`: its JSON
        rewritten in the same statement)."""
        now = now or self.now()
        stmt = (
            update(OrderCard)
            .where(col(OrderCard.id) == card_id, col(OrderCard.user_id) == user_id,
                   col(OrderCard.state).in_(source))
            .values(state=target, updated_at=now, card_stale=True,
                    **({"confirmed_at": now} if target == CONFIRMED else {}),
                    **({"intent": intent} if intent is not None else {}))
        )
        if check_expiry:
            stmt = stmt.where(col(OrderCard.expires_at) > now)
        async with self.db.session() as s:
            result = await s.exec(stmt)
            await s.commit()
        return bool(result.rowcount == 1)

    async def current(self, card_id: int, alert: str | None = None) -> Card:
        """The card as its stored state says it should look now."""
        async with self.db.session() as s:
            row = await s.get(OrderCard, card_id)
        assert row is not None
        return self._render(row, alert)

    def _render(self, row: OrderCard, alert: str | None = None) -> Card:
        card_id = row.id
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
            return Card(card_id, "", [], alert=alert)
        return Card(card_id, self._final(plan, text), [], alert=alert)

    @staticmethod
    def _final(plan: Plan, outcome: str) -> str:
        return f"<b>{html.escape(plan.summary)}</b>\n{outcome}"

    @staticmethod
    def _placed_text(plan: Plan, row: OrderCard) -> str:
        if plan.kind in ("cancel", "cancel_all", "amend_stop", "set_sl", "set_tps"):
            return f"✅ {html.escape(row.error or 'Done.')}"
        if plan.kind == "leverage":
            return "✅ Leverage changed."
        if plan.kind == "panic":  # the per-symbol report (bot/trading/panic.py)
            return "✅ Panic done.\n" + html.escape(str(row.intent.get("report", "")))
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

    async def _finish(self, card_id: int, state: str, *, order_id: str | None = None,
                      error: str | None = None, extra: dict[str, Any] | None = None) -> None:
        async with self.db.session() as s:
            row = await s.get(OrderCard, card_id)
            assert row is not None
            if row.state != state:
                row.card_stale = True  # what the card shows is behind the row from now
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

    async def card_by_cl_ord_id(self, cl_ord_id: str) -> OrderCard | None:
        async with self.db.session() as s:
            return (await s.exec(select(OrderCard).where(
                OrderCard.cl_ord_id == cl_ord_id))).first()

    async def _audit(self, row: OrderCard, action: str, **detail: str) -> None:
        async with self.db.session() as s:
            s.add(AuditLog(user_id=row.user_id, chat_id=row.chat_id, action=action,
                           detail={"intent": row.id, "cl_ord_id": row.cl_ord_id, **detail}))
            await s.commit()


def _px(value: Decimal) -> str:
    """A price stored already rounded to the tick, shown with its own decimals (45,000.0)."""
    exp = value.as_tuple().exponent
    return fmt.num(value, max(0, -exp) if isinstance(exp, int) else None)
