"""Encryption at rest: states are compressed, then encrypted; older forms still read."""

from __future__ import annotations

import json

import pytest

from engine.crypto import COMPRESS_FROM, Cipher, DataKeyError, generate_key

STATE = json.dumps(
    {"tasks": {str(i): {"data": {"opinion": "同意" * 20}} for i in range(50)}}, ensure_ascii=False
)


@pytest.fixture
def cipher():
    return Cipher([generate_key().encode()])


def test_a_state_is_compressed_before_it_is_encrypted(cipher):
    stored = cipher.encrypt(STATE)
    assert stored.startswith("fernet+z:")
    assert "同意" not in stored and "opinion" not in stored
    assert len(stored) < len(STATE.encode()) / 4
    assert cipher.decrypt(stored) == STATE


def test_short_texts_are_encrypted_without_compression(cipher):
    text = "x" * (COMPRESS_FROM - 1)
    stored = cipher.encrypt(text)
    assert stored.startswith("fernet:") and cipher.decrypt(stored) == text


def test_rows_written_before_compression_or_encryption_still_read(cipher):
    old = "fernet:" + cipher._fernet.encrypt(STATE.encode()).decode()
    assert cipher.decrypt(old) == STATE
    assert cipher.decrypt(STATE) == STATE  # plain text from before encryption was enabled
    assert cipher.rotate(old).startswith("fernet+z:")


def test_a_wrong_key_is_a_clear_error(cipher):
    stored = cipher.encrypt(STATE)
    with pytest.raises(DataKeyError):
        Cipher([generate_key().encode()]).decrypt(stored)
