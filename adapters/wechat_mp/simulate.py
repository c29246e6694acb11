"""Build the requests WeChat sends an Official Account: pure functions for tests and `bot simulate`.

The same signature and encryption functions the adapter verifies with
(docs/protocols/wechat-mp.md#url-verification, docs/protocols/wechat-mp.md#encryption-modes). Each
POST builder returns ``(query, body)``; the GET builder returns the query.
"""

from __future__ import annotations

from adapters.wechat import crypto as wechat_crypto
from adapters.xml import build_xml, parse_xml


def text_xml(text: str, *, from_user: str, to_user: str, msg_id: str, create_time: int) -> bytes:
    """A decrypted text message as WeChat writes it.

    docs/protocols/wechat-mp.md#inbound-message-fields
    """
    return message_xml(
        "text",
        from_user=from_user,
        to_user=to_user,
        create_time=create_time,
        Content=text,
        MsgId=msg_id,
    )


def message_xml(
    msg_type: str, *, from_user: str, to_user: str, create_time: int, **fields: str
) -> bytes:
    """Any message or event: ``message_xml("event", ..., Event="subscribe", EventKey=...)``."""
    return build_xml(
        {
            "ToUserName": to_user,
            "FromUserName": from_user,
            "CreateTime": create_time,
            "MsgType": msg_type,
            **fields,
        }
    )


def verification_query(*, token: str, timestamp: str, nonce: str, echostr: str) -> dict[str, str]:
    """The GET WeChat sends when the server URL is saved."""
    return {
        "signature": wechat_crypto.plain_signature(token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "echostr": echostr,
    }


def plain_post(
    xml: bytes, *, token: str, timestamp: str, nonce: str, openid: str
) -> tuple[dict[str, str], bytes]:
    """A plaintext-mode POST: the body as is, the 3-field signature in the query."""
    query = {
        "signature": wechat_crypto.plain_signature(token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": openid,
    }
    return query, xml


def _encrypted_query(
    encrypted: str, *, token: str, timestamp: str, nonce: str, openid: str
) -> dict[str, str]:
    return {
        # WeChat still sends the 3-field signature in encrypted modes; it covers no body.
        "signature": wechat_crypto.plain_signature(token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": openid,
        "encrypt_type": "aes",
        "msg_signature": wechat_crypto.signature(token, timestamp, nonce, encrypted),
    }


def safe_post(
    xml: bytes,
    *,
    token: str,
    aes_key: str,
    app_id: str,
    timestamp: str,
    nonce: str,
    openid: str,
    to_user: str,
    random_prefix: bytes,
) -> tuple[dict[str, str], bytes]:
    """A safe-mode POST: ``<xml><ToUserName/><Encrypt/></xml>``, msg_signature over Encrypt."""
    encrypted = wechat_crypto.encrypt(
        xml,
        aes_key=wechat_crypto.decode_aes_key(aes_key),
        receiver_id=app_id,
        random_prefix=random_prefix,
    )
    body = build_xml({"ToUserName": to_user, "Encrypt": encrypted})
    query = _encrypted_query(
        encrypted, token=token, timestamp=timestamp, nonce=nonce, openid=openid
    )
    return query, body


def compat_post(
    xml: bytes,
    plain_fields: dict[str, str | int],
    *,
    token: str,
    aes_key: str,
    app_id: str,
    timestamp: str,
    nonce: str,
    openid: str,
    random_prefix: bytes,
) -> tuple[dict[str, str], bytes]:
    """A compatible-mode POST: the plaintext fields and ``<Encrypt>`` side by side."""
    encrypted = wechat_crypto.encrypt(
        xml,
        aes_key=wechat_crypto.decode_aes_key(aes_key),
        receiver_id=app_id,
        random_prefix=random_prefix,
    )
    body = build_xml({**plain_fields, "Encrypt": encrypted})
    query = _encrypted_query(
        encrypted, token=token, timestamp=timestamp, nonce=nonce, openid=openid
    )
    return query, body


def passive_content(answer: str, *, aes_key: str, app_id: str) -> str:
    """The text of a passive reply as WeChat reads it (opened first when encrypted)."""
    fields = parse_xml(answer.encode("utf-8"))
    if "Encrypt" in fields:
        inner = wechat_crypto.decrypt(
            fields["Encrypt"], aes_key=wechat_crypto.decode_aes_key(aes_key), receiver_id=app_id
        )
        fields = parse_xml(inner)
    return fields.get("Content", "")
