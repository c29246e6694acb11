"""Seal a callback as the WeChat family does: for the WeCom, 微信客服, MP and DingTalk simulators.

All four encrypt with WXBizMsgCrypt and put the same ``msg_signature`` over the ciphertext
(docs/protocols/wechat-crypto.md), using the `crypto` functions the adapters verify with. Pure:
the caller passes the `Stamp` (``os.urandom(16)`` live).
"""

from __future__ import annotations

from typing import TypedDict

from adapters.wechat import crypto


class Stamp(TypedDict):
    """What a sender draws afresh for every callback; the simulators take it as keywords."""

    timestamp: str
    nonce: str
    random_prefix: bytes


def seal(
    plaintext: bytes,
    *,
    token: str,
    aes_key: str,
    receive_id: str,
    timestamp: str,
    nonce: str,
    random_prefix: bytes,
) -> tuple[str, dict[str, str]]:
    """Encrypt `plaintext` for `receive_id`; return it and the ``msg_signature`` query over it."""
    encrypted = crypto.encrypt(
        plaintext,
        aes_key=crypto.decode_aes_key(aes_key),
        receiver_id=receive_id,
        random_prefix=random_prefix,
    )
    query = {
        "msg_signature": crypto.signature(token, timestamp, nonce, encrypted),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    return encrypted, query
