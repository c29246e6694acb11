"""Build WeCom callback requests exactly as WeCom does: for tests and ``bot simulate wecom``.

Pure: the caller passes the timestamp, nonce and random prefix (``os.urandom(16)`` live).
The same `encrypt` and `signature` functions the adapter verifies with seal these requests.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.wechat import crypto as wechat_crypto
from adapters.xml import build_xml


def seal(
    plaintext: bytes,
    *,
    corp_id: str,
    agent_id: str,
    token: str,
    aes_key: str,
    timestamp: str,
    nonce: str,
    random_prefix: bytes,
) -> tuple[dict[str, str], bytes]:
    """Encrypt any inner XML into a signed callback POST; return (query, body)."""
    encrypted = wechat_crypto.encrypt(
        plaintext,
        aes_key=wechat_crypto.decode_aes_key(aes_key),
        receiver_id=corp_id,
        random_prefix=random_prefix,
    )
    query = {
        "msg_signature": wechat_crypto.signature(token, timestamp, nonce, encrypted),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    # The outer envelope of docs/protocols/wecom.md#message-callback: AgentID is CDATA text here,
    # not a bare number.
    body = build_xml({"ToUserName": corp_id, "Encrypt": encrypted, "AgentID": agent_id})
    return query, body


def text_fields(
    text: str, *, corp_id: str, agent_id: str, from_user: str, msg_id: str, create_time: int
) -> dict[str, str | int]:
    """Return the decrypted fields of a member's text message."""
    return {
        "ToUserName": corp_id,
        "FromUserName": from_user,
        "CreateTime": create_time,
        "MsgType": "text",
        "Content": text,
        "MsgId": msg_id,
        "AgentID": int(agent_id),
    }


def event_fields(
    event: str, *, corp_id: str, agent_id: str, from_user: str, create_time: int
) -> dict[str, str | int]:
    """Return the decrypted fields of an event such as ``enter_agent``."""
    return {
        "ToUserName": corp_id,
        "FromUserName": from_user,
        "CreateTime": create_time,
        "MsgType": "event",
        "AgentID": int(agent_id),
        "Event": event,
        "EventKey": "",
    }


def build_post(
    fields: Mapping[str, str | int],
    *,
    corp_id: str,
    agent_id: str,
    token: str,
    aes_key: str,
    timestamp: str,
    nonce: str,
    random_prefix: bytes,
) -> tuple[dict[str, str], bytes]:
    """Build a signed, encrypted callback POST carrying these inner fields; (query, body)."""
    return seal(
        build_xml(fields),
        corp_id=corp_id,
        agent_id=agent_id,
        token=token,
        aes_key=aes_key,
        timestamp=timestamp,
        nonce=nonce,
        random_prefix=random_prefix,
    )


def build_callback(
    text: str,
    *,
    corp_id: str,
    agent_id: str,
    token: str,
    aes_key: str,
    from_user: str,
    msg_id: str,
    create_time: int,
    timestamp: str,
    nonce: str,
    random_prefix: bytes,
) -> tuple[dict[str, str], bytes]:
    """Build the callback POST for a member's text message; return (query, body)."""
    fields = text_fields(
        text,
        corp_id=corp_id,
        agent_id=agent_id,
        from_user=from_user,
        msg_id=msg_id,
        create_time=create_time,
    )
    return build_post(
        fields,
        corp_id=corp_id,
        agent_id=agent_id,
        token=token,
        aes_key=aes_key,
        timestamp=timestamp,
        nonce=nonce,
        random_prefix=random_prefix,
    )


def build_verification(
    echo: str,
    *,
    corp_id: str,
    token: str,
    aes_key: str,
    timestamp: str,
    nonce: str,
    random_prefix: bytes,
) -> dict[str, str]:
    """Build the query of the GET URL check; the adapter must answer ``echo``.

    Values are raw: an HTTP client percent-encodes them ("+", "/", "=" in echostr).
    """
    echostr = wechat_crypto.encrypt(
        echo.encode("utf-8"),
        aes_key=wechat_crypto.decode_aes_key(aes_key),
        receiver_id=corp_id,
        random_prefix=random_prefix,
    )
    return {
        "msg_signature": wechat_crypto.signature(token, timestamp, nonce, echostr),
        "timestamp": timestamp,
        "nonce": nonce,
        "echostr": echostr,
    }
