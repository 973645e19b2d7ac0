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


def test_script_mode_newcomer_shortcuts(tmp_path: Path) -> None:
    """What a newcomer types: :connect instead of pasting a key, btc for XBTUSD, bare
    commands get their usage, and a button number never presses in another chat."""
    script = tmp_path / "talk.txt"
    script.write_text("\n".join([
        ":connect",
        ":mark btc 61000",
        ":mark doge 1",
        ":user",
        "/buy 100 btc",
        ":group traders",
        "1",
        ":connect",
        "/liqfeed min 1",
        ":liquidate btc 3m",
        ":wait 6",
        ":private",
        "/positions",
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
    assert "Connected testnet" in out
    assert "/connect testnet" not in out.split("Connected testnet")[0].replace(
        "sent as /connect testnet KEY SECRET", "")  # the secret is never printed
    assert "XBTUSD marked at 61000" in out
    assert "unknown symbol doge; the simulator has XBTUSD, ETHUSD, XBTUSDT, ETHUSDT" in out
    assert "usage: :user NAME" in out
    assert "BUY 100 XBTUSD · Market · testnet" in out
    assert "Filled" not in out  # "1" in the group did not press the private preview
    assert ":connect works in your private chat" in out
    assert "Long liquidated: $3M XBTUSD" in out
    assert "No open positions (testnet)." in out


def test_script_mode_full_close_goes_through_while_bitmex_sheds_load(tmp_path: Path) -> None:
    """:overload: an order with a size is refused (503), the whole-position close is not."""
    script = tmp_path / "talk.txt"
    script.write_text("\n".join([
        ":connect", "/buy 300 btc", "1", ":overload on",
        "/close 50%", "1", "/close", "1", "/positions", ":overload off", ":quit",
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
    assert "BitMEX is shedding load" in out
    partial, full = out.split("CLOSE 100 of 300 XBTUSD", 1)[1].split("CLOSE all XBTUSD", 1)
    assert "refuses those while it sheds load" in partial
    assert "Not sent: BitMEX is overloaded" in partial
    assert "✅ Filled" in full and "No open positions (testnet)." in full
    assert "BitMEX takes every order again" in out
