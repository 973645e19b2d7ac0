"""Files the bot keeps beside its database: owner-only, and a tampered pickle is not run."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.paper_accounts import load_paper_engine, paper_path, save_paper_engine
from bot.sandbox.bitmex import Clock, Engine


def settings(tmp: Path) -> Settings:
    return Settings(_env_file=None, DATABASE_URL=f"sqlite+aiosqlite:///{tmp / 'bot.db'}")


class Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch pwned",))


async def test_paper_snapshot_is_written_owner_only(tmp_path: Path) -> None:
    s = settings(tmp_path)
    path = paper_path(s)
    assert path is not None
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"old")
    tmp.chmod(0o666)  # a leftover from a crash, created wide
    old = os.umask(0o000)
    try:
        engine = Engine(Clock(follow_wall=True))
        engine.add_account("paper-1", "s", xbt=1)
        assert await save_paper_engine(engine, path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = load_paper_engine(paper_path(s))
    assert back is not None and back.account_by_key("paper-1") is not None


def test_a_snapshot_others_can_write_is_not_unpickled(tmp_path: Path,
                                                      monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    s = settings(tmp_path)
    path = paper_path(s)
    assert path is not None
    path.write_bytes(pickle.dumps(Boom()))
    for mode in (0o666, 0o620, 0o602):
        path.chmod(mode)
        assert load_paper_engine(paper_path(s)) is None
    assert not (tmp_path / "pwned").exists()


def test_the_database_is_created_owner_only(tmp_path: Path) -> None:
    from tests.test_cli import run

    old = os.umask(0o022)  # a typical server default: files readable by everyone
    try:
        done = run(["migrate"], tmp_path, DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/b.db")
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    made = [p for p in tmp_path.iterdir() if p.name.startswith("b.db")]
    assert made
    for p in made:
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, (p, oct(p.stat().st_mode))


def test_files_left_wide_by_an_earlier_run_are_made_owner_only_at_start(
        tmp_path: Path) -> None:
    from tests.test_cli import run

    data = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{data}/b.db"
    old = os.umask(0o022)
    try:
        assert run(["migrate"], tmp_path, DATABASE_URL=url).returncode == 0
        # an older version, a copy or a backup restore left everything readable
        wide = [data / "b.db", data / "b.db-wal", data / "b.db-shm", data / "b-paper.pickle"]
        for p in wide:
            p.touch()
            p.chmod(0o644)
        data.chmod(0o755)
        done = run(["migrate"], tmp_path, DATABASE_URL=url)
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    for p in wide:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert ".env" not in done.stderr  # there is none here


def test_a_env_file_others_can_read_is_warned_about_without_its_secrets(
        tmp_path: Path) -> None:
    from bot.vault import generate_key
    from tests.test_cli import run

    key = generate_key()
    env = tmp_path / ".env"
    env.write_text(f"MASTER_KEY={key}\n")
    url = f"sqlite+aiosqlite:///{tmp_path}/data/b.db"
    for mode, warned in ((0o644, True), (0o640, True), (0o600, False)):
        env.chmod(mode)
        done = run(["migrate"], tmp_path, DATABASE_URL=url)
        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stderr.splitlines() if ".env" in line]
        assert len(lines) == int(warned), (oct(mode), done.stderr)
        if warned:
            assert "chmod 600" in lines[0] and f"mode {mode:o}" in lines[0]
        assert key not in done.stderr + done.stdout
        assert stat.S_IMODE(env.stat().st_mode) == mode  # warned about, not changed
