"""The sandbox demo of issue #14: a position managed only by the position card's buttons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_position_managed_only_by_buttons(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "MASTER_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "sandbox", "--script",
         str(ROOT / "examples" / "sandbox-positions.txt"), "--out", str(tmp_path / "out")],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the fill comes with the position's card, and its buttons manage the position
    fill = out.split("✅ Order filled: Buy 400 XBTUSD", 1)[1]
    assert fill.split("\n")[2].strip().startswith("XBTUSD Long 400"), fill[:400]
    assert "[1] Close 25 %" in fill.split("You ▸", 1)[0]
    assert "CLOSE 100 of 400 XBTUSD long" in out and "XBTUSD Long 300" in out
    assert "[4] SL → break-even" in out and "Stop-loss hit: Sell 300 XBTUSD" in out
    assert "Stop placed at 50,075.2." in out  # break-even: entry plus fees, on the tick
    assert "BitMEX trails it (TrailingStopPeg)" in out
    assert "SL 62,390.0 · trailing 610.0" in out and "SL 63,390.0 · trailing 610.0" in out
    assert out.rstrip().endswith("No open positions (testnet).\nYou ▸ :quit") or \
        "No open positions (testnet)." in out.split("63360", 1)[1]
    assert "Traceback" not in out and "went wrong" not in out
