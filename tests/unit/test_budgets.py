"""The limiters and the candle cache behind the shared budgets, on simulated time."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bot.exchange.types import Candle
from bot.ratelimit import OncePer, PublicQuota, SlidingLimit
from bot.reports.candles import MAX_AGE, CandleCache


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_once_per_tells_once_per_window_and_stays_bounded() -> None:
    clock = Clock()
    once = OncePer(3600, clock=clock, max_keys=1000)
    assert once.due(1) and not once.due(1)
    clock.now = 3599.9
    assert not once.due(1)
    clock.now = 3600
    assert once.due(1)
    for uid in range(10_000):  # a flood of new ids
        once.due(uid + 100)
    assert len(once) == 1000


def test_sliding_limit_counts_exactly_over_the_window() -> None:
    clock = Clock()
    limit = SlidingLimit(3, 600, clock=clock)
    assert [limit.take("u") for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now = 100
    assert limit.take("u") == 500  # the first of the three leaves the window at 600
    assert limit.take("other") == 0.0
    clock.now = 600
    assert limit.take("u") == 0.0
    limit.give_back("u")
    assert limit.take("u") == 0.0


def test_public_quota_ceiling_does_not_spend_the_users_share() -> None:
    clock = Clock()
    quota = PublicQuota(per_user_per_minute=4, burst=4, total_per_minute=6, total_burst=6,
                        clock=clock)
    assert all(quota.take(1)[0] == 0 for _ in range(4))
    wait, everyone = quota.take(1)
    assert wait > 0 and not everyone
    assert quota.take(2) == (0.0, False) and quota.take(2) == (0.0, False)
    wait, everyone = quota.take(3)  # six spent in all
    assert wait > 0 and everyone
    clock.now = 10  # the ceiling refills one call: user 3's share is still whole
    assert quota.take(3) == (0.0, False)


def _candles(n: int) -> list[Candle]:
    t = datetime(2027, 1, 15, tzinfo=UTC)
    return [Candle("XBTUSD", t, Decimal(1), Decimal(2), Decimal(1), Decimal(2), Decimal(0))
            for _ in range(n)]


def test_candles_are_kept_until_their_bin_closes_and_never_past_max_age() -> None:
    clock = Clock(1_800_000_030.0)  # 30 s into a minute, 30 s into an hour
    cache = CandleCache(clock=clock)
    cache.put("mainnet", "XBTUSD", "1m", 100, _candles(100))
    cache.put("mainnet", "XBTUSD", "1h", 100, _candles(100))
    assert cache.get("mainnet", "XBTUSD", "1m", 50) is not None
    assert cache.get("mainnet", "XBTUSD", "1m", 200) is None  # more than fetched
    assert cache.get("testnet", "XBTUSD", "1m", 50) is None
    clock.now += 30  # the minute bin closed
    assert cache.get("mainnet", "XBTUSD", "1m", 50) is None
    assert cache.get("mainnet", "XBTUSD", "1h", 50) is not None
    clock.now = 1_800_000_030.0 + MAX_AGE
    assert cache.get("mainnet", "XBTUSD", "1h", 50) is None


def test_a_short_history_serves_any_count() -> None:
    cache = CandleCache(clock=Clock(1_800_000_000.0))
    cache.put("mainnet", "NEWUSD", "1h", 100, _candles(7))  # a new listing: 7 hours of it
    rows = cache.get("mainnet", "NEWUSD", "1h", 500)
    assert rows is not None and len(rows) == 7


async def test_charts_drawn_at_once_in_threads_come_out_as_drawn_alone() -> None:
    import asyncio
    from datetime import timedelta

    from bot.reports import charts

    t0 = datetime(2027, 1, 15, tzinfo=UTC)
    rows = [(t0 + timedelta(hours=i), 100.0 + i % 5, 106.0 + i % 5, 98.0, 101.0 + i % 3)
            for i in range(40)]
    alone = charts.candles(rows, "XBTUSD · 1h", 3600)
    together = await asyncio.gather(*(charts.render(charts.candles, rows, "XBTUSD · 1h", 3600)
                                      for _ in range(6)))
    assert all(png == alone for png in together)  # no state shared between figures


def test_charts_never_load_pyplot() -> None:
    import subprocess
    import sys

    # No pyplot: its global figure registry is what threads must not share.
    probe = ("import sys; from datetime import datetime, UTC; from bot.reports import charts; "
             "charts.equity([(datetime(2027, 1, 1, tzinfo=UTC), 1.0)], 't', 'XBT'); "
             "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
