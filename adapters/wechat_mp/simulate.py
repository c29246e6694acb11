"""Build the requests WeChat sends an Official Account: pure functions for tests and `bot simulate`.

The same signature and encryption functions the adapter verifies with
(docs/protocols/wechat-mp.md#url-verification, docs/protocols/wechat-mp.md#encryption-modes). Each
POST builder returns ``(query, body)``; the GET builder returns the query.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Unpack

from adapters.wechat import crypto as wechat_crypto
from adapters.wechat import simulate as wechat_simulate
from adapters.wechat.simulate import Stamp
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
    return {**_signed_query(token, timestamp, nonce), "echostr": echostr}


def plain_post(
    xml: bytes, *, token: str, timestamp: str, nonce: str, openid: str
) -> tuple[dict[str, str], bytes]:
    """A plaintext-mode POST: the body as is, the 3-field signature in the query."""
    return {**_signed_query(token, timestamp, nonce), "openid": openid}, xml


def _signed_query(token: str, timestamp: str, nonce: str) -> dict[str, str]:
    # The 3-field signature WeChat puts on every request, in every mode; it covers no body.
    return {
        "signature": wechat_crypto.plain_signature(token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
    }


class Sealing(Stamp):
    """The keywords of `compat_post`, which `safe_post` passes on: the app's keys and a `Stamp`."""

    token: str
    aes_key: str
    app_id: str
    openid: str


def safe_post(
    xml: bytes, *, to_user: str, **sealing: Unpack[Sealing]
) -> tuple[dict[str, str], bytes]:
    """A safe-mode POST: ``<xml><ToUserName/><Encrypt/></xml>``, msg_signature over Encrypt."""
    # Compatible mode with ToUserName as the only plaintext field.
    return compat_post(xml, {"ToUserName": to_user}, **sealing)


def compat_post(
    xml: bytes,
    plain_fields: Mapping[str, str | int],
    *,
    token: str,
    aes_key: str,
    app_id: str,
    openid: str,
    **stamp: Unpack[Stamp],
) -> tuple[dict[str, str], bytes]:
    """A compatible-mode POST: the plaintext fields and ``<Encrypt>`` side by side."""
    encrypted, signed = wechat_simulate.seal(
        xml, token=token, aes_key=aes_key, receive_id=app_id, **stamp
    )
    query = {
        **_signed_query(token, stamp["timestamp"], stamp["nonce"]),
        "openid": openid,
        "encrypt_type": "aes",
        "msg_signature": signed["msg_signature"],
    }
    return query, build_xml({**plain_fields, "Encrypt": encrypted})


def passive_content(answer: str, *, aes_key: str, app_id: str) -> str:
    """The text of a passive reply as WeChat reads it (opened first when encrypted)."""
    fields = parse_xml(answer.encode("utf-8"))
    if "Encrypt" in fields:
        inner = wechat_crypto.decrypt(
            fields["Encrypt"], aes_key=wechat_crypto.decode_aes_key(aes_key), receiver_id=app_id
        )
        fields = parse_xml(inner)
    return fields.get("Content", "")
