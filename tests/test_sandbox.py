"""The offline sandbox's script mode: a short conversation, start to finish, as CI runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_script_mode_runs_a_conversation(tmp_path: Path) -> None:
    script = tmp_path / "talk.txt"
    script.write_text("\n".join([
        "# comments are skipped",
        "/start",
        "/connect paper",
        "/buy 100 btc",
        "1",
        "/positions",
        "/close",
        "1",
        "/positions",
        ":mark XBTUSD 61000",
        ":nonsense",
        ":quit",
    ]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "MASTER_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "sandbox", "--script", str(script),
         "--out", str(tmp_path / "out")],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in out + proc.stderr
    assert "You ▸ /start" in out and "Hi You!" in out
    assert "Connected paper" in out
    assert "BUY 100 XBTUSD · Market · paper" in out
    assert "[1] ✅ Confirm  [2] ✖️ Cancel" in out
    assert "bot (edited) ▸ BUY 100 XBTUSD · Market · paper" in out
    assert "✅ Filled" in out
    assert "XBTUSD Long 100" in out
    assert "CLOSE all XBTUSD long" in out
    assert out.rstrip().count("No open positions (paper).") == 1  # after the close
    assert "XBTUSD marked at 61000" in out
    assert "unknown sandbox command" in out
    assert "comments are skipped" not in out
