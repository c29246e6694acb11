"""Database tables (SQLModel): conversations, messages, delivery records."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """A stored time with its zone: SQLite hands back naive datetimes (stored as UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


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


class HandoffEvent(SQLModel, table=True):
    """One change of a conversation between the bot and a human (bot/handoff/flow.py)."""

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    from_state: str = Field(max_length=16)
    to_state: str = Field(max_length=16)
    # bot→human: user_request, model, low_confidence, repeat, anger, admin;
    # human→bot: release_admin, release_command, idle_timeout.
    trigger: str = Field(max_length=32, index=True)
    reason: str = ""
    actor: str = Field(default="", max_length=128)  # "bot", "customer" or the agent's name
    created_at: datetime = Field(default_factory=_now, index=True)


class ConversationMemory(SQLModel, table=True):
    """Where a conversation's current session starts and what of it is summarised."""

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", unique=True)
    # Messages with an id below this belong to earlier sessions and are never shown again.
    session_start_id: int = 0
    session_started_at: datetime = Field(default_factory=_now)
    summary: str = ""
    summarised_upto_id: int = 0  # session messages up to this id are told by `summary`
    updated_at: datetime = Field(default_factory=_now)


class TokenUsage(SQLModel, table=True):
    """Model tokens spent for one answer (or one memory summary) of a conversation."""

    __table_args__ = (UniqueConstraint("message_id", "purpose"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    message_id: int = Field(index=True)  # the outbound answer, or the last summarised message
    purpose: str = Field(default="answer", max_length=16)  # "answer" or "summary"
    backend: str = Field(default="", max_length=64)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    created_at: datetime = Field(default_factory=_now, index=True)


class MediaUsage(SQLModel, table=True):
    """Media a conversation's message made the models work on: seconds of voice sent to
    speech recognition (`kind` "audio"), or pictures shown to a vision model ("image").

    One row per message and kind (unique, so a redelivered task records nothing twice);
    a table of its own because the project has no migrations (create_all adds it).
    """

    __table_args__ = (UniqueConstraint("conversation_id", "event_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    event_id: str = Field(max_length=255)  # the inbound message's platform id
    kind: str = Field(max_length=16)  # "audio" or "image"
    amount: float = 0.0  # seconds of audio, or a number of pictures
    created_at: datetime = Field(default_factory=_now, index=True)


class AutoReplyRule(SQLModel, table=True):
    """A keyword auto-reply rule managed through /api/autoreply/rules
    (bot/pipeline/autoreply.py)."""

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(default="*", max_length=32)  # a platform value, or "*" for all
    app: str = Field(default="*", max_length=64)  # an app name, or "*" for all
    match: str = Field(max_length=16)  # exact, contains, regex, click, subscribe, default
    pattern: str = Field(default="", max_length=512)
    reply: str
    priority: int = 100  # lower first
    created_at: datetime = Field(default_factory=_now)


class AutoReplyRuleOff(SQLModel, table=True):
    """An auto-reply rule switched off: kept, not used (bot/pipeline/rule_store.py).

    A table of its own, not a column of AutoReplyRule: tables are made on first use, and
    without a migration tool an existing database would not get a new column.
    """

    __tablename__ = "autoreply_rule_off"

    rule_id: int = Field(foreign_key="autoreplyrule.id", primary_key=True)
    since: datetime = Field(default_factory=_now)


class PlatformEvent(SQLModel, table=True):
    """A platform event that needs no answer (group changes, check_url…), recorded once."""

    __table_args__ = (UniqueConstraint("platform", "app", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=32)
    app: str = Field(max_length=64)
    event_type: str = Field(max_length=64, index=True)
    event_id: str = Field(max_length=255)
    conversation_id: str = Field(default="", max_length=255)  # group id, or the corp id
    summary: str = ""  # JSON of the payload's known fields only (no secrets)
    created_at: datetime = Field(default_factory=_now, index=True)


class ConsoleAccount(SQLModel, table=True):
    """An operator of the web console (bot/console/accounts.py): admin, editor or agent."""

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    password_hash: str = Field(max_length=255)  # argon2id, with its parameters
    role: str = Field(max_length=16)
    disabled: bool = False
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    # Sessions that began before this are ended (a reset password signs everyone out).
    password_changed_at: datetime = Field(default_factory=_now)


class AuditEntry(SQLModel, table=True):
    """One change an operator made (bot/console/audit.py): who, what, on what, before/after."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=_now, index=True)
    actor: str = Field(max_length=128, index=True)  # a console username, or "cli"
    action: str = Field(max_length=64)  # e.g. account.add, conversation.reply
    target: str = Field(default="", max_length=255)  # e.g. account:lisi, conversation:12
    before: str = ""  # JSON of the fields that changed, "" for none
    after: str = ""
    address: str = Field(default="", max_length=64)


class HandoffClaim(SQLModel, table=True):
    """The agent answering a conversation that waits for a person (bot/handoff/desk.py)."""

    conversation_id: int = Field(foreign_key="conversation.id", primary_key=True)
    agent: str = Field(max_length=64)
    claimed_at: datetime = Field(default_factory=_now)


class TurnRecord(SQLModel, table=True):
    """What the bot did for one answer (bot/agent/trace.py): its kind, the passages and
    tools it used, how long the customer waited. One row per outbound message."""

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="message.id", unique=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    outcome: str = Field(max_length=16, index=True)  # bot/agent/trace.py OUTCOMES
    backend: str = Field(default="", max_length=64)
    confidence: float | None = None  # best knowledge score (None: nothing searched)
    latency_ms: int = 0  # from the customer's message to the answer being ready
    trace: str = ""  # JSON of bot.agent.trace.Trace
    rating: int = 0  # the customer's 👍 (1) or 👎 (-1) on this answer; 0: none
    created_at: datetime = Field(default_factory=_now, index=True)


class CannedReply(SQLModel, table=True):
    """A reply agents insert with one click (bot/console/pages/desk_tools.py)."""

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=64)
    text: str = Field(max_length=4000)
    created_by: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=_now)


class ConversationNote(SQLModel, table=True):
    """An operator's internal note on a conversation: never sent to the customer."""

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    author: str = Field(max_length=64)
    text: str = Field(max_length=4000)
    created_at: datetime = Field(default_factory=_now)
