"""The vault: secrets round-trip, resist tampering and moving, rotate, stay off the disk."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from bot.db.engine import Database
from bot.db.models import ApiCredential, User
from bot.errors import VaultError
from bot.vault import Vault, generate_key, rotate_secrets
from tests.dbs import test_database_url


def _key() -> bytes:
    return base64.urlsafe_b64decode(generate_key())


SECRET = "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO"


def test_round_trip_and_fresh_nonce() -> None:
    v = Vault(_key())
    a = v.encrypt(SECRET, user_id=7, network="testnet")
    b = v.encrypt(SECRET, user_id=7, network="testnet")
    assert a != b  # a fresh nonce every time
    assert SECRET.encode() not in a
    assert v.decrypt(a, user_id=7, network="testnet") == SECRET


def test_tampered_ciphertext_is_refused() -> None:
    v = Vault(_key())
    blob = bytearray(v.encrypt(SECRET, user_id=7, network="testnet"))
    for pos in (len(blob) - 1, 20, 8):  # tag, body, nonce
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(VaultError):
            v.decrypt(bytes(bad), user_id=7, network="testnet")
    with pytest.raises(VaultError):
        v.decrypt(bytes(blob[:10]), user_id=7, network="testnet")


def test_row_moved_to_another_user_or_network_is_refused() -> None:
    v = Vault(_key())
    blob = v.encrypt(SECRET, user_id=7, network="testnet")
    with pytest.raises(VaultError):
        v.decrypt(blob, user_id=8, network="testnet")
    with pytest.raises(VaultError):
        v.decrypt(blob, user_id=7, network="mainnet")


def test_wrong_master_key_is_refused() -> None:
    blob = Vault(_key()).encrypt(SECRET, user_id=7, network="testnet")
    with pytest.raises(VaultError, match="master key"):
        Vault(_key()).decrypt(blob, user_id=7, network="testnet")


def test_old_key_still_opens_and_reseal_moves_to_current() -> None:
    old, new = _key(), _key()
    blob = Vault(old).encrypt(SECRET, user_id=1, network="mainnet")
    v = Vault(new, [old])
    assert not v.is_current(blob)
    assert v.decrypt(blob, user_id=1, network="mainnet") == SECRET
    fresh = v.reseal(blob, user_id=1, network="mainnet")
    assert v.is_current(fresh)
    assert Vault(new).decrypt(fresh, user_id=1, network="mainnet") == SECRET


async def _populate(db: Database, vault: Vault, n: int) -> dict[tuple[int, str], str]:
    secrets: dict[tuple[int, str], str] = {}
    async with db.session() as s:
        for uid in range(1, n + 1):
            s.add(User(id=uid))
        await s.flush()
        for uid in range(1, n + 1):
            for net in ("testnet", "mainnet"):
                secret = f"S3cr3t-{uid}-{net}-" + "x" * 20
                secrets[(uid, net)] = secret
                s.add(
                    ApiCredential(
                        user_id=uid, network=net, key_id=f"key{uid}{net}",
                        secret_enc=vault.encrypt(secret, user_id=uid, network=net),
                        permissions=["order"], verified_at=datetime.now(UTC),
                    )
                )
        await s.commit()
    return secrets


async def test_rotation_of_a_populated_database_loses_nothing(tmp_path: Path) -> None:
    db = Database(test_database_url(tmp_path, 'v.db'))
    await db.migrate()
    old, new = _key(), _key()
    secrets = await _populate(db, Vault(old), 25)

    rotated, current = await rotate_secrets(db, Vault(new, [old]))
    assert (rotated, current) == (50, 0)
    assert await rotate_secrets(db, Vault(new, [old])) == (0, 50)

    only_new = Vault(new)  # the old key can now be retired
    async with db.session() as s:
        rows = (await s.exec(select(ApiCredential))).all()
    assert len(rows) == 50
    for row in rows:
        assert only_new.decrypt(row.secret_enc, user_id=row.user_id, network=row.network) == (
            secrets[(row.user_id, row.network)]
        )
        assert row.key_version == 2
    await db.dispose()


async def test_database_file_holds_no_plaintext_secret(tmp_path: Path) -> None:
    path = tmp_path / "scan.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.migrate()
    secrets = await _populate(db, Vault(_key()), 5)
    await db.dispose()  # checkpoint the WAL so the main file has everything
    files = [p for p in tmp_path.iterdir() if p.name.startswith("scan.db")]  # noqa: ASYNC240
    blobs = b"".join(p.read_bytes() for p in files)
    assert b"key1testnet" in blobs  # the scan does see the rows
    for secret in secrets.values():
        assert secret.encode() not in blobs
        assert secret.encode("utf-16-le") not in blobs
