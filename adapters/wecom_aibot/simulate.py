"""Build WeCom 智能机器人 callbacks exactly as WeCom does: for tests and ``bot simulate``.

Pure: the caller passes the `Stamp` (``os.urandom(16)`` live). The same `encrypt` and
`signature` functions the adapter verifies with seal these requests, with the empty
receive id of the bot (adapters/wecom_aibot/envelope.py).
"""

from __future__ import annotations

import json
from typing import Any, Unpack

from adapters.wechat import crypto
from adapters.wechat import simulate as wechat_simulate
from adapters.wechat.simulate import Stamp
from adapters.wecom_aibot import envelope


def _base(msgid: str, msgtype: str, *, user: str, chatid: str, bot_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "msgid": msgid,
        "aibotid": bot_id,
        "chattype": "group" if chatid else "single",
        "from": {"userid": user},
        "msgtype": msgtype,
    }
    if chatid:
        data["chatid"] = chatid
    return data


def text_message(
    text: str,
    *,
    msgid: str,
    user: str = "zhangsan",
    chatid: str = "",
    bot_id: str = "AIBOTID",
    response_url: str = "",
    quote: str = "",
) -> dict[str, Any]:
    """The decrypted JSON of a member's text message (in a group: `chatid` set)."""
    data = _base(msgid, "text", user=user, chatid=chatid, bot_id=bot_id)
    data["response_url"] = response_url
    data["text"] = {"content": text}
    if quote:
        data["quote"] = {"msgtype": "text", "text": {"content": quote}}
    return data


def media_message(
    msgtype: str,
    url: str,
    *,
    msgid: str,
    user: str = "zhangsan",
    bot_id: str = "AIBOTID",
    response_url: str = "",
    text: str = "",
) -> dict[str, Any]:
    """A member's `image` or `file` message naming its encrypted URL; with `text`, a
    `mixed` message of those words and the picture (1:1)."""
    kind = "mixed" if text else msgtype
    data = _base(msgid, kind, user=user, chatid="", bot_id=bot_id)
    data["response_url"] = response_url
    if text:
        items = [{"msgtype": "text", "text": {"content": text}}]
        items.append({"msgtype": "image", "image": {"url": url}})
        data["mixed"] = {"msg_item": items}
    else:
        data[msgtype] = {"url": url}
    return data


def voice_message(
    said: str,
    *,
    msgid: str,
    user: str = "zhangsan",
    bot_id: str = "AIBOTID",
    response_url: str = "",
) -> dict[str, Any]:
    """A member's `voice` message (1:1): WeCom sends the bot its own transcript, `said`, and
    never the recording."""
    data = _base(msgid, "voice", user=user, chatid="", bot_id=bot_id)
    data["response_url"] = response_url
    data["voice"] = {"content": said}
    return data


def refresh(
    stream_id: str, *, msgid: str, user: str = "zhangsan", chatid: str = "", bot_id: str = "AIBOTID"
) -> dict[str, Any]:
    """The decrypted JSON of a stream refresh callback."""
    data = _base(msgid, "stream", user=user, chatid=chatid, bot_id=bot_id)
    data["stream"] = {"id": stream_id}
    return data


def event(
    eventtype: str,
    body: dict[str, Any] | None = None,
    *,
    msgid: str,
    create_time: int,
    user: str = "zhangsan",
    chatid: str = "",
    bot_id: str = "AIBOTID",
) -> dict[str, Any]:
    """The decrypted JSON of an event (enter_chat, feedback_event, template_card_event)."""
    data = _base(msgid, "event", user=user, chatid=chatid, bot_id=bot_id)
    data["create_time"] = create_time
    data["event"] = {"eventtype": eventtype, **({eventtype: body} if body is not None else {})}
    return data


def build_post(
    data: dict[str, Any], *, token: str, aes_key: str, **stamp: Unpack[Stamp]
) -> tuple[dict[str, str], bytes]:
    """Encrypt and sign a callback carrying `data`; return (query, JSON body)."""
    plaintext = json.dumps(data, ensure_ascii=False).encode("utf-8")
    encrypted, query = wechat_simulate.seal(
        plaintext, token=token, aes_key=aes_key, receive_id=envelope.RECEIVE_ID, **stamp
    )
    return query, json.dumps({"encrypt": encrypted}).encode("ascii")


def build_verification(
    echo: str, *, token: str, aes_key: str, **stamp: Unpack[Stamp]
) -> dict[str, str]:
    """The query of the GET URL check; the adapter must answer `echo`."""
    echostr, query = wechat_simulate.seal(
        echo.encode("utf-8"), token=token, aes_key=aes_key, receive_id=envelope.RECEIVE_ID, **stamp
    )
    return {**query, "echostr": echostr}


def open_reply(body: bytes, *, token: str, aes_key: str) -> dict[str, Any]:
    """A passive reply as WeCom reads it: signature checked, decrypted JSON."""
    return envelope.open_reply(body, token=token, aes_key=crypto.decode_aes_key(aes_key))
