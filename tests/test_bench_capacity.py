"""bench/capacity.py at a tiny scale, through its command line, so it cannot rot.

50 users, 10 connected accounts, 500 alerts, 2 feeds; one load step of 4 updates/s for 2 s.
The figures themselves are the bench's business; this checks that every stage ran and
reported something a reader of the table would trust: the bot started and got ready,
every update was answered, the alert burst was told, the streams came up.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests import dbs

ROOT = Path(__file__).resolve().parents[1]


def test_capacity_bench_runs_at_a_tiny_scale() -> None:
    server = dbs.server_url()
    db = ["--db", "postgres", "--pg-url", server] if server else ["--db", "sqlite"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "capacity.py"), *db, "--scale", "0.005",
         "--rates", "4", "--step-seconds", "2", "--idle-seconds", "1"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert "every update answered and every alert told: yes" in out

    def cell(row: str) -> str:
        line = next(line for line in out.splitlines() if line.startswith(f"| {row}"))
        return line.split("|")[2].strip()

    assert cell("users / accounts / alerts / feeds") == "50 / 10 / 500 / 2"
    ready = float(cell("start-up to /readyz 200, s"))
    assert 0 < ready <= float(cell("start-up to all streams up + alerts loaded, s"))
    answered, offered = cell("load 4/s: answered updates/s").split(" of ")
    assert answered == offered
    p50, p99 = (float(x) for x in cell("load 4/s: reply p50 / p99, ms").split(" / "))
    assert 0 < p50 <= p99
    told = re.match(r"(\d+)/(\d+) in", cell("alert burst during 4/s: told / s / msg/s"))
    assert told is not None and told[1] == told[2] == "5"
    rss = cell("RSS after start / peak, MB").split(" / ")
    assert 0 < float(rss[0]) <= float(rss[1])
    assert cell("updates ending in the error handler") == "0"
