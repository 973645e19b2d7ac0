"""The command line as an operator uses it: migrate, gen-key, rotate-key."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from pathlib import Path

from sqlmodel import select

from bot.db.engine import Database
from bot.db.models import ApiCredential, User
from bot.vault import Vault, generate_key
from tests.dbs import test_database_url

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("TELEGRAM_", "MASTER_", "DATABASE_"))}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd,
                          env={**base, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=120)


def raw(key: str) -> bytes:
    return base64.urlsafe_b64decode(key)


async def populate(url: str, key: str) -> None:
    db = Database(url)
    await db.migrate()
    vault = Vault(raw(key))
    async with db.session() as s:
        for uid in (1, 2, 3):
            s.add(User(id=uid))
        await s.flush()
        for uid in (1, 2, 3):
            s.add(ApiCredential(user_id=uid, network="testnet", key_id=f"k{uid}",
                                secret_enc=vault.encrypt(f"secret-number-{uid}-xxxxxxxx",
                                                         user_id=uid, network="testnet")))
        await s.commit()
    await db.dispose()


async def read_all(url: str, key: str) -> list[str]:
    db = Database(url)
    vault = Vault(raw(key))
    async with db.session() as s:
        rows = (await s.exec(select(ApiCredential))).all()
    await db.dispose()
    return sorted(vault.decrypt(r.secret_enc, user_id=r.user_id, network=r.network)
                  for r in rows)


def test_rotate_key_moves_every_secret_to_the_new_key(tmp_path: Path) -> None:
    url = test_database_url(tmp_path)
    old, new = generate_key(), generate_key()
    asyncio.run(populate(url, old))

    refused = run(["rotate-key"], tmp_path, DATABASE_URL=url, MASTER_KEY=new)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "master key that is not configured" in refused.stderr

    done = run(["rotate-key"], tmp_path, DATABASE_URL=url, MASTER_KEY=new, MASTER_KEY_OLD=old)
    assert done.returncode == 0, done.stderr
    assert "Re-encrypted 3 secret(s)" in done.stdout
    assert asyncio.run(read_all(url, new)) == [f"secret-number-{i}-xxxxxxxx" for i in (1, 2, 3)]
    again = run(["rotate-key"], tmp_path, DATABASE_URL=url, MASTER_KEY=new)
    assert "Re-encrypted 0 secret(s); 3 were already" in again.stdout


def test_migrate_creates_the_database_folder(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'deep' / 'er' / 'bot.db'}"
    done = run(["migrate"], tmp_path, DATABASE_URL=url)
    assert done.returncode == 0 and "up to date" in done.stdout
    assert (tmp_path / "deep" / "er" / "bot.db").exists()


def test_no_command_prints_help(tmp_path: Path) -> None:
    done = run([], tmp_path)
    assert done.returncode == 2 and "rotate-key" in done.stdout
