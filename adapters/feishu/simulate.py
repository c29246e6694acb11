"""Build Feishu event requests exactly as Feishu does: for tests and ``bot simulate feishu``.

Pure: the caller passes the timestamp, nonce and IV (``os.urandom(16)`` live). The same
`encrypt` and `signature` functions the adapter verifies with seal these requests.
"""

from __future__ import annotations

import json
from typing import Any, NotRequired, TypedDict, Unpack

from adapters.feishu import crypto as feishu_crypto

BOT_NAME = "客服机器人"


def seal(
    payload: dict[str, Any],
    *,
    encrypt_key: str,
    timestamp: str,
    nonce: str,
    iv: bytes,
) -> tuple[dict[str, str], bytes]:
    """Return (headers, body) of a POST carrying payload; encrypted and signed with a key."""
    if not encrypt_key:
        return {"Content-Type": "application/json"}, json.dumps(payload).encode()
    plain = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    body = json.dumps({"encrypt": feishu_crypto.encrypt(plain, encrypt_key, iv)}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Lark-Request-Timestamp": timestamp,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": feishu_crypto.signature(timestamp, nonce, encrypt_key, body),
    }
    return headers, body


def envelope(
    event_type: str,
    event: dict[str, Any],
    *,
    app_id: str,
    verification_token: str,
    event_id: str,
    create_time_ms: int,
) -> dict[str, Any]:
    """The schema 2.0 envelope around one event."""
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id,
            "event_type": event_type,
            "create_time": str(create_time_ms),
            "token": verification_token,
            "app_id": app_id,
            "tenant_key": "tenant-sim",
        },
        "event": event,
    }


def text_event(
    text: str,
    *,
    user_open_id: str,
    message_id: str,
    chat_id: str,
    create_time_ms: int,
    group: bool = False,
    mention_bot: bool = False,
    bot_open_id: str = "ou_bot",
    mentions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``im.message.receive_v1`` event of a text message; mention_bot prefixes ``@bot``."""
    found = list(mentions or [])
    if mention_bot:
        key = f"@_user_{len(found) + 1}"
        found.append(
            {
                "key": key,
                "id": {"open_id": bot_open_id, "union_id": "on_bot", "user_id": ""},
                "name": BOT_NAME,
                "tenant_key": "tenant-sim",
            }
        )
        text = f"{key} {text}"
    message: dict[str, Any] = {
        "message_id": message_id,
        "root_id": "",
        "parent_id": "",
        "create_time": str(create_time_ms),
        "update_time": str(create_time_ms),
        "chat_id": chat_id,
        "chat_type": "group" if group else "p2p",
        "message_type": "text",
        "content": json.dumps({"text": text}, ensure_ascii=False),
    }
    if found:
        message["mentions"] = found
    return {
        "sender": {
            "sender_id": {"open_id": user_open_id, "union_id": "on_" + user_open_id, "user_id": ""},
            "sender_type": "user",
            "tenant_key": "tenant-sim",
        },
        "message": message,
    }


class TextMessage(TypedDict):
    """The keywords of `text_event` that `build_message` passes on (defaults: there)."""

    user_open_id: str
    message_id: str
    chat_id: str
    group: NotRequired[bool]
    mention_bot: NotRequired[bool]
    bot_open_id: NotRequired[str]


def build_message(
    text: str,
    *,
    app_id: str,
    verification_token: str,
    encrypt_key: str,
    event_id: str,
    now: int,
    nonce: str,
    iv: bytes,
    **message: Unpack[TextMessage],
) -> tuple[dict[str, str], bytes]:
    """Build the POST of a user's text message (p2p or group); return (headers, body)."""
    event = text_event(text, create_time_ms=now * 1000, **message)
    return _message_post(
        event,
        app_id=app_id,
        verification_token=verification_token,
        encrypt_key=encrypt_key,
        event_id=event_id,
        now=now,
        nonce=nonce,
        iv=iv,
    )


def build_media_message(
    message_type: str,
    content: dict[str, Any],
    *,
    app_id: str,
    verification_token: str,
    encrypt_key: str,
    event_id: str,
    now: int,
    nonce: str,
    iv: bytes,
    **message: Unpack[TextMessage],
) -> tuple[dict[str, str], bytes]:
    """Build the POST of a user's picture (``image``, content ``{"image_key"}``) or voice
    message (``audio``, content ``{"file_key", "duration"}``); return (headers, body)."""
    event = text_event("", create_time_ms=now * 1000, **message)
    event["message"]["message_type"] = message_type
    event["message"]["content"] = json.dumps(content)
    return _message_post(
        event,
        app_id=app_id,
        verification_token=verification_token,
        encrypt_key=encrypt_key,
        event_id=event_id,
        now=now,
        nonce=nonce,
        iv=iv,
    )


def build_verification(
    challenge: str,
    *,
    verification_token: str,
    encrypt_key: str,
    timestamp: str,
    nonce: str,
    iv: bytes,
    signed: bool = False,
) -> tuple[dict[str, str], bytes]:
    """Build the url_verification POST; Feishu may send it without signature headers."""
    payload = {"challenge": challenge, "token": verification_token, "type": "url_verification"}
    headers, body = seal(payload, encrypt_key=encrypt_key, timestamp=timestamp, nonce=nonce, iv=iv)
    if not signed:
        headers = {"Content-Type": "application/json"}
    return headers, body


def _message_post(
    event: dict[str, Any],
    *,
    app_id: str,
    verification_token: str,
    encrypt_key: str,
    event_id: str,
    now: int,
    nonce: str,
    iv: bytes,
) -> tuple[dict[str, str], bytes]:
    """A message event in its ``im.message.receive_v1`` envelope, sealed as Feishu posts it."""
    payload = envelope(
        "im.message.receive_v1",
        event,
        app_id=app_id,
        verification_token=verification_token,
        event_id=event_id,
        create_time_ms=now * 1000,
    )
    return seal(payload, encrypt_key=encrypt_key, timestamp=str(now), nonce=nonce, iv=iv)
