"""Domain value types shared by adapters, workers and the agent.

Imports nothing else from the project (an import-linter contract keeps it so).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any


class Platform(enum.StrEnum):
    """Where a message comes from; values are the webhook route names."""

    WECOM = "wecom"
    WECOM_KF = "wecom_kf"
    WECOM_AIBOT = "wecom_aibot"  # WeCom 智能机器人 (the AI bot), webhook mode
    DINGTALK = "dingtalk"
    FEISHU = "feishu"
    WECHAT_MP = "wechat_mp"
    WEB = "web"


class MessageKind(enum.StrEnum):
    """What an inbound message asks of the worker."""

    TEXT = "text"  # something a person sent: typed, spoken, or media shown by a placeholder
    EVENT = "event"  # a platform event the bot answers (follow, entering a chat, a welcome)
    NOTICE = "notice"  # a platform event that is recorded, never answered (group changes)
    PULL = "pull"  # "messages are waiting": the worker pulls them from the platform (微信客服)


class Content(enum.StrEnum):
    """What a person sent; anything but TEXT arrives as a placeholder text or a transcript."""

    TEXT = "text"
    IMAGE = "image"
    VOICE = "voice"
    VIDEO = "video"
    FILE = "file"
    LOCATION = "location"
    LINK = "link"
    CARD = "business_card"
    MINIPROGRAM = "miniprogram"
    STICKER = "sticker"  # an emoji picture (Feishu sticker, WeChat 表情)
    OTHER = "other"

    @classmethod
    def of(cls, name: str) -> Content:
        """The content type a platform's type name maps to (unknown names are OTHER)."""
        try:
            return cls(name)
        except ValueError:
            return cls.OTHER


DEFAULT_APP = "default"
# The event of the welcome turn a bot sends to a group it joined (answered with the app's
# configured welcome).
GROUP_WELCOME = "group_welcome"
# A callback that receives the answer as it is written (streamed model output).
OnDelta = Callable[[str], Awaitable[None]]
# What an `OnDelta` receives when the text streamed so far is void and the answer starts
# again (a fallback model after the first failed mid-answer). Empty, so a sink that does
# not know it appends nothing; no backend passes an empty piece otherwise.
STREAM_RESTART = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a person sent: the platform's handle to fetch it, and where it was saved."""

    kind: Content
    ref: str  # the platform's download code or media id
    name: str = ""
    path: str = ""  # set once the worker has saved it
    size: int = 0
    error: str = ""  # why it could not be saved ("too_large", "refused", "failed")
    # A secret that opens this one file (the WeCom AI bot's per-message `aeskey` in
    # long-connection mode): carried to the worker, dropped once the file is fetched, never
    # shown (repr) nor logged.
    key: str = field(default="", repr=False)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind.value,
            "ref": self.ref,
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "error": self.error,
        }
        if self.key:
            data["key"] = self.key
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attachment:
        return cls(
            kind=Content.of(str(data.get("kind", ""))),
            ref=str(data.get("ref", "")),
            name=str(data.get("name", "")),
            path=str(data.get("path", "")),
            size=int(data.get("size", 0) or 0),
            error=str(data.get("error", "")),
            key=str(data.get("key", "")),
        )


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A normalised message from any platform; what Celery carries (as JSON).

    `route` is the adapter's own addressing for the answer (a session webhook, an agent
    id, a message to reply to): only the adapter that wrote it reads it. Everything the
    rest of the bot decides on is a typed field.
    """

    platform: Platform
    app: str
    event_id: str
    conversation_id: str
    sender_id: str
    text: str
    is_group: bool = False
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    kind: MessageKind = MessageKind.TEXT
    content: Content = Content.TEXT
    # `text` only stands for something the bot cannot read ("[图片]"): answer politely.
    placeholder: bool = False
    event: str = ""  # the platform's event name: subscribe, CLICK, enter_agent, …
    event_key: str = ""  # a menu key (CLICK) or a QR scene (subscribe, SCAN)
    attachments: tuple[Attachment, ...] = ()
    route: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "platform": self.platform.value,
            "app": self.app,
            "event_id": self.event_id,
            "conversation_id": self.conversation_id,
            "sender_id": self.sender_id,
            "text": self.text,
            "is_group": self.is_group,
            "sent_at": self.sent_at.isoformat(),
            "kind": self.kind.value,
            "route": dict(self.route),
        }
        # Defaults are left out: most messages are plain text.
        if self.content is not Content.TEXT:
            data["content"] = self.content.value
        if self.placeholder:
            data["placeholder"] = True
        if self.event:
            data["event"] = self.event
        if self.event_key:
            data["event_key"] = self.event_key
        if self.attachments:
            data["attachments"] = [a.to_json() for a in self.attachments]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InboundMessage:
        sent_at = datetime.fromisoformat(data["sent_at"])
        if sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=UTC)
        return cls(
            platform=Platform(data["platform"]),
            app=str(data["app"]),
            event_id=str(data["event_id"]),
            conversation_id=str(data["conversation_id"]),
            sender_id=str(data["sender_id"]),
            text=str(data["text"]),
            is_group=bool(data.get("is_group", False)),
            sent_at=sent_at,
            kind=MessageKind(data.get("kind", MessageKind.TEXT.value)),
            content=Content.of(str(data.get("content", Content.TEXT.value))),
            placeholder=bool(data.get("placeholder", False)),
            event=str(data.get("event", "")),
            event_key=str(data.get("event_key", "")),
            attachments=tuple(Attachment.from_json(a) for a in data.get("attachments") or ()),
            route={str(k): str(v) for k, v in (data.get("route") or {}).items()},
        )

    @property
    def conversation_key(self) -> str:
        """A key unique across platforms and apps, for locks and storage."""
        return f"{self.platform.value}:{self.app}:{self.conversation_id}"

    @property
    def question(self) -> str:
        """What the person asked in words ("" for events and placeholders)."""
        if self.kind is not MessageKind.TEXT or self.placeholder or self.event:
            return ""
        return self.text.strip()


@dataclass(frozen=True, slots=True)
class Source:
    """Where a piece of an answer came from (a document and its section)."""

    title: str
    section: str = ""

    @property
    def label(self) -> str:
        """`title · section`, or the title alone."""
        return f"{self.title} · {self.section}" if self.section else self.title


# The line naming the passages an answer drew on: plain text, so every platform shows it
# (the web chat shows the same sources as a list instead, adapters/web.py).
SOURCES_PREFIX = "\n\n参考："


def sources_line(sources: tuple[Source, ...]) -> str:
    """The plain-text line an answer citing `sources` ends with ("" for none)."""
    return SOURCES_PREFIX + "；".join(s.label for s in sources) if sources else ""


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer to one inbound message, addressed like the message it answers."""

    platform: Platform
    app: str
    conversation_id: str
    recipient_id: str
    text: str
    in_reply_to: str
    is_group: bool = False
    route: Mapping[str, str] = field(default_factory=dict)  # the message's, for its adapter
    sources: tuple[Source, ...] = ()
    # An earlier attempt of this very part may have reached the platform (its send timed
    # out, or a worker died between the send and its sent-marker): an adapter whose API can
    # drop a repeat (WeCom's duplicate check) asks it to.
    resend: bool = False
    # The passages `text` ends naming (its `sources_line`): a channel that can show them
    # as links (the web chat) takes the line off and shows these instead.
    citations: tuple[Source, ...] = ()

    @classmethod
    def to(
        cls,
        message: InboundMessage,
        text: str,
        sources: tuple[Source, ...] = (),
        citations: tuple[Source, ...] = (),
    ) -> Reply:
        return cls(
            platform=message.platform,
            app=message.app,
            conversation_id=message.conversation_id,
            recipient_id=message.sender_id,
            text=text,
            in_reply_to=message.event_id,
            is_group=message.is_group,
            route=dict(message.route),
            sources=sources,
            citations=citations,
        )

    def with_text(self, text: str) -> Reply:
        return replace(self, text=text)


@dataclass(frozen=True, slots=True)
class Turn:
    """One remembered turn of a conversation, for the agent's memory."""

    role: str  # "user" or "assistant"
    text: str
