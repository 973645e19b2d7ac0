"""Moving an install: `python -m bot migrate-db --to postgresql+asyncpg://...`.

Needs a PostgreSQL server: runs in the suite's PostgreSQL run (TEST_DATABASE_URL), skipped
in the SQLite one. The source is always a SQLite file, as on a user's machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.sandbox.bitmex import BitmexSimulator
from bot.sandbox.telegram import TelegramEmulator
from bot.vault import generate_key
from tests import dbs
from tests.e2e.harness import Harness, Person

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(dbs.server_url() is None,
                                reason="needs PostgreSQL: set TEST_DATABASE_URL")


def migrate_db(folder: Path, source: str, target: str, key: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM", "MASTER"))}
    env.update(PYTHONPATH=str(ROOT), DATABASE_URL=source, MASTER_KEY=key)
    return subprocess.run([sys.executable, "-m", "bot", "migrate-db", "--to", target],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


async def answers(people: list[Person]) -> list[str]:
    said = []
    for p in people:
        for command in ("/accounts", "/alerts", "/feeds"):
            await p.send(command)
            said.append(f"{p.user.first_name} {command}: {p.last_text}")
    return said


async def test_migrate_db_moves_everything_and_the_bot_answers_the_same(
    world_sim: BitmexSimulator, world_emu: TelegramEmulator, tmp_path: Path
) -> None:
    key = generate_key()
    source = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    h = Harness(world_sim, world_emu, tmp_path, DATABASE_URL=source, MASTER_KEY=key)
    await h.start()
    target = dbs.create_database(f"move_{os.getpid()}")
    try:
        alice, _ = await h.connected("Alice")
        bob, _ = await h.connected("Bob")
        await alice.send("/alert btc above 1000000")
        await alice.send("/alert eth below 10")
        await bob.send("/alert btc below 1000")
        group = h.group("Alpha Calls", [bob], [alice], bot_admin=True)
        await alice.send("/feed on alpha", chat=group)
        await bob.send("/follow alpha size 300")
        before = await answers([alice, bob])
        assert any("alpha" in line for line in before), before
        await h.stop()

        done = migrate_db(tmp_path, source, target, key)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "counts match" in done.stdout
        assert "2 API secret(s) open under MASTER_KEY" in done.stdout
        rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[1:]
                if len(line.split()) == 3}
        assert rows["users"] == ["2", "2"] and rows["alerts"] == ["3", "3"]
        assert rows["api_credentials"] == ["2", "2"] and rows["feeds"] == ["1", "1"]

        again = migrate_db(tmp_path, source, target, key)  # never into a database with data
        assert again.returncode == 2 and "already holds data" in again.stderr
        assert "Traceback" not in again.stderr

        h._settings = h.settings.model_copy(update={"DATABASE_URL": target})
        await h.restart()
        assert await answers([alice, bob]) == before
        # New rows after the move get fresh ids (the sequences were moved on too).
        await bob.send("/alert eth above 100000")
        await bob.send("/alerts")
        assert "#4" in bob.last_text, bob.last_text
    finally:
        await h.stop()
        dbs.drop_database(f"move_{os.getpid()}")


def test_migrate_db_refuses_a_bad_target_in_one_line(tmp_path: Path) -> None:
    source = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    for target, says in (("mysql://x/y", "--to must be a postgresql+asyncpg://"),
                         ("postgresql+asyncpg://postgres@127.0.0.1:1/none",
                          "cannot reach the PostgreSQL server")):
        done = migrate_db(tmp_path, source, target, generate_key())
        assert done.returncode == 2, done.stdout + done.stderr
        assert says in done.stderr and "Traceback" not in done.stderr
        assert [line for line in done.stderr.splitlines() if "error" in line.lower()] == [
            line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert not (tmp_path / "bot.db").exists()  # the source was not touched
