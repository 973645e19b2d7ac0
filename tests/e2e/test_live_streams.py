"""Never dark, never banned: private streams survive refused subscribes and lost logins,
and hundreds of accounts share a few multiplexed sockets within BitMEX's 60 connects/hour."""

from __future__ import annotations

import asyncio

from bot.db.models import User
from bot.live import LiveUpdates
from tests.e2e.harness import Harness, Person

# Retry timings scaled down, so that the tests wait on events, not on the clock.
FAST = {"auth_timeout": 0.2, "resubscribe_base": 0.05, "resubscribe_max": 0.2}


def live(h: Harness) -> LiveUpdates:
    return h.svc.live


def market_buy(h: Harness, key: str, qty: int = 100) -> str:
    row = h.sim.engine.place_order(h.sim.account(key).id, {
        "symbol": "XBTUSD", "side": "Buy", "orderQty": qty, "ordType": "Market"})
    return str(row["orderID"])


def count(p: Person, needle: str) -> int:
    return sum(needle in t for t in p.bot_texts)


async def wait_text(h: Harness, p: Person, needle: str, n: int = 1,
                    timeout: float = 10.0) -> None:  # noqa: ASYNC109
    try:
        await h.emu.wait_for(lambda: count(p, needle) >= n, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"{needle!r} x{n} never arrived:\n{p.transcript}") from None


async def test_refused_private_subscribe_then_a_fill_is_reported(h: Harness) -> None:
    live(h).stream_options.update(FAST)
    h.sim.faults.ws.refuse_subscribe(table="execution")
    alice, key = await h.connected("Alice")
    market_buy(h, key)  # before the refused subscribe was retried, or right after
    await wait_text(h, alice, "Order filled")
    await live(h).wait_ready(alice.id)
    market_buy(h, key)
    await wait_text(h, alice, "Order filled", 2)
    await h.emu.idle(timeout=5, quiet=0.3)
    assert count(alice, "Order filled") == 2, alice.transcript


async def test_dropped_login_is_sent_again_and_nothing_missed(h: Harness) -> None:
    live(h).stream_options.update(FAST)
    alice, key = await h.connected("Alice")
    await live(h).wait_ready(alice.id)
    h.sim.faults.ws.drop_auth()  # the next login is lost on the way
    await h.sim.faults.close_sockets()
    market_buy(h, key)  # while the stream is down, then not logged in
    await wait_text(h, alice, "Order filled")
    await live(h).wait_ready(alice.id)
    market_buy(h, key)
    await wait_text(h, alice, "Order filled", 2)
    await h.emu.idle(timeout=5, quiet=0.3)
    assert count(alice, "Order filled") == 2, alice.transcript


async def test_stream_down_for_minutes_is_told_once_and_again_when_back(h: Harness) -> None:
    live(h).stream_options.update({**FAST, "dark_after": 0.3})
    alice, key = await h.connected("Alice")
    await live(h).wait_ready(alice.id)
    h.sim.faults.ws.refuse_subscribe(n=10_000, table="execution")
    await h.sim.faults.close_sockets()
    await wait_text(h, alice, "lost the live updates")
    market_buy(h, key)  # nobody streams it
    await asyncio.sleep(0.4)  # longer than dark_after again: still told once
    assert count(alice, "lost the live updates") == 1, alice.transcript
    h.sim.faults.ws.clear()
    await wait_text(h, alice, "are back")
    await wait_text(h, alice, "Order filled")  # from trade history
    assert count(alice, "lost the live updates") == 1, alice.transcript


async def test_200_accounts_and_a_restart_stay_within_60_connects_an_hour(
        h: Harness) -> None:
    people = [h.person(f"T{i}") for i in range(200)]
    keys = [h.exchange_account() for _ in people]
    async with h.svc.db.session() as s:  # they have talked to the bot before
        for p in people:
            s.add(User(id=p.id))
        await s.commit()
    await asyncio.gather(*(h.svc.accounts.connect(p.id, "testnet", key, secret)
                           for p, (key, secret) in zip(people, keys, strict=True)))
    await asyncio.gather(*(live(h).wait_ready(p.id, within=30) for p in people))
    before = h.sim.ws_limit.used()
    assert before <= 2, before  # one socket for 200 streams and the market (+ REST-only)

    await h.restart()  # 200 streams come back at once, on the same few sockets
    await asyncio.gather(*(live(h).wait_ready(p.id, within=30) for p in people))
    for key, _ in keys:
        market_buy(h, key)
    await asyncio.gather(*(wait_text(h, p, "Order filled", timeout=30) for p in people))
    used = h.sim.ws_limit.used()  # the simulator's count over the (simulated) hour
    assert used <= 2 * before <= 60, used
    assert h.sim.ws_limit.refused == 0
    await h.emu.idle(timeout=5, quiet=0.3)
    assert all(count(p, "Order filled") == 1 for p in people)


async def test_a_key_refused_for_the_stream_is_told_with_the_reason(h: Harness) -> None:
    live(h).stream_options.update({**FAST, "dark_after": 0.3})
    alice, key = await h.connected("Alice")
    await live(h).wait_ready(alice.id)
    h.sim.account(key).enabled = False  # disabled on BitMEX's website
    await h.sim.faults.close_sockets()
    await wait_text(h, alice, "refused your key for live updates")
    assert "This key is disabled." in alice.last_text, alice.transcript
    assert "/connect testnet" in alice.last_text
