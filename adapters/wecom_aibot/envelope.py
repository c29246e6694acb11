"""The JSON envelope of WeCom 智能机器人 callbacks and passive replies. Pure: no I/O.

The bot uses the WXBizMsgCrypt scheme (adapters/wechat/crypto.py) with an EMPTY receive id,
and JSON where the WeCom app uses XML: a callback's body is ``{"encrypt": "..."}`` signed by
the query's ``msg_signature``; a reply is ``{"encrypt", "msgsignature", "timestamp",
"nonce"}``, signed over the reply's own ciphertext. Official page: 回调和回复的加解密方案
https://developer.work.weixin.qq.com/document/path/101033; notes in
docs/protocols/wecom-aibot.md#encryption.
"""

from __future__ import annotations

import json
from typing import Any

from adapters import payload
from adapters.wechat import crypto
from bot.domain import Platform
from bot.errors import PayloadError, SignatureError

PLATFORM = Platform.WECOM_AIBOT
# 企业内部智能机器人: "ReceiveId 为空字符串" (doc 101033). The plaintext ends right after the
# message, so a ciphertext sealed for a corp (the WeCom app's receive id) fails the check.
RECEIVE_ID = ""
# A real `encrypt` is the base64 of a message of a few KB; bound what is decoded.
MAX_ENCRYPTED_CHARS = 1 << 20


def encrypted_field(body: bytes) -> str:
    """The `encrypt` value of a callback body; PayloadError when the body is not that shape."""
    data = payload.json_object(body, "callback body", PLATFORM)
    encrypted = data.get("encrypt")
    if not isinstance(encrypted, str) or not encrypted:
        raise PayloadError("missing encrypt", PLATFORM)
    if len(encrypted) > MAX_ENCRYPTED_CHARS:
        raise PayloadError("encrypt too long", PLATFORM)
    return encrypted


def seal_reply(
    message: dict[str, Any],
    *,
    token: str,
    aes_key: bytes,
    timestamp: str,
    nonce: str,
    random_prefix: bytes,
) -> bytes:
    """Encrypt and sign a passive reply (`message` as JSON); return the response body."""
    plaintext = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    encrypted = crypto.encrypt(
        plaintext, aes_key=aes_key, receiver_id=RECEIVE_ID, random_prefix=random_prefix
    )
    # The official JSON samples write timestamp and nonce as strings.
    sealed = {
        "encrypt": encrypted,
        "msgsignature": crypto.signature(token, timestamp, nonce, encrypted),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    return json.dumps(sealed, separators=(",", ":")).encode("ascii")


def open_reply(body: bytes, *, token: str, aes_key: bytes) -> dict[str, Any]:
    """Verify and decrypt a passive reply, as WeCom does (tests and `bot simulate`)."""
    data = payload.json_object(body, "reply", PLATFORM)
    fields = [data.get(name) for name in ("encrypt", "msgsignature", "timestamp", "nonce")]
    if not all(isinstance(value, str) and value for value in fields):
        raise PayloadError("reply lacks encrypt, msgsignature, timestamp or nonce", PLATFORM)
    encrypted, signature, timestamp, nonce = (str(value) for value in fields)
    if crypto.signature(token, timestamp, nonce, encrypted) != signature:
        raise SignatureError("reply signature mismatch", PLATFORM)
    plain = crypto.decrypt(encrypted, aes_key=aes_key, receiver_id=RECEIVE_ID)
    return payload.json_object(plain, "reply", PLATFORM)
