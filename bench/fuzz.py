"""The long stateful fuzz (issue #15 item 2): 100,000 steps of tests/e2e/test_state_machine.py.

    python bench/fuzz.py [STEPS]    # default 100000 (about an hour on two cores)

A new random sequence each run (CI replays one fixed sequence of 10,000 steps); a failure
prints hypothesis's @reproduce_failure blob, and `FUZZ_SHRINK=1` shrinks it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    steps = sys.argv[1] if len(sys.argv) > 1 else "100000"
    env = {**os.environ, "FUZZ_STEPS": steps, "FUZZ_RANDOM": "1"}
    return subprocess.call(
        [sys.executable, "-m", "pytest", "tests/e2e/test_state_machine.py", "-q", "-x", "-s",
         "-k", "promises"], cwd=ROOT, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
