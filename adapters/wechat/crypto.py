"""The WXBizMsgCrypt scheme shared by WeChat MP, WeCom, WeCom KF and DingTalk HTTP callbacks.

Pure functions, no I/O. Reference: the WeChat Open Platform "message push" page
https://developers.weixin.qq.com/doc/oplatform/Third-party_Platforms/2.0/api/Before_Develop/message_push.html
and the official samples (sbzhu/weworkapi_python, open-dingtalk/DingTalk-Callback-Crypto);
notes in docs/protocols/wechat-crypto.md.

Layout of the plaintext: ``random(16) ‖ uint32_be(len(msg)) ‖ msg ‖ receive_id``, padded with
PKCS#7 to a 32-byte block (not AES's 16), then AES-256-CBC with IV = key[:16].
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.errors import ConfigError, DecryptError, SignatureError, StaleRequestError

KEY_BYTES = 32
RANDOM_BYTES = 16
# The scheme pads to 32 bytes although AES blocks are 16 (official doc, "PKCS#7 K=32").
PAD_BLOCK = 32
_AES_BLOCK = 16
_LEN_BYTES = 4
# EncodingAESKey is 43 characters of [A-Za-z0-9]; the same rule as bot.settings.
_ENCODING_AES_KEY = re.compile(r"[A-Za-z0-9]{43}")
# Seconds since 1970 fit in 10 digits until 2286, milliseconds in 13; bound the parse.
_MAX_TIMESTAMP_DIGITS = 16


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """Turn a 43-character EncodingAESKey into the 32-byte AES key, or raise ConfigError."""
    # Never put the key itself in the message: it is a secret.
    if not _ENCODING_AES_KEY.fullmatch(encoding_aes_key):
        raise ConfigError(
            f"EncodingAESKey must be 43 characters of [A-Za-z0-9] (got {len(encoding_aes_key)})"
        )
    # Lenient on purpose: the last character usually carries non-zero discarded bits (e.g. a key
    # ending in 'G'), which strict decoders reject
    # (docs/protocols/pitfalls.md#pitfall-1-encodingaeskey-trailing-bits).
    try:
        key = base64.b64decode(encoding_aes_key + "=")
    except binascii.Error as exc:
        raise ConfigError("EncodingAESKey is not valid base64") from exc
    if len(key) != KEY_BYTES:
        raise ConfigError("EncodingAESKey does not decode to 32 bytes")
    return key


def _sha1_hex(*parts: str) -> str:
    # Plain lexicographic sort of the strings, joined with no separator
    # (docs/protocols/wechat-crypto.md).
    joined = "".join(sorted(parts)).encode("utf-8")
    return hashlib.sha1(joined).hexdigest()  # noqa: S324 - SHA-1 is mandated by the protocol


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """Return ``msg_signature``: hex SHA-1 of the four strings sorted and concatenated."""
    return _sha1_hex(token, timestamp, nonce, encrypted)


def plain_signature(token: str, timestamp: str, nonce: str) -> str:
    """Return MP's 3-field ``signature`` (URL check and plaintext mode)."""
    return _sha1_hex(token, timestamp, nonce)


def verify(
    expected: str,
    *,
    token: str,
    timestamp: str,
    nonce: str,
    encrypted: str,
    now: float,
    max_skew_s: int = 300,
    timestamp_ms: bool = False,
) -> None:
    """Check ``msg_signature`` and the timestamp window; return only if both pass.

    Raises:
        SignatureError: the signature does not match the four fields.
        StaleRequestError: the timestamp is not a number or is more than max_skew_s from now.
    """
    computed = signature(token, timestamp, nonce, encrypted)
    # Compare bytes: compare_digest refuses non-ASCII str, and `expected` is attacker input.
    if not hmac.compare_digest(computed.encode(), expected.encode("utf-8", "replace")):
        raise SignatureError("signature mismatch")
    # The signature is checked first, so the timestamp below is one the platform signed.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        raise StaleRequestError("timestamp is not a number")
    # DingTalk event callbacks send milliseconds
    # (docs/protocols/dingtalk.md#event-subscription-over-http).
    sent_s = int(timestamp) / 1000 if timestamp_ms else int(timestamp)
    if abs(now - sent_s) > max_skew_s:
        raise StaleRequestError("timestamp outside the accepted window")


# A Cipher holds no state between uses (each decryptor() is a fresh context); building one
# per message was a few percent of a webhook's CPU. An app has one key, a host a handful.
@functools.lru_cache(maxsize=64)
def _cipher(aes_key: bytes) -> Cipher[modes.CBC]:
    if len(aes_key) != KEY_BYTES:
        # A programming error, not bad input: keys come from decode_aes_key at startup.
        raise ValueError("aes_key must be 32 bytes; use decode_aes_key")
    return Cipher(algorithms.AES(aes_key), modes.CBC(aes_key[:_AES_BLOCK]))


def open_blocks(data: bytes, aes_key: bytes) -> bytes:
    """AES-256-CBC with the key's first 16 bytes as IV, then PKCS#7 padding to 32 taken off:
    the layer under a callback's ``Encrypt`` and the AI bot's media files. DecryptError
    names the check that failed."""
    if not data or len(data) % _AES_BLOCK:
        raise DecryptError("ciphertext length is not a non-zero multiple of 16")
    decryptor = _cipher(aes_key).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    # PKCS#7 with K=32: pad values are 1..32 and every pad byte equals the value. The
    # official samples check less; real messages had pads 2..31, so accept the full range.
    pad = padded[-1]
    if not 1 <= pad <= PAD_BLOCK or pad > len(padded):
        raise DecryptError("invalid padding")
    if padded[-pad:] != bytes([pad]) * pad:
        raise DecryptError("invalid padding")
    return padded[:-pad]


def seal_blocks(plain: bytes, aes_key: bytes) -> bytes:
    """The reverse of `open_blocks`: `plain` padded to a multiple of 32, then encrypted."""
    # A full block of 32 x 0x20 is added when the length is already a multiple of 32.
    pad = PAD_BLOCK - len(plain) % PAD_BLOCK
    encryptor = _cipher(aes_key).encryptor()
    return encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()


def decrypt(encrypted_b64: str, *, aes_key: bytes, receiver_id: str) -> bytes:
    """Decrypt an ``Encrypt`` value and return the message bytes (valid UTF-8, not trimmed).

    Call after `verify`. Every check of docs/protocols/wechat-crypto.md runs, in its order; a
    failure raises DecryptError whose reason names the check, never the key or the plaintext.
    """
    try:
        data = base64.b64decode(encrypted_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecryptError("ciphertext is not valid base64") from exc
    full = open_blocks(data, aes_key)

    header = RANDOM_BYTES + _LEN_BYTES
    if len(full) < header:
        raise DecryptError("plaintext shorter than its header")
    (msg_len,) = struct.unpack(">I", full[RANDOM_BYTES:header])
    if msg_len > len(full) - header:
        raise DecryptError("message length exceeds the plaintext")
    msg = full[header : header + msg_len]
    found_id = full[header + msg_len :]
    # WeCom -40005 / DingTalk 900010: a message sealed for another corp or app.
    if not hmac.compare_digest(found_id, receiver_id.encode("utf-8")):
        raise DecryptError("receive id mismatch")
    try:
        msg.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecryptError("message is not valid UTF-8") from exc
    # Do not strip: platform XML keeps "\n" between elements
    # (docs/protocols/pitfalls.md#pitfall-11-do-not-strip-the-plaintext).
    return msg


def encrypt(plaintext: bytes, *, aes_key: bytes, receiver_id: str, random_prefix: bytes) -> str:
    """Encrypt a message for the platform and return the base64 ``Encrypt`` value.

    The caller passes ``random_prefix`` (16 bytes, ``os.urandom(16)`` in production) so that
    tests reproduce the published vectors.
    """
    if len(random_prefix) != RANDOM_BYTES:
        raise ValueError("random_prefix must be 16 bytes")
    full = (
        random_prefix
        # msg_len counts bytes, not characters
        # (docs/protocols/pitfalls.md#pitfall-10-length-is-counted-in-bytes).
        + struct.pack(">I", len(plaintext))
        + plaintext
        + receiver_id.encode("utf-8")
    )
    return base64.b64encode(seal_blocks(full, aes_key)).decode("ascii")
