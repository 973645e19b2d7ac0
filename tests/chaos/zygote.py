"""A warmed-up parent for fast restarts: it imports the bot once, then forks a child per
"spawn" that runs exactly what `python -m bot run` runs (`bot.__main__.main(["run"])`).

Start-up on a loaded two-core machine is 3-7 s, most of it importing (PTB, SQLAlchemy,
cryptography); a forked child skips only that, so a chaos run can kill and restart the
bot many times a minute. The protocol is one line each way on stdin/stdout:
  spawn <cwd> <log>   ->  pid <n>
  wait <pid>          ->  rc <code>   (the child's exit code; -9 for SIGKILL)
  poll <pid>          ->  rc <code> | rc none   (none: still running)
"""

from __future__ import annotations

import os
import sys

import bot.__main__ as entry
import handlers.app  # noqa: F401  (the import the child is spared)


def _child(cwd: str, log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.chdir(cwd)
    code = 1
    try:
        code = entry.main(["run"])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    for line in sys.stdin:
        verb, *args = line.split()
        if verb == "spawn":
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _child(args[0], args[1])
            print(f"pid {pid}", flush=True)
        elif verb in ("wait", "poll"):
            done, status = os.waitpid(int(args[0]), 0 if verb == "wait" else os.WNOHANG)
            rc = os.waitstatus_to_exitcode(status) if done else "none"
            print(f"rc {rc}", flush=True)


if __name__ == "__main__":
    serve()
