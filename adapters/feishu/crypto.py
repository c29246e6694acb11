"""Feishu / Lark event subscription crypto: the request signature and the AES envelope.

Pure functions, no I/O. Notes in docs/protocols/feishu.md#payload-encryption; official page
https://open.feishu.cn/document/server-docs/event-subscription-guide/event-subscription-configure-/encrypt-key-encryption-configuration-case
and the SDK (larksuite/oapi-sdk-python ``lark_oapi/core/utils/decryptor.py``,
``lark_oapi/event/dispatcher_handler.py``).

Unlike the WeChat family: key = SHA-256(Encrypt Key), the IV is the first 16 bytes of the
blob, PKCS#7 pads to AES's own 16-byte block, and the plaintext is bare JSON.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.errors import DecryptError, SignatureError, StaleRequestError

IV_BYTES = 16
# Feishu pads to 16 bytes; never the WeChat family's 32
# (docs/protocols/pitfalls.md#pitfall-14-padding-checks).
PAD_BLOCK = 16
_MAX_TIMESTAMP_DIGITS = 16


def _key(encrypt_key: str) -> bytes:
    return hashlib.sha256(encrypt_key.encode("utf-8")).digest()


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """Return ``X-Lark-Signature``: hex SHA-256 of timestamp + nonce + key, then the raw body.

    Plain SHA-256, not HMAC, and hex, not base64; the body is hashed exactly as received, never
    re-serialised (docs/protocols/feishu.md#request-signature,
    docs/protocols/pitfalls.md#pitfall-8-feishu-signature-mistakes).
    """
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode("utf-8") + body).hexdigest()


def verify(
    expected: str,
    *,
    timestamp: str,
    nonce: str,
    encrypt_key: str,
    body: bytes,
    now: float,
    max_skew_s: int = 300,
) -> None:
    """Check ``X-Lark-Signature`` and the timestamp window; return only if both pass.

    The SDK checks no window at all (docs/protocols/feishu.md#request-signature); ours bounds
    replays to max_skew_s.

    Raises:
        SignatureError: the signature does not match.
        StaleRequestError: the timestamp is not a number or is more than max_skew_s from now.
    """
    computed = signature(timestamp, nonce, encrypt_key, body)
    # Compare bytes: compare_digest refuses non-ASCII str, and `expected` is attacker input.
    if not hmac.compare_digest(computed.encode(), expected.lower().encode("utf-8", "replace")):
        raise SignatureError("signature mismatch")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        raise StaleRequestError("timestamp is not a number")
    if abs(now - int(timestamp)) > max_skew_s:
        raise StaleRequestError("timestamp outside the accepted window")


@functools.lru_cache(maxsize=64)
def _aes(encrypt_key: str) -> algorithms.AES:
    # The key is SHA-256 of the app's Encrypt Key: hashed once per key, not per message (an
    # AES object holds only the key; each message still gets its own IV and context).
    return algorithms.AES(_key(encrypt_key))


def _cipher(encrypt_key: str, iv: bytes) -> Cipher[modes.CBC]:
    return Cipher(_aes(encrypt_key), modes.CBC(iv))


def decrypt(encrypt_b64: str, encrypt_key: str) -> bytes:
    """Decrypt the ``encrypt`` field of a request body and return the plaintext bytes.

    Raises DecryptError naming the failed check, never the key or the plaintext.
    """
    try:
        data = base64.b64decode(encrypt_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecryptError("ciphertext is not valid base64") from exc
    if len(data) < IV_BYTES + PAD_BLOCK or len(data) % PAD_BLOCK:
        raise DecryptError("ciphertext length is not an IV plus whole blocks")
    decryptor = _cipher(encrypt_key, data[:IV_BYTES]).decryptor()
    padded = decryptor.update(data[IV_BYTES:]) + decryptor.finalize()
    # The SDK strips padding unchecked; a wrong key shows up here as bad padding.
    pad = padded[-1]
    if not 1 <= pad <= PAD_BLOCK or padded[-pad:] != bytes([pad]) * pad:
        raise DecryptError("invalid padding")
    return padded[:-pad]


def encrypt(plaintext: bytes, encrypt_key: str, iv: bytes) -> str:
    """Encrypt as Feishu does: base64(iv + AES-256-CBC(plaintext)); for tests and simulate."""
    if len(iv) != IV_BYTES:
        raise ValueError("iv must be 16 bytes")
    pad = PAD_BLOCK - len(plaintext) % PAD_BLOCK
    encryptor = _cipher(encrypt_key, iv).encryptor()
    sealed = encryptor.update(plaintext + bytes([pad]) * pad) + encryptor.finalize()
    return base64.b64encode(iv + sealed).decode("ascii")
