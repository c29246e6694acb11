"""Engine creation and the few queries the pipeline needs.

SQLite under ./data/ by default, PostgreSQL when DATABASE_URL says so. Tables are created
on start (`init_db`); a migration tool comes when the schema starts changing in place.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, create_engine, select

from bot.db.models import Conversation, Delivery, Message
from bot.domain import InboundMessage
from knowledge import models as _knowledge_models  # noqa: F401 - registers the KB tables

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs (the driver we install)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def get_engine(url: str) -> Engine:
    """One engine per URL per process, tables created on first use."""
    url = normalise_url(url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create(url)
            SQLModel.metadata.create_all(engine)
            _engines[url] = engine
        return engine


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record) -> None:  # type: ignore[no-untyped-def]
            # WAL lets the web process read while workers write; busy_timeout waits on locks.
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL is still crash-safe (a power cut may lose the last commits).
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def dispose_all() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


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
    session.add(conv)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return session.exec(query).one()
    session.refresh(conv)
    return conv


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
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return session.exec(query).one()
    session.refresh(row)
    return row


def record_delivery(
    session: Session,
    message: Message,
    part: int,
    *,
    status: str,
    platform_msg_id: str = "",
    error: str = "",
) -> None:
    """Record the outcome of delivering one part; a retry updates the same row."""
    query = select(Delivery).where(Delivery.message_id == message.id, Delivery.part == part)
    row = session.exec(query).first()
    if row is None:
        row = Delivery(
            message_id=message.id or 0,
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


def touch(session: Session, conv: Conversation) -> None:
    conv.updated_at = datetime.now(UTC)
    session.add(conv)
    session.commit()
