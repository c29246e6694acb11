"""Database tables (SQLModel): conversations, messages, delivery records."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class Conversation(SQLModel, table=True):
    """One conversation on one platform app (a 1:1 chat or a group)."""

    __table_args__ = (UniqueConstraint("platform", "app", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=32, index=True)
    app: str = Field(max_length=64)
    external_id: str = Field(max_length=255)  # the platform's conversation / user id
    is_group: bool = False
    state: str = Field(default="bot", max_length=16)  # "bot" or "human" (handoff, later issue)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class Message(SQLModel, table=True):
    """One inbound or outbound message, with the platform's message id."""

    __table_args__ = (UniqueConstraint("conversation_id", "direction", "platform_msg_id"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    direction: str = Field(max_length=3)  # "in" or "out"
    platform_msg_id: str = Field(max_length=255)  # inbound: event id; outbound: "reply:<event id>"
    sender_id: str = Field(default="", max_length=255)
    kind: str = Field(default="text", max_length=16)
    text: str = ""
    backend: str = Field(default="", max_length=64)  # which model answered ("" for inbound)
    degraded: bool = False  # answered without a model (FAQ or "a human will follow up")
    created_at: datetime = Field(default_factory=_now, index=True)


class Delivery(SQLModel, table=True):
    """One attempt to deliver one part of an outbound message through a platform API."""

    __table_args__ = (UniqueConstraint("message_id", "part"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", index=True)
    part: int = 0
    status: str = Field(default="sent", max_length=16)  # "sent" or "failed"
    platform_msg_id: str = Field(default="", max_length=255)
    error: str = ""
    attempts: int = 1
    created_at: datetime = Field(default_factory=_now)
