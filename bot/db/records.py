"""The rows a turn writes and reads: conversations, messages, deliveries (sync; callers run
them off the event loop through `bot.db.engine.Database`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from bot.db.models import Conversation, Delivery, Message
from bot.domain import InboundMessage
from knowledge import models as _knowledge_models  # noqa: F401 - registers the KB tables

R = TypeVar("R", bound=SQLModel)


def ensure_conversation(session: Session, msg: InboundMessage) -> Conversation:
    """Find or create the conversation of `msg` (safe against a concurrent insert)."""
    query = select(Conversation).where(
        Conversation.platform == msg.platform.value,
        Conversation.app == msg.app,
        Conversation.external_id == msg.conversation_id,
    )
    conv = session.exec(query).first()
    if conv is not None:
        return conv
    conv = Conversation(
        platform=msg.platform.value,
        app=msg.app,
        external_id=msg.conversation_id,
        is_group=msg.is_group,
    )
    if not insert_once(session, conv):
        return session.exec(query).one()
    return loaded(session, conv)


def loaded(session: Session, row: R) -> R:
    """`row` with its values, reloaded only when a commit expired them.

    `Database.session` keeps values across commits (no query here); a plain `Session`
    expires them, and a caller reading the row after the session closes needs them loaded.
    """
    if inspect(row).expired_attributes:
        session.refresh(row)
    return row


def insert_once(session: Session, row: SQLModel) -> bool:
    """Add and commit `row`; False (rolled back) when a unique key says it is already stored."""
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def record_inbound(session: Session, conv: Conversation, msg: InboundMessage) -> Message:
    """Store an inbound message once; a redelivery finds the stored row."""
    return _upsert_message(
        session,
        Message(
            conversation_id=conv.id or 0,
            direction="in",
            platform_msg_id=msg.event_id,
            sender_id=msg.sender_id,
            kind=msg.kind.value,
            text=msg.text,
        ),
    )


def record_outbound(
    session: Session,
    conv: Conversation,
    msg: InboundMessage,
    text: str,
    *,
    backend: str,
    degraded: bool,
) -> Message:
    """Store the answer to `msg` once (keyed by the inbound event id)."""
    return _upsert_message(
        session,
        Message(
            conversation_id=conv.id or 0,
            direction="out",
            platform_msg_id=f"reply:{msg.event_id}",
            text=text,
            backend=backend,
            degraded=degraded,
        ),
    )


def _upsert_message(session: Session, row: Message) -> Message:
    query = select(Message).where(
        Message.conversation_id == row.conversation_id,
        Message.direction == row.direction,
        Message.platform_msg_id == row.platform_msg_id,
    )
    existing = session.exec(query).first()
    if existing is not None:
        return existing
    if not insert_once(session, row):
        return session.exec(query).one()
    return loaded(session, row)


def record_delivery(
    session: Session,
    message_id: int,
    part: int,
    *,
    status: str,
    platform_msg_id: str = "",
    error: str = "",
) -> None:
    """Record the outcome of delivering one part; a retry updates the same row."""
    query = select(Delivery).where(Delivery.message_id == message_id, Delivery.part == part)
    row = session.exec(query).first()
    if row is None:
        row = Delivery(
            message_id=message_id,
            part=part,
            status=status,
            platform_msg_id=platform_msg_id,
            error=error[:500],
        )
    else:
        row.status, row.platform_msg_id, row.error = status, platform_msg_id, error[:500]
        row.attempts += 1
    session.add(row)
    session.commit()


def touch_later(conv: Conversation) -> None:
    """Mark the conversation active now; stored by the session's next commit."""
    conv.updated_at = datetime.now(UTC)
