"""Build WeCom callback requests exactly as WeCom does: for tests and ``bot simulate wecom``.

Pure: the caller passes the timestamp, nonce and random prefix (``os.urandom(16)`` live) as
the keywords of a `Stamp`. The same `encrypt` and `signature` functions the adapter verifies
with seal these requests (`adapters.wechat.simulate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Unpack

from adapters.wechat import simulate as wechat_simulate
from adapters.wechat.simulate import Stamp
from adapters.xml import build_xml


class Sealing(Stamp):
    """The keywords of `seal`, which the builders pass on: the app's keys and a `Stamp`."""

    corp_id: str
    agent_id: str
    token: str
    aes_key: str


def seal(
    plaintext: bytes,
    *,
    corp_id: str,
    agent_id: str,
    token: str,
    aes_key: str,
    **stamp: Unpack[Stamp],
) -> tuple[dict[str, str], bytes]:
    """Encrypt any inner XML into a signed callback POST; return (query, body)."""
    encrypted, query = wechat_simulate.seal(
        plaintext, token=token, aes_key=aes_key, receive_id=corp_id, **stamp
    )
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


def image_fields(
    media_id: str, *, corp_id: str, agent_id: str, from_user: str, msg_id: str, create_time: int
) -> dict[str, str | int]:
    """Return the decrypted fields of a member's picture (its MediaId, fetched by media/get)."""
    return {
        "ToUserName": corp_id,
        "FromUserName": from_user,
        "CreateTime": create_time,
        "MsgType": "image",
        "PicUrl": "https://wework.qpic.cn/simulated",
        "MediaId": media_id,
        "MsgId": msg_id,
        "AgentID": int(agent_id),
    }


def voice_fields(
    media_id: str, *, corp_id: str, agent_id: str, from_user: str, msg_id: str, create_time: int
) -> dict[str, str | int]:
    """Return the decrypted fields of a member's voice message (AMR, fetched by media/get)."""
    return {
        "ToUserName": corp_id,
        "FromUserName": from_user,
        "CreateTime": create_time,
        "MsgType": "voice",
        "MediaId": media_id,
        "Format": "amr",
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
    fields: Mapping[str, str | int], **sealing: Unpack[Sealing]
) -> tuple[dict[str, str], bytes]:
    """Build a signed, encrypted callback POST carrying these inner fields; (query, body)."""
    return seal(build_xml(fields), **sealing)


def build_callback(
    text: str, *, from_user: str, msg_id: str, create_time: int, **sealing: Unpack[Sealing]
) -> tuple[dict[str, str], bytes]:
    """Build the callback POST for a member's text message; return (query, body)."""
    fields = text_fields(
        text,
        corp_id=sealing["corp_id"],
        agent_id=sealing["agent_id"],
        from_user=from_user,
        msg_id=msg_id,
        create_time=create_time,
    )
    return build_post(fields, **sealing)


def build_verification(
    echo: str, *, corp_id: str, token: str, aes_key: str, **stamp: Unpack[Stamp]
) -> dict[str, str]:
    """Build the query of the GET URL check; the adapter must answer ``echo``.

    Values are raw: an HTTP client percent-encodes them ("+", "/", "=" in echostr).
    """
    echostr, query = wechat_simulate.seal(
        echo.encode("utf-8"), token=token, aes_key=aes_key, receive_id=corp_id, **stamp
    )
    return {**query, "echostr": echostr}
