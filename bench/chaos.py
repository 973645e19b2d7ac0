"""Chaos restarts, the long run (issue #15, item 1): the bot killed with SIGKILL 200 times
at random points while people trade, set alerts and follow a feed, then 5 kills under each
fault; every invariant checked after every restart and at the end (tests/chaos/run.py).

Run: ``python bench/chaos.py`` (about 15 minutes on two cores);
``--kills N --fault-kills M --seed S --users U`` to change the run. The CI-sized run is
tests/chaos/test_chaos.py. Prints a summary: kills, restarts, invariant checks, time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos.run import FAULTS, chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=200, help="kills with no fault")
    parser.add_argument("--fault-kills", type=int, default=5, help="kills under each fault")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--users", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        try:
            report = asyncio.run(chaos(Path(tmp), kills=args.kills,
                                       faults=dict.fromkeys(FAULTS, args.fault_kills),
                                       seed=args.seed, users=args.users))
        except AssertionError as e:
            print(f"chaos: an invariant broke (seed {args.seed}): {e}")
            return 1
    print(report.summary())
    if report.repeats:
        print(f"told again, marked (in flight at a kill): {report.repeats}")
    print(f"{'fault':<22}{'kills':>6}")
    for name, n in report.by_fault.items():
        print(f"{name:<22}{n:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
