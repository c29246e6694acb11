"""The decrypted JSON of WeCom 智能机器人 callbacks: messages, stream refreshes, events.

Pure: no I/O. Malformed input is a PayloadError. Official pages: 接收消息
https://developer.work.weixin.qq.com/document/path/100719, 接收事件
https://developer.work.weixin.qq.com/document/path/101027; notes in
docs/protocols/wecom-aibot.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.media import placeholder
from bot.domain import Attachment, Content, InboundMessage, Platform
from bot.errors import PayloadError

PLATFORM = Platform.WECOM_AIBOT
# What a member may send today (doc 100719). Another type (one WeCom adds later) is still a
# message: answered politely as OTHER_TEXT, never left without an answer.
MESSAGE_TYPES = frozenset({"text", "mixed", "image", "voice", "file", "video"})
OTHER_TEXT = placeholder(Content.OTHER)
IMAGE_TEXT = placeholder(Content.IMAGE)
VOICE_TEXT = placeholder(Content.VOICE)
FILE_TEXT = placeholder(Content.FILE)
VIDEO_TEXT = placeholder(Content.VIDEO)
_PLACEHOLDERS = {"image": IMAGE_TEXT, "file": FILE_TEXT, "video": VIDEO_TEXT}
# In a group the text starts with the mention of the bot ("@RobotA hello robot"); the bot's
# display name is not in the callback, so the leading @word is what is taken off.
_LEADING_MENTION = re.compile(r"^\s*@\S+\s*")
MAX_ID_CHARS = 256


@dataclass(frozen=True, slots=True)
class Envelope:
    """The fields every callback shares (msgid, who, where)."""

    msgid: str
    aibotid: str
    msgtype: str
    userid: str
    chatid: str
    is_group: bool

    @property
    def conversation_id(self) -> str:
        """A group's chat id, else the member's user id (1:1 with the bot)."""
        return self.chatid if self.is_group else self.userid


@dataclass(frozen=True, slots=True)
class Question:
    """What a member's message says, as text the agent can answer."""

    text: str
    content: Content
    placeholder: bool


def string(data: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    """A string field ("" when absent); PayloadError for another type or a missing required one."""
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise PayloadError(f"missing {name}", PLATFORM)
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{name} is not a string", PLATFORM)
    return value


def obj(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    """An object field ({} when absent); PayloadError for another type."""
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{name} is not an object", PLATFORM)
    return value


def envelope(data: Mapping[str, Any]) -> Envelope:
    """The shared fields of a callback."""
    msgid = string(data, "msgid", required=True)
    if len(msgid) > MAX_ID_CHARS:
        raise PayloadError("msgid too long", PLATFORM)
    chattype = string(data, "chattype") or "single"
    if chattype not in ("single", "group"):
        raise PayloadError("unknown chattype", PLATFORM)
    is_group = chattype == "group"
    userid = string(obj(data, "from"), "userid", required=True)
    chatid = string(data, "chatid", required=is_group)
    if len(userid) > MAX_ID_CHARS or len(chatid) > MAX_ID_CHARS:
        raise PayloadError("id too long", PLATFORM)
    return Envelope(
        msgid=msgid,
        aibotid=string(data, "aibotid"),
        msgtype=string(data, "msgtype", required=True),
        userid=userid,
        chatid=chatid,
        is_group=is_group,
    )


def stream_id(data: Mapping[str, Any]) -> str:
    """The id of the stream a refresh callback asks about."""
    sid = string(obj(data, "stream"), "id", required=True)
    if len(sid) > MAX_ID_CHARS:
        raise PayloadError("stream id too long", PLATFORM)
    return sid


def _text_of(item: Mapping[str, Any], msgtype: str) -> tuple[str, bool]:
    """The words of one message part and whether they only stand for media."""
    if msgtype == "text":
        return string(obj(item, "text"), "content"), False
    if msgtype == "voice":
        # WeCom transcribes voice itself: `voice.content` is what was said.
        said = string(obj(item, "voice"), "content")
        return (said, False) if said.strip() else (VOICE_TEXT, True)
    if msgtype == "mixed":
        parts = obj(item, "mixed").get("msg_item")
        if not isinstance(parts, list):
            raise PayloadError("mixed.msg_item is not a list", PLATFORM)
        texts: list[str] = []
        only_media = True
        for part in parts:
            if not isinstance(part, dict):
                raise PayloadError("mixed item is not an object", PLATFORM)
            text, media = _text_of(part, string(part, "msgtype"))
            if text.strip():
                texts.append(text.strip())
                only_media = only_media and media
        return "\n".join(texts), only_media and bool(texts)
    if msgtype in _PLACEHOLDERS:
        return _PLACEHOLDERS[msgtype], True
    return "", True


def question(data: Mapping[str, Any], env: Envelope) -> Question:
    """The member's message as one question: group mentions taken off, a quote appended."""
    if env.msgtype not in MESSAGE_TYPES:
        return Question(text=OTHER_TEXT, content=Content.OTHER, placeholder=True)
    text, placeholder = _text_of(data, env.msgtype)
    if env.is_group and not placeholder:
        text = _LEADING_MENTION.sub("", text, count=1)
    quote = obj(data, "quote")
    if quote and not placeholder:
        # What the member replied to is part of the question ("这个怎么退？" quoting an order).
        quoted, _ = _text_of(quote, string(quote, "msgtype"))
        if quoted.strip():
            text = f"{text.strip()}\n（引用：{quoted.strip()}）"
    content = Content.TEXT if env.msgtype in ("text", "mixed") else Content.of(env.msgtype)
    if env.msgtype == "mixed" and placeholder:
        content = Content.IMAGE
    return Question(text=text.strip(), content=content, placeholder=placeholder)


def feedback(event: Mapping[str, Any]) -> tuple[str, str, str]:
    """A feedback_event's (rated id, "up" / "down" / "cancel", a short summary)."""
    body = obj(event, "feedback_event")
    rated = string(body, "id", required=True)
    kind = body.get("type")
    # 1: accurate (👍), 2: inaccurate (👎), 3: the member took the rating back.
    rating = {1: "up", 2: "down", 3: "cancel"}.get(kind) if isinstance(kind, int) else None
    if rating is None:
        raise PayloadError("feedback_event.type is not 1, 2 or 3", PLATFORM)
    said = string(body, "content")[:200]
    summary = {"up": "👍", "down": "👎", "cancel": "取消评价"}[rating]
    return rated, rating, f"{summary} {said}".strip()


def inbound(
    app: str,
    env: Envelope,
    asked: Question,
    *,
    now: float,
    route: dict[str, str],
    attachments: tuple[Attachment, ...] = (),
) -> InboundMessage:
    """A message callback as the pipeline's message: the same in webhook and long-connection
    mode, but for how the answer goes back (`route`) and what is fetched (`attachments`)."""
    return InboundMessage(
        platform=PLATFORM,
        app=app,
        event_id=env.msgid,
        conversation_id=env.conversation_id,
        sender_id=env.userid,
        text=asked.text,
        is_group=env.is_group,
        # Message callbacks carry no send time: the arrival is as close as it gets.
        sent_at=datetime.fromtimestamp(now, UTC),
        content=asked.content,
        placeholder=asked.placeholder,
        attachments=attachments,
        route=route,
    )
