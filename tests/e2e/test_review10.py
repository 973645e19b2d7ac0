"""Review of issue #10 on the merged code: the e2e world is BitMEX as strict as it is."""

from __future__ import annotations

import aiohttp

from bot.sandbox.bitmex import RateLimitConfig
from tests.e2e.harness import Harness


async def test_the_shared_world_has_bitmexs_own_rest_limits(h: Harness) -> None:
    # A kinder world (100,000 public calls a minute) let a bot that floods the public
    # API pass every test; BitMEX allows 30 a minute per address without a key.
    assert h.sim.rate_limit == RateLimitConfig()
    h.sim.reset_rate_limits()  # whatever the bot's start-up spent is not counted here
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(31):
            async with http.get(f"{h.sim.url}/api/v1/instrument/active") as resp:
                statuses.append(resp.status)
                remaining = resp.headers.get("x-ratelimit-remaining")
    assert statuses[:30] == [200] * 30, statuses
    assert statuses[30] == 429 and remaining == "0"
