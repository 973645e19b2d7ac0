"""BitMEX judges api-expires by ITS clock: the client keeps exchange time, learned from Date.

A host clock ahead of BitMEX's made the client give up on a lost order ("not placed")
while BitMEX could still take it; the user sent it again and it filled twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.errors import AuthError, NotPlaced
from bot.exchange import auth
from bot.exchange.client import BitmexClient
from bot.sandbox.bitmex.server import BitmexSimulator
from tests.exchange.test_client import drive_time, make_client, position_qty, posts

AHEAD, BEHIND, NONE = -20.0, 20.0, 0.0  # BitMEX's clock relative to the bot's host


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def skewed_client(sim: BitmexSimulator, session: aiohttp.ClientSession,
                  skew: float) -> tuple[BitmexClient, list[float]]:
    """A client whose answers get lost after 0.3 s, with BitMEX's clock `skew` s off;
    and its host clock's driven seconds (drive_time)."""
    client = make_client(sim, session, timeout=0.3)
    sim.clock_skew = skew
    return client, drive_time(client, sim)


async def let_time_pass(sim: BitmexSimulator, host: list[float], seconds: int) -> None:
    """Second by second, for BitMEX and for the host (drive_time's clock), so a held
    order reaches the engine when it would in real life."""
    for _ in range(seconds):
        host[0] += 1
        sim.engine.clock.advance(1)
        sim.clock_skew += 1
        for _ in range(3):
            await asyncio.sleep(0)


async def place_as_a_user_would(client: BitmexClient, cl: str) -> str:
    """Confirm a market buy; told "not placed", the user confirms it again."""
    try:
        order = await client.place_order("XBTUSD", "Buy", 100, "Market", cl_ord_id=cl)
    except NotPlaced:
        order = await client.place_order("XBTUSD", "Buy", 100, "Market", cl_ord_id=cl + "-2")
        return "resent:" + order.ord_status
    return order.ord_status


async def test_date_header_is_the_exchange_clock(
    simulator: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    simulator.clock_skew = -3600.0
    async with session.get(simulator.url + "/api/v1/instrument/active") as resp:
        date = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
    assert abs(date - simulator.exchange_time()) <= 1.5
    async with session.get(simulator.url + "/api/v1/nope") as resp:  # errors too
        assert resp.status == 404 and "Date" in resp.headers


async def test_api_expires_is_judged_by_the_exchange_clock(
    simulator: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    key, secret = simulator.add_account()
    simulator.clock_skew = 120.0  # BitMEX two minutes ahead: our "valid 30 s" is past
    req = auth.build_request("GET", "/position", key=key, secret=secret,
                             expires=auth.expires_at(expires_in=30))
    async with session.get(simulator.url + req.path, headers=req.headers) as resp:
        assert resp.status == 401
        assert "This request has expired" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize("skew", [AHEAD, NONE, BEHIND], ids=["ahead", "none", "behind"])
async def test_an_order_bitmex_takes_late_fills_once(
    simulator: BitmexSimulator, session: aiohttp.ClientSession, skew: float
) -> None:
    client, host = skewed_client(simulator, session, skew)
    simulator.faults.engine_lag(1, seconds=12)
    assert await place_as_a_user_would(client, "lag12") == "Filled"
    await let_time_pass(simulator, host, 60)  # anything still held arrives now
    assert posts(simulator, client) == ["lag12"] and position_qty(simulator, client) == 100


@pytest.mark.parametrize("skew", [AHEAD, NONE, BEHIND], ids=["ahead", "none", "behind"])
@pytest.mark.parametrize("learned", [False, True], ids=["first-call", "clock-learned"])
async def test_a_lost_order_is_never_filled_twice(
    simulator: BitmexSimulator, session: aiohttp.ClientSession, skew: float, learned: bool
) -> None:
    # Held 30 s: past a 15 s api-expires by BitMEX's clock, but not past one signed by a
    # host clock 20 s ahead - which BitMEX keeps accepting until 35 s.
    client, host = skewed_client(simulator, session, skew)
    if learned:
        await client.positions()
        assert abs(client.exchange_clock.offset - skew) <= 1.5
    simulator.faults.engine_lag(1, seconds=30)
    outcome = await place_as_a_user_would(client, "lag30")
    await let_time_pass(simulator, host, 60)
    assert position_qty(simulator, client) == 100, outcome  # never 200
    assert len(posts(simulator, client)) == 1


async def test_an_expired_answer_relearns_the_clock_and_signs_again_once(
    simulator: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    client, _ = skewed_client(simulator, session, 120.0)  # our first request is "expired"
    order = await client.place_order("XBTUSD", "Buy", 100, "Market", cl_ord_id="resign")
    assert order.ord_status == "Filled" and position_qty(simulator, client) == 100
    assert abs(client.exchange_clock.offset - 120) <= 1.5
    assert await client.positions()  # signed in exchange time from now on


async def test_an_expired_answer_is_re_signed_only_once(
    simulator: BitmexSimulator, session: aiohttp.ClientSession
) -> None:
    client = make_client(simulator, session)
    sent: list[str] = []

    def stale(req: auth.SignedRequest) -> auth.SignedRequest:
        sent.append(req.path)  # a request held somewhere until long after it was signed
        return dataclasses.replace(req, headers={**req.headers, "api-expires": "1"})

    client.after_sign = stale
    with pytest.raises(AuthError, match="has expired"):
        await client.positions()
    assert len(sent) == 2
