"""Domain value types shared by adapters, workers and the agent.

Imports nothing else from the project (see tests/unit/test_layering.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class Platform(enum.StrEnum):
    """Where a message comes from; values are the route names of DESIGN.md."""

    WECOM = "wecom"
    WECOM_KF = "wecom_kf"
    DINGTALK = "dingtalk"
    FEISHU = "feishu"
    WECHAT_MP = "wechat_mp"
    WEB = "web"


class MessageKind(enum.StrEnum):
    """What an inbound message is: something a person wrote, or a platform event."""

    TEXT = "text"
    EVENT = "event"


DEFAULT_APP = "default"


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A normalised message from any platform; what Celery carries (as JSON)."""

    platform: Platform
    app: str
    event_id: str
    conversation_id: str
    sender_id: str
    text: str
    is_group: bool = False
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    kind: MessageKind = MessageKind.TEXT
    # Platform routing facts the adapter needs to answer (e.g. event name, agent id).
    meta: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform.value,
            "app": self.app,
            "event_id": self.event_id,
            "conversation_id": self.conversation_id,
            "sender_id": self.sender_id,
            "text": self.text,
            "is_group": self.is_group,
            "sent_at": self.sent_at.isoformat(),
            "kind": self.kind.value,
            "meta": dict(self.meta),
        }

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
            meta={str(k): str(v) for k, v in (data.get("meta") or {}).items()},
        )

    @property
    def conversation_key(self) -> str:
        """A key unique across platforms and apps, for locks and storage."""
        return f"{self.platform.value}:{self.app}:{self.conversation_id}"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a piece of an answer came from (a document and its section)."""

    title: str
    section: str = ""


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
    meta: dict[str, str] = field(default_factory=dict)
    sources: tuple[Source, ...] = ()

    @classmethod
    def to(cls, message: InboundMessage, text: str, sources: tuple[Source, ...] = ()) -> Reply:
        return cls(
            platform=message.platform,
            app=message.app,
            conversation_id=message.conversation_id,
            recipient_id=message.sender_id,
            text=text,
            in_reply_to=message.event_id,
            is_group=message.is_group,
            meta=dict(message.meta),
            sources=sources,
        )

    def with_text(self, text: str) -> Reply:
        return Reply(
            platform=self.platform,
            app=self.app,
            conversation_id=self.conversation_id,
            recipient_id=self.recipient_id,
            text=text,
            in_reply_to=self.in_reply_to,
            is_group=self.is_group,
            meta=dict(self.meta),
            sources=self.sources,
        )


@dataclass(frozen=True, slots=True)
class Turn:
    """One remembered turn of a conversation, for the agent's memory."""

    role: str  # "user" or "assistant"
    text: str
