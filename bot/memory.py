"""The C allocator's settings for a bot that runs for months.

glibc's malloc, left as it is, keeps memory a long-running Python process has freed: when
a large block (over 128 KiB: a JSON answer, a socket buffer, a chart) is freed it raises
its own thresholds to that size, after which up to twice that much free memory at the top
of each heap is kept rather than returned, and every thread that allocates (aiosqlite runs
one per pooled connection) gets an arena of its own to keep such memory in. The soak
measured it (bench/README.md, "Soak"): at 1,000 users the bot's live objects were flat
after warm-up while RSS still rose ~0.3 MB a minute in free memory malloc kept, and with
the two settings below it did not (+0.17 MB/min in all, 8 MB less RSS).

They are the documented glibc tunables (mallopt(3)), the first set the way Dask's workers
set it (`MALLOC_TRIM_THRESHOLD_=65536`); fixed thresholds also stop glibc from raising
them, so large blocks go back to the system when freed. An operator's own
`MALLOC_TRIM_THRESHOLD_`, `MALLOC_MMAP_THRESHOLD_` or `MALLOC_ARENA_MAX` is left as it
is. Elsewhere than glibc (macOS, musl) nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

# mallopt(3) parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

TRIM_THRESHOLD = 64 * 1024
# glibc's own default, set again: a large block freed while the bot was starting (before
# this runs) may already have raised it, and a fixed trim threshold does not lower it.
MMAP_THRESHOLD = 128 * 1024
ARENA_MAX = 2

SETTINGS = (
    ("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    ("MALLOC_ARENA_MAX", M_ARENA_MAX, ARENA_MAX),
)


def tune_malloc(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Set glibc's trim threshold and arena count, unless the environment already does;
    returns what was set. Call it before any thread starts: arenas already made stay."""
    if not sys.platform.startswith("linux"):
        return {}
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl names its library otherwise)
        return {}
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return {}
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    done: dict[str, int] = {}
    for env, param, value in SETTINGS:
        if env in environ:
            continue
        if libc.mallopt(param, value) == 1:
            done[env] = value
    return done
