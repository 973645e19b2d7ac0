"""A group upgraded to a supergroup keeps its alerts, liquidation feed and signal feed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest_asyncio
from sqlmodel import select

from bot.db.models import Alert, Feed, LiqFeedSubscription
from tests.e2e.harness import Harness

SYM = "XBTUSD"


@pytest_asyncio.fixture
async def market(h: Harness) -> AsyncIterator[Harness]:
    mark = h.sim.engine.instrument(SYM).mark
    yield h
    h.sim.engine.set_mark(SYM, mark)


async def chat_ids(h: Harness) -> set[int]:
    async with h.svc.db.session() as s:
        ids = {a.chat_id for a in (await s.exec(select(Alert))).all()}
        ids |= {f.chat_id for f in (await s.exec(select(Feed))).all()}
        ids |= {x.chat_id for x in (await s.exec(select(LiqFeedSubscription))).all()}
    return ids


async def test_upgrade_moves_everything_and_alerts_post_in_the_new_chat(market: Harness) -> None:
    h = market
    await h.svc.market_hub.wait_ready("mainnet")
    alice = h.person("Alice")
    bob = h.person("Bob")
    group = h.group("Desk", [bob], [alice], bot_admin=True)
    p0 = h.sim.engine.instrument(SYM).mark
    await alice.send(f"/alert xbtusd above {p0 + 500}", chat=group)
    await alice.send("/liqfeed btc min $100k", chat=group)
    await alice.send("/feed on desk", chat=group)
    assert await chat_ids(h) == {group.id}

    super_ = h.emu.upgrade_to_supergroup(group)
    await h.settle()
    assert await chat_ids(h) == {super_.id}

    before = len(h.emu.bot_messages(super_, bot=h.bot_username))
    h.sim.engine.set_mark(SYM, p0 + Decimal(600))
    msg = await h.emu.wait_bot_message(super_, before, bot=h.bot_username)
    assert f"{SYM} above" in (msg.content or "")


async def test_a_missed_upgrade_is_followed_when_sending(market: Harness) -> None:
    h = market
    await h.svc.market_hub.wait_ready("mainnet")
    alice = h.person("Alice")
    group = h.group("Quiet", [], [alice], bot_admin=True)
    p0 = h.sim.engine.instrument(SYM).mark
    await alice.send(f"/alert xbtusd above {p0 + 500}", chat=group)
    # The upgrade happened while the bot was away: only the old id's 400 tells it.
    new = h.emu.group("Quiet", [], [alice.user], supergroup=True, bots=[h.bot_username],
                      bot_admin=True)
    group.migrated_to = new.id
    h.sim.engine.set_mark(SYM, p0 + Decimal(600))
    msg = await h.emu.wait_bot_message(new, 0, bot=h.bot_username)
    assert f"{SYM} above" in (msg.content or "")
    assert await chat_ids(h) == {new.id}
