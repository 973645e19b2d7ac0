"""The allocator's settings for a long-running bot (bot/memory.py): free memory goes back
to the system instead of being kept by glibc's malloc after a large block was freed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import Settings
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

# A 4 MB block (mmapped) freed, then 6 MB in 100 KB blocks allocated and freed: glibc's
# dynamic thresholds, raised by the first, keep all of the second as free memory.
PROBE = """
import ctypes, json, sys
class M(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = M
tuned = {}
early = bytes(8_000_000)  # freed while the bot starts, before tune_malloc runs
del early
if sys.argv[1] == "tuned":
    from bot.memory import tune_malloc
    tuned = tune_malloc()
big = bytes(4_000_000)
del big
blocks = [bytes(100_000) for _ in range(60)]
del blocks
print(json.dumps({"tuned": tuned, "kept_mb": libc.mallinfo2().fordblks / 1e6}))
"""



def _is_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


glibc = pytest.mark.skipif(not _is_glibc(), reason="glibc's malloc only")


def probe(mode: str, **env: str) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**base, **env})
    assert proc.returncode == 0, proc.stderr
    out: dict[str, object] = json.loads(proc.stdout)
    return out


@glibc
def test_freed_memory_is_returned_instead_of_kept() -> None:
    as_is, tuned = probe("plain"), probe("tuned")
    assert float(str(as_is["kept_mb"])) > 5  # what the soak saw pile up: kept, not in use
    assert tuned["tuned"] == {"MALLOC_TRIM_THRESHOLD_": 65536,
                              "MALLOC_MMAP_THRESHOLD_": 131072, "MALLOC_ARENA_MAX": 2}
    assert float(str(tuned["kept_mb"])) < 1


@glibc
def test_an_operators_own_malloc_settings_are_left_alone() -> None:
    got = probe("tuned", MALLOC_TRIM_THRESHOLD_="33554432")
    assert got["tuned"] == {"MALLOC_MMAP_THRESHOLD_": 131072, "MALLOC_ARENA_MAX": 2}
    assert float(str(got["kept_mb"])) > 5  # their choice (32 MB kept) stands


def test_bot_run_tunes_malloc_first(monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.__main__ as entry

    calls: list[str] = []
    monkeypatch.setattr(entry, "tune_malloc", lambda: calls.append("tuned") or {})
    settings = Settings(_env_file=None, TELEGRAM_BOT_TOKEN=None, MASTER_KEY=None)
    with pytest.raises(ConfigError):
        entry.cmd_run(settings, sandbox_if_no_token=False)
    assert calls == ["tuned"]
