"""Encryption at rest of instance states (they hold whistleblowers' identities).

Keys come from configuration (`CHENGXIN_DATA_KEYS`: comma-separated Fernet keys, newest
first). Old keys keep decrypting until `chengxin rotate-keys` has re-encrypted every row.
Without configured keys a key is derived from the secret key, so the demo works unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import zlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import EngineError

PREFIX = "fernet:"
# Compressed before encryption: ciphertext does not compress, so the database could not shrink
# states (JSON, ~5x smaller with zlib) and every step rewrote several TOAST chunks.
ZPREFIX = "fernet+z:"
COMPRESS_FROM = 256  # bytes; smaller texts are stored as they are


class DataKeyError(EngineError):
    """Stored data cannot be decrypted with any configured key."""


def derived_key(secret: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(f"chengxin-data:{secret}".encode()).digest())


class Cipher:
    """Encrypts text with the newest key; decrypts with any configured key."""

    def __init__(self, keys: list[bytes]):
        if not keys:
            raise ValueError("at least one data key is required")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, text: str) -> str:
        data = text.encode()
        if len(data) < COMPRESS_FROM:
            return PREFIX + self._fernet.encrypt(data).decode()
        return ZPREFIX + self._fernet.encrypt(zlib.compress(data, 1)).decode()

    def decrypt(self, stored: str) -> str:
        if stored.startswith(ZPREFIX):
            return zlib.decompress(self._decrypt(stored[len(ZPREFIX) :])).decode()
        if stored.startswith(PREFIX):
            return self._decrypt(stored[len(PREFIX) :]).decode()
        return stored  # written before encryption was enabled

    def _decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode())
        except InvalidToken as exc:
            raise DataKeyError("无法解密已存数据：数据密钥配置不正确") from exc

    def rotate(self, stored: str) -> str:
        """The same text encrypted with the newest key."""
        return self.encrypt(self.decrypt(stored))


def generate_key() -> str:
    return Fernet.generate_key().decode()


def reencrypt_states(session, cipher: Cipher, batch: int = 200) -> int:
    """Re-encrypt every stored instance state with the newest key (key rotation)."""
    from sqlalchemy import select

    from .models import ProcessInstance

    count, last_id = 0, 0
    while True:
        rows = session.execute(
            select(ProcessInstance.id, ProcessInstance.state)
            .where(ProcessInstance.id > last_id)
            .order_by(ProcessInstance.id)
            .limit(batch)
        ).all()
        if not rows:
            return count
        for instance_id, state in rows:
            session.query(ProcessInstance).filter_by(id=instance_id).update(
                {"state": cipher.rotate(state)}, synchronize_session=False
            )
            count += 1
        last_id = rows[-1][0]
        session.commit()
