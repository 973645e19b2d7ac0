"""Chaos restarts in CI: a real bot process killed with SIGKILL 20 times while people trade,
then a few more kills under each fault (tests/chaos/run.py says what is checked).

The long run (200 kills) is `bench/chaos.py`."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.run import FAULTS, chaos


async def test_sigkill_at_random_points_breaks_no_promise(tmp_path: Path) -> None:
    report = await chaos(tmp_path, kills=20, faults=dict.fromkeys(FAULTS, 2), seed=15)
    print(report.summary())
    assert report.kills >= 20 + 2 * len(FAULTS)
    assert report.checks == report.restarts + 1
    # The run did what it says: orders were confirmed, filled and told, alerts fired.
    assert report.orders > 0 and report.fills > 0 and report.alerts_fired > 0
