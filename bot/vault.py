"""Encryption of users' API secrets at rest.

AES-256-GCM with a key derived by HKDF from MASTER_KEY, which lives only in the
environment. Each ciphertext is bound (as associated data) to its owner and
network, so a row copied into another user's record fails to decrypt, and carries
the fingerprint of the master key that sealed it, so rotation knows which old key
opens it.

Blob layout: version (1 byte) | key fingerprint (4) | nonce (12) | ciphertext+tag.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlmodel import select

from bot.db.models import ApiCredential
from bot.errors import VaultError
from bot.logs import register_secret

if TYPE_CHECKING:
    from bot.db.engine import Database

FORMAT_VERSION = 1
_HKDF_INFO = b"bitmex-bot/api-secret/v1"
# Records other than API secrets (the update inbox, bot/inbox.py) under a key of their own:
# no blob of one kind opens as the other, whatever its associated data.
_HKDF_INFO_RECORDS = b"bitmex-bot/record/v1"
_HKDF_SALT = b"bitmex-bot vault"
_NONCE_LEN = 12
_HEADER_LEN = 1 + 4 + _NONCE_LEN


def generate_key() -> str:
    """A fresh MASTER_KEY: urlsafe base64 of 32 random bytes."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def _fingerprint(master: bytes) -> bytes:
    # Public and short: it identifies which master key sealed a row, it does not help guess it.
    return hashlib.sha256(b"bitmex-bot key id" + master).digest()[:4]


def _derive(master: bytes, info: bytes = _HKDF_INFO) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=info).derive(
        master
    )
    return AESGCM(key)


def _aad(user_id: int, network: str) -> bytes:
    return f"user={user_id};network={network};v={FORMAT_VERSION}".encode()


class Vault:
    def __init__(self, master_key: bytes, old_keys: Sequence[bytes] = ()) -> None:
        if len(master_key) != 32:
            raise VaultError("the master key must be 32 bytes")
        self._current = _fingerprint(master_key)
        self._keys: dict[bytes, AESGCM] = {self._current: _derive(master_key)}
        self._record_keys: dict[bytes, AESGCM] = {
            self._current: _derive(master_key, _HKDF_INFO_RECORDS)}
        for old in old_keys:
            self._keys.setdefault(_fingerprint(old), _derive(old))
            self._record_keys.setdefault(_fingerprint(old), _derive(old, _HKDF_INFO_RECORDS))

    def encrypt(self, secret: str, *, user_id: int, network: str) -> bytes:
        nonce = os.urandom(_NONCE_LEN)
        sealed = self._keys[self._current].encrypt(nonce, secret.encode(), _aad(user_id, network))
        return bytes([FORMAT_VERSION]) + self._current + nonce + sealed

    def decrypt(self, blob: bytes, *, user_id: int, network: str) -> str:
        if len(blob) <= _HEADER_LEN or blob[0] != FORMAT_VERSION:
            raise VaultError("stored secret has an unknown format")
        aead = self._keys.get(blob[1:5])
        if aead is None:
            raise VaultError("stored secret was sealed with a master key that is not configured")
        nonce, sealed = blob[5:_HEADER_LEN], blob[_HEADER_LEN:]
        try:
            plain = aead.decrypt(nonce, sealed, _aad(user_id, network)).decode()
        except (InvalidTag, UnicodeDecodeError) as e:
            # Deliberately vague: tampering, a moved row and a wrong key look the same.
            raise VaultError("stored secret could not be decrypted") from e
        register_secret(plain)
        return plain

    def seal(self, data: bytes, *, context: str) -> bytes:
        """A record that may hold secrets (a Telegram update with a /connect in it), sealed
        to `context` (what the row is, e.g. its key): a blob moved to another row fails to
        open. Same layout as an API secret's, under a key of its own."""
        nonce = os.urandom(_NONCE_LEN)
        sealed = self._record_keys[self._current].encrypt(nonce, data, context.encode())
        return bytes([FORMAT_VERSION]) + self._current + nonce + sealed

    def open(self, blob: bytes, *, context: str) -> bytes:
        """The record `seal` sealed to `context`; VaultError when it cannot be opened.
        Unlike `decrypt`, registers nothing for redaction: a record is not one secret."""
        if len(blob) <= _HEADER_LEN or blob[0] != FORMAT_VERSION:
            raise VaultError("sealed record has an unknown format")
        aead = self._record_keys.get(blob[1:5])
        if aead is None:
            raise VaultError("sealed record was sealed with a master key that is not configured")
        try:
            return aead.decrypt(blob[5:_HEADER_LEN], blob[_HEADER_LEN:], context.encode())
        except InvalidTag as e:
            raise VaultError("sealed record could not be opened") from e

    def is_current(self, blob: bytes) -> bool:
        return len(blob) > 5 and blob[1:5] == self._current

    def reseal(self, blob: bytes, *, user_id: int, network: str) -> bytes:
        """The same secret under the current master key."""
        return self.encrypt(
            self.decrypt(blob, user_id=user_id, network=network), user_id=user_id, network=network
        )


async def rotate_secrets(db: Database, vault: Vault) -> tuple[int, int]:
    """Re-encrypt every stored secret under the current key: (rotated, already current).

    All rows are resealed in one transaction so an unopenable row aborts the whole
    rotation rather than leaving the database half on each key.
    """
    rotated = current = 0
    async with db.session() as s:
        rows = (await s.exec(select(ApiCredential))).all()
        for row in rows:
            if vault.is_current(row.secret_enc):
                current += 1
                continue
            row.secret_enc = vault.reseal(row.secret_enc, user_id=row.user_id, network=row.network)
            row.key_version += 1
            s.add(row)
            rotated += 1
        await s.commit()
    return rotated, current
