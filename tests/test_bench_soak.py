"""bench/soak.py for 20 s with 20 users, through its command line, so it cannot rot.

The figures are the bench's business; this checks that the run did what its table claims:
updates went out and were all answered without an error, the minute's row and the RSS
verdict were printed, and the plot was written.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import dbs

ROOT = Path(__file__).resolve().parents[1]


def test_soak_bench_runs_for_twenty_seconds(tmp_path: Path) -> None:
    server = dbs.server_url()
    db = ["--db", "postgres", "--pg-url", server] if server else ["--db", "sqlite"]
    png = tmp_path / "soak.png"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), *db, "--minutes", str(20 / 60),
         "--users", "20", "--rate", "4", "--sample-seconds", "2", "--plot", str(png)],
        capture_output=True, text=True, timeout=150, cwd=ROOT)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    row = next(line for line in out.splitlines() if line.startswith("|   1 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    sent, answered = int(cells[1]), int(cells[2])
    assert sent >= 40 and answered == sent, row
    p50, p99 = (float(x) for x in cells[3].split(" / "))
    assert 0 < p50 <= p99, row
    assert cells[5].startswith("0 "), row  # no error reply, handler error, log error, loss
    assert float(cells[-1]) > 0, row  # RSS
    assert "slope" in out and ("flat" in out or "too short" in out), out
    assert png.stat().st_size > 10_000
