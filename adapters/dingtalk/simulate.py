"""Build DingTalk webhook requests exactly as DingTalk does: for tests and ``bot simulate``.

Pure: the caller passes timestamps, nonces and the random prefix (``os.urandom(16)`` live).
The same `dingtalk_sign.sign` and `wechat_crypto` functions the adapter verifies with sign
and seal these requests (the latter through `wechat_simulate`). Body shape:
docs/protocols/dingtalk.md#robot-messages-over-http.
"""

from __future__ import annotations

import json
from typing import Any, NotRequired, TypedDict, Unpack

from adapters.dingtalk import sign as dingtalk_sign
from adapters.wechat import simulate as wechat_simulate

# DingTalk's own sample: the session lives 90 minutes after the message
# (docs/protocols/dingtalk.md#robot-messages-over-http).
SESSION_TTL_MS = 90 * 60 * 1000


def robot_body(
    text: str,
    *,
    msg_id: str,
    staff_id: str,
    conversation_id: str,
    session_webhook: str,
    create_at_ms: int,
    group: bool = False,
    robot_code: str = "",
    msgtype: str = "text",
    content: dict[str, Any] | None = None,
    at_robot: bool = True,
) -> dict[str, Any]:
    """Return the JSON body of a robot message (text, or another msgtype with `content`)."""
    body: dict[str, Any] = {
        "msgtype": msgtype,
        "msgId": msg_id,
        "createAt": create_at_ms,
        "conversationType": "2" if group else "1",
        "conversationId": conversation_id,
        "senderId": f"$:LWCP_v1:${staff_id}",
        "senderNick": staff_id,
        "senderStaffId": staff_id,
        "senderCorpId": "ding-simulated-corp",
        "chatbotCorpId": "ding-simulated-corp",
        "chatbotUserId": "$:LWCP_v1:$robot",
        "robotCode": robot_code,
        "isAdmin": False,
        "sessionWebhook": session_webhook,
        "sessionWebhookExpiredTime": create_at_ms + SESSION_TTL_MS,
    }
    if group:
        body["conversationTitle"] = "simulated group"
        body["isInAtList"] = at_robot
        body["atUsers"] = [{"dingtalkId": "$:LWCP_v1:$robot"}] if at_robot else []
    if msgtype == "text":
        # DingTalk has already cut out the "@robot" name, leaving its space
        # (docs/protocols/dingtalk.md#robot-messages-over-http).
        body["text"] = {"content": f" {text}" if group else text}
    else:
        body["content"] = content or {}
    return body


def robot_headers(*, app_secret: str, timestamp_ms: int) -> dict[str, str]:
    """Return the signed ``timestamp``/``sign`` headers of a robot POST."""
    stamp = str(timestamp_ms)
    return {
        "timestamp": stamp,
        "sign": dingtalk_sign.sign(stamp, app_secret),
        "Content-Type": "application/json",
    }


class RobotText(TypedDict):
    """The keywords of `robot_body` that `build_robot_message` passes on (defaults: there)."""

    msg_id: str
    staff_id: str
    conversation_id: str
    session_webhook: str
    group: NotRequired[bool]
    robot_code: NotRequired[str]


def build_robot_message(
    text: str, *, app_secret: str, timestamp_ms: int, **message: Unpack[RobotText]
) -> tuple[dict[str, str], bytes]:
    """Build a signed robot text POST for a 1:1 chat or a group @robot; (headers, body)."""
    body = robot_body(text, create_at_ms=timestamp_ms, **message)
    headers = robot_headers(app_secret=app_secret, timestamp_ms=timestamp_ms)
    return headers, json.dumps(body, ensure_ascii=False).encode("utf-8")


class EventSealing(TypedDict):
    """The keywords that seal an event: the app's event keys and one request's freshness."""

    app_key: str
    token: str
    aes_key: str
    timestamp_ms: int
    nonce: str
    random_prefix: bytes


def build_event(
    event: dict[str, Any],
    *,
    app_key: str,
    token: str,
    aes_key: str,
    timestamp_ms: int,
    nonce: str,
    random_prefix: bytes,
) -> tuple[dict[str, str], bytes]:
    """Seal an event (e.g. ``{"EventType": "check_url"}``) into a callback POST; (query, body)."""
    stamp = str(timestamp_ms)
    encrypted, signed = wechat_simulate.seal(
        json.dumps(event, ensure_ascii=False).encode("utf-8"),
        token=token,
        aes_key=aes_key,
        receive_id=app_key,
        timestamp=stamp,
        nonce=nonce,
        random_prefix=random_prefix,
    )
    # The WeCom query, but DingTalk spells it "timeStamp"
    # (docs/protocols/dingtalk.md#event-subscription-over-http).
    query = {"msg_signature": signed["msg_signature"], "timeStamp": stamp, "nonce": nonce}
    return query, json.dumps({"encrypt": encrypted}).encode("utf-8")


def build_check_url(**sealing: Unpack[EventSealing]) -> tuple[dict[str, str], bytes]:
    """Build the encrypted ``check_url`` POST DingTalk sends when the URL is saved."""
    return build_event({"EventType": "check_url"}, **sealing)
