"""DingTalk robot message bodies: the pieces a message is made of (docs/protocols/dingtalk.md).

Pure: no I/O. Malformed input is a PayloadError; types the robot does not answer are None.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from adapters import payload
from adapters.dingtalk import media as dingtalk_media
from bot.domain import Content, Platform
from bot.errors import PayloadError

PLATFORM = Platform.DINGTALK
VOICE_TEXT = "[语音]"


def json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    return payload.json_object(raw, what, PLATFORM)


def string(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if isinstance(value, bool | dict | list):
        raise PayloadError(f"{name} has the wrong type", PLATFORM)
    return str(value)


def sent_at(create_at: str, now: float) -> datetime:
    # createAt is in milliseconds; an absent or odd value falls back to the arrival time.
    if create_at.isascii() and create_at.isdigit() and len(create_at) <= 16:
        return datetime.fromtimestamp(int(create_at) / 1000, UTC)
    return datetime.fromtimestamp(now, UTC)


def content_text(body: Mapping[str, Any]) -> str | None:
    """The text a person wrote, by msgtype; None for types this adapter does not answer."""
    msg_type = body.get("msgtype")
    content = body.get("content")
    content = content if isinstance(content, dict) else {}
    if msg_type == "text":
        text = body.get("text")
        value = text.get("content") if isinstance(text, dict) else None
        return value if isinstance(value, str) else ""
    if msg_type == "richText":
        items = content.get("richText")
        items = items if isinstance(items, list) else []
        texts = (i.get("text") for i in items if isinstance(i, dict))
        return "\n".join(t.strip() for t in texts if isinstance(t, str) and t.strip())
    if msg_type == "audio":
        # DingTalk transcribes voice messages itself
        # (docs/protocols/dingtalk.md#mentions-and-message-types).
        recognition = content.get("recognition")
        return recognition if isinstance(recognition, str) and recognition else VOICE_TEXT
    return None


def voice_code(body: Mapping[str, Any]) -> str:
    """The downloadCode of a voice message's recording ("" when there is none)."""
    content = body.get("content")
    code = content.get("downloadCode") if isinstance(content, dict) else None
    return code if isinstance(code, str) else ""


def media(body: Mapping[str, Any]) -> dingtalk_media.Described | None:
    """Pictures, files, videos, and the images of a richText message (adapters.dingtalk.media).

    Answered, not dropped: the placeholder text gets a polite answer, and the worker fetches
    the media (bot/pipeline/media.py) so a person taking over can see it.
    """
    msg_type = body.get("msgtype")
    content = body.get("content")
    content = content if isinstance(content, dict) else {}
    if msg_type == "richText":
        items = content.get("richText")
        images = dingtalk_media.rich_text_images(items if isinstance(items, list) else [])
        if not images:
            return None
        return dingtalk_media.Described(text="[图片]", content=Content.IMAGE, attachments=images)
    return dingtalk_media.describe(str(msg_type or ""), content)
