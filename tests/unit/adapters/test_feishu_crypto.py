"""adapters.feishu_crypto: every Feishu known answer of tests/vectors, and every refusal."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters.feishu import crypto as feishu_crypto
from bot.errors import DecryptError, SignatureError, StaleRequestError
from tests.vectors import (
    FeishuDecryptCase,
    FeishuEncryptCase,
    FeishuSignatureCase,
    feishu_decrypt_cases,
    feishu_encrypt_cases,
    feishu_signature_cases,
)

KEY = "our test key"
IV = bytes(range(16))
NOW = 1_700_000_000


def test_every_kind_has_a_known_answer() -> None:
    assert feishu_decrypt_cases()
    assert feishu_signature_cases()
    assert feishu_encrypt_cases()


@pytest.mark.parametrize("case", feishu_signature_cases(), ids=lambda c: c.id)
def test_signature_known_answer(case: FeishuSignatureCase) -> None:
    body = case.body.encode("utf-8")
    got = feishu_crypto.signature(case.timestamp, case.nonce, case.encrypt_key, body)
    assert got == case.signature
    feishu_crypto.verify(
        got,
        timestamp=case.timestamp,
        nonce=case.nonce,
        encrypt_key=case.encrypt_key,
        body=body,
        now=int(case.timestamp),
    )


@pytest.mark.parametrize("case", feishu_decrypt_cases(), ids=lambda c: c.id)
def test_decrypt_known_answer(case: FeishuDecryptCase) -> None:
    plain = feishu_crypto.decrypt(case.encrypted, case.encrypt_key)
    assert plain == case.plaintext.encode("utf-8")
    assert base64.b64decode(case.encrypted)[:16].hex() == case.iv_hex


@pytest.mark.parametrize("case", feishu_encrypt_cases(), ids=lambda c: c.id)
def test_encrypt_known_answer(case: FeishuEncryptCase) -> None:
    iv = bytes.fromhex(case.iv_hex)
    sealed = feishu_crypto.encrypt(case.plaintext.encode(), case.encrypt_key, iv)
    assert sealed == case.encrypted
    assert feishu_crypto.decrypt(sealed, case.encrypt_key) == case.plaintext.encode()


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 100])
def test_round_trip_every_padding_length(size: int) -> None:
    plain = bytes(range(256))[:size] * 1
    assert feishu_crypto.decrypt(feishu_crypto.encrypt(plain, KEY, IV), KEY) == plain


def _signed(body: bytes = b'{"encrypt":"x"}') -> dict[str, Any]:
    ts, nonce = str(NOW), "n0nce"
    return {
        "expected": feishu_crypto.signature(ts, nonce, KEY, body),
        "timestamp": ts,
        "nonce": nonce,
        "encrypt_key": KEY,
        "body": body,
    }


def test_verify_accepts_within_the_window() -> None:
    fields = _signed()
    feishu_crypto.verify(fields.pop("expected"), **fields, now=NOW + 299)
    fields = _signed()
    feishu_crypto.verify(fields.pop("expected").upper(), **fields, now=NOW - 299)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp", str(NOW + 1)),
        ("nonce", "other"),
        ("encrypt_key", "other key"),
        ("body", b'{"encrypt":"y"}'),
        ("expected", "0" * 64),
        ("expected", "not hex é"),
    ],
)
def test_any_changed_input_is_rejected(field: str, value: Any) -> None:
    fields = _signed()
    fields[field] = value
    expected = fields.pop("expected")
    with pytest.raises(SignatureError):
        feishu_crypto.verify(expected, **fields, now=NOW)


def test_body_is_hashed_raw_not_reserialised() -> None:
    # The same JSON with other whitespace is another body:
    # docs/protocols/pitfalls.md#pitfall-8-feishu-signature-mistakes.
    fields = _signed(b'{"encrypt": "x"}')
    expected = fields.pop("expected")
    fields["body"] = b'{"encrypt":"x"}'
    with pytest.raises(SignatureError):
        feishu_crypto.verify(expected, **fields, now=NOW)


@pytest.mark.parametrize("now", [NOW + 301, NOW - 301, NOW + 86400])
def test_stale_timestamp_is_rejected(now: int) -> None:
    fields = _signed()
    with pytest.raises(StaleRequestError):
        feishu_crypto.verify(fields.pop("expected"), **fields, now=now)


def test_non_numeric_timestamp_is_rejected() -> None:
    body, nonce = b"{}", "n"
    sig = feishu_crypto.signature("12ab", nonce, KEY, body)
    with pytest.raises(StaleRequestError):
        feishu_crypto.verify(sig, timestamp="12ab", nonce=nonce, encrypt_key=KEY, body=body, now=0)


def _raw_sealed(padded: bytes) -> str:
    key = hashlib.sha256(KEY.encode()).digest()
    enc = Cipher(algorithms.AES(key), modes.CBC(IV)).encryptor()
    return base64.b64encode(IV + enc.update(padded) + enc.finalize()).decode()


@pytest.mark.parametrize(
    "padded",
    [
        b"hello world" + b"\x00" * 5,  # pad value 0
        b"hello world" + b"\x05\x05\x05\x05\x04",  # inconsistent pad bytes
        b"hello world!!!!" + b"\x11",  # 17 > the 16-byte block
        b"0123456789abcdef" + b"\x20" * 16,  # a WeChat-style 32 pad
    ],
)
def test_bad_padding_is_rejected(padded: bytes) -> None:
    with pytest.raises(DecryptError, match="padding"):
        feishu_crypto.decrypt(_raw_sealed(padded), KEY)


def test_wrong_key_is_rejected() -> None:
    sealed = feishu_crypto.encrypt(b'{"a":1}', KEY, IV)
    with pytest.raises(DecryptError):
        feishu_crypto.decrypt(sealed, "another key")


@pytest.mark.parametrize(
    "blob",
    ["not base64!", base64.b64encode(b"short").decode(), base64.b64encode(b"x" * 33).decode()],
)
def test_malformed_ciphertext_is_rejected(blob: str) -> None:
    with pytest.raises(DecryptError):
        feishu_crypto.decrypt(blob, KEY)


def test_encrypt_needs_a_16_byte_iv() -> None:
    with pytest.raises(ValueError, match="16"):
        feishu_crypto.encrypt(b"x", KEY, b"short")
