"""The performance benches at a tiny size, through their command lines, so `make test`
catches a broken bench: bench/feeds.py, bench/alerts_load.py, bench/confirm_latency.py,
bench/throughput.py and bench/concurrency.py.

The figures are the benches' business (the machine is shared); these check that each ran to
its end and printed what a reader of its table needs (all delivered, no 429, every alert
loaded, a number in every row).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests import dbs

ROOT = Path(__file__).resolve().parents[1]



def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return done.stdout


def row(out: str, starts: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith(f"| {starts}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def number(cell: str) -> float:
    assert re.fullmatch(r"\d+(\.\d+)?", cell), cell
    return float(cell)


def test_confirm_latency_bench_runs_at_a_tiny_size() -> None:
    out = run("confirm_latency.py", "--orders", "3")
    assert "orders confirmed: 3, each POST /order sent once" in out
    for label in ("press → POST /order", "press → answered", "bot-side"):
        p50, p99 = (number(c) for c in row(out, label)[1:3])
        assert 0 < p50 <= p99


def test_throughput_bench_runs_at_a_tiny_size() -> None:
    out = run("throughput.py", "--updates", "20", "--users", "5", "--rounds", "1",
              "--no-flood")
    for label in ("bare PTB", "our bot, update dedup off", "our bot, update dedup on",
                  "our bot as deployed"):
        assert number(row(out, label)[1]) > 0
    assert re.search(r"dedup on / off: \d+\.\d\d", out)


def test_concurrency_bench_runs_at_a_tiny_size() -> None:
    out = run("concurrency.py", "--users", "3", "--latency", "0.2")
    ours = number(row(out, "our bot (per-chat")[1])
    bare = number(row(out, "bare PTB app, sequential")[1])
    # Three users, 0.2 s each: one after another takes at least 0.6 s, side by side not.
    assert bare >= 0.6 > ours


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
