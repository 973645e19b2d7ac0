"""Presses on a card: who may press, the second confirmation, the atomic claim."""

from __future__ import annotations

import html

from bot import fmt
from bot.db.models import OrderCard
from bot.trading.cards import (
    ARMED,
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    FAILED,
    PENDING,
    WAITING,
    Card,
    Plan,
    Press,
    _buttons,
)
from bot.trading.place import Placement

KEY_CHANGED = ("your {network} key changed after this card was priced (another key is "
               "connected now), so nothing was sent. Ask again for a card on the new key")
KEY_GONE = ("no {network} key is connected any more, so nothing was sent")


class Presses(Placement):
    """Confirm, second confirm and cancel: only the owner, only with the same key, and
    only the press that wins the atomic claim sends anything."""

    async def press(self, user_id: int, action: str, card_id: int) -> Card:
        """A press made by other services (feeds): confirm (c), second confirm (2) or
        cancel (x). The caller shows the outcome itself, so the sweep leaves the card be."""
        taken = await self.take_press(user_id, action, card_id)
        card = taken.card if taken.card is not None else await self.execute(card_id,
                                                                            taken.claimed)
        if card.card_id is not None:
            await self.card_shown(card.card_id, True, card.text)
        return card

    async def take_press(self, user_id: int, action: str, card_id: int) -> Press:
        """The database half of a press, no exchange call: who may press, and whether the
        card is now claimed for sending. The chat answers the press with `alert` at once;
        when `card` is None, `execute` does the slow half."""
        # A read outside SQLite's writer turn: the press must not queue behind other
        # writers (fills, alerts) just to look at its card; the claim below decides.
        async with self.db.read() as s:
            row = await s.get(OrderCard, card_id)
        if row is None:
            return Press("This card is no longer valid.", Card(None, "", []))
        if row.user_id != user_id:
            alert = "Not your order: only the person who asked can confirm or cancel it."
            return Press(alert, Card(None, "", [], alert=alert))
        plan = Plan.from_json(row.intent)
        if action == "x":
            if await self._claim(card_id, user_id, WAITING, CANCELLED, check_expiry=False):
                await self._audit(row, "card_cancelled")
                return Press("Cancelled", Card(
                    card_id, self._final(plan, "✖️ Cancelled — nothing was sent."), [],
                    alert="Cancelled"))
            return self._as_press(await self.current(card_id, alert="Already handled."))
        if "key" in row.intent:  # cards stored before keys were recorded carry none
            now_key = await self._key_tag(user_id, plan.network)
            if now_key != row.intent["key"]:
                why = (KEY_CHANGED if now_key else KEY_GONE).format(network=plan.network)
                if await self._claim(card_id, user_id, WAITING, FAILED):
                    await self._finish(card_id, FAILED, error=why)
                    await self._audit(row, "card_refused", reason="key changed")
                    return self._as_press(
                        await self.current(card_id, alert="Not sent: your key changed"))
                return self._as_press(await self._after_lost_claim(row))
        if action == "c" and self._needs_second(plan):
            if await self._claim(card_id, user_id, (PENDING,), ARMED):
                size = (f"of about ${fmt.num(plan.usd, 0)} — above" if plan.usd is not None
                        else "whose USD value I could not check against")
                text = (f"<b>{html.escape(plan.summary)}</b>\n⚠️ Mainnet order {size} your "
                        f"${fmt.num(self.mainnet_confirm_usd, 0)} safety threshold.\n"
                        "Press <b>Place it</b> to send it to BitMEX.")
                return Press("Confirm once more", Card(
                    card_id, text, _buttons(card_id, "Place it", "2"),
                    alert="Confirm once more"))
            return self._as_press(await self._after_lost_claim(row))
        source = (ARMED,) if action == "2" else (PENDING,)
        now = self.now()
        # The send window stored with the claim itself: one write less before POST /order.
        intent = row.intent
        send_by = await self._send_by_at(row, plan, now)
        if send_by is not None:
            intent = {**intent, "send_by": send_by}
        if not await self._claim(card_id, user_id, source, CONFIRMED, now=now, intent=intent):
            return self._as_press(await self._after_lost_claim(row))
        # What the claim wrote, so the row needs no second read before it is sent.
        row.state, row.updated_at, row.confirmed_at, row.card_stale = CONFIRMED, now, now, True
        row.intent = intent
        return Press("Sending to BitMEX…", None,
                     Card(card_id, self._final(plan, "⏳ Sending to BitMEX…"), []), claimed=row)

    @staticmethod
    def _as_press(card: Card) -> Press:
        return Press(card.alert, card)

    def _needs_second(self, plan: Plan) -> bool:
        # A notional the bot could not price in USD counts as large: ask twice.
        return (plan.network == "mainnet" and plan.kind == "order"
                and (plan.usd is None or plan.usd > self.mainnet_confirm_usd))

    async def _after_lost_claim(self, row: OrderCard) -> Card:
        assert row.id is not None
        if row.state in WAITING and row.expires_at <= self.now():
            await self._claim(row.id, row.user_id, WAITING, EXPIRED, check_expiry=False)
            return await self.current(row.id, alert="This card has expired; nothing was sent.")
        return await self.current(row.id, alert="Already handled.")
