"""Chaos restarts in CI: a real bot process killed with SIGKILL 27 times while people trade:
13 kills with nothing else wrong, then 2 under each fault (BitMEX engine lag, 503 storms,
load shedding, dropped sockets, slow answers; Telegram 429 storms, refused edits), about
three minutes on two cores (tests/chaos/run.py says what is checked).

The long run (200 kills) is `bench/chaos.py`."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.run import FAULTS, chaos


async def test_sigkill_at_random_points_breaks_no_promise(tmp_path: Path) -> None:
    report = await chaos(tmp_path, kills=13, faults=dict.fromkeys(FAULTS, 2), seed=15)
    print(report.summary())
    assert report.kills >= 20 and all(report.by_fault[f] == 2 for f in FAULTS)
    assert report.checks == report.restarts + 1
    # The run did what it says: orders were confirmed, filled and told, alerts fired.
    assert report.orders > 0 and report.fills > 0 and report.alerts_fired > 0
