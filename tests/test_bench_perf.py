"""bench/feeds.py and bench/alerts_load.py at a tiny size, through their command lines, so
they cannot rot. The figures are the benches' business; these check that every stage ran
and said what a reader of the table needs (all delivered, no 429, every alert loaded)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import dbs

ROOT = Path(__file__).resolve().parents[1]


def test_feeds_bench_runs_at_a_tiny_size() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "feeds.py"), "12", "--time-scale", "4"],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert "delivery queue alone: 12 ready messages" in out and "429s 0" in out
    assert "12 private previews delivered in" in out
    assert "previews with Confirm/Cancel: 12/12; 429 answers during the run: 0" in out
    assert "fan-out report: 12 previews, 0 told, 0 unreachable" in out
    assert "fan-out / goal (1.1x the floor):" in out


def test_alerts_load_bench_runs_at_a_tiny_size() -> None:
    server = dbs.server_url()
    db = ["--db", "both", "--pg-url", server] if server else ["--db", "sqlite"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "alerts_load.py"), "2000", *db],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    out = done.stdout
    assert done.returncode in (0, 1), out + done.stderr[-3000:]  # 1: a goal missed (load)
    rows = [line.split() for line in out.splitlines()
            if line.startswith(("sqlite ", "postgres "))]
    assert [r[0] for r in rows] == (["sqlite", "postgres"] if server else ["sqlite"]), out
    for r in rows:
        start_s, rss_after = float(r[3]), float(r[11])
        assert 0 < start_s and rss_after > 0
    assert "peak RSS of the run" in out
