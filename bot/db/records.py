"""The rows a turn writes and reads: conversations, messages, deliveries (sync; callers run
them off the event loop through `bot.db.engine.Database`)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, inspect, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, SQLModel, select

from bot.db.models import Conversation, Delivery, Message
from bot.domain import Content, InboundMessage
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


def conversation_of(session: Session, msg: InboundMessage) -> tuple[int, str]:
    """(id, handoff state) of the conversation of `msg`, created when new; not committed.

    Core statements of the two columns a turn needs: no ORM entity, and with the turn's
    other rows in one transaction (`ensure_conversation` commits on its own).
    """
    key = {"platform": msg.platform.value, "app": msg.app, "external_id": msg.conversation_id}
    query = _conversation_query()
    found = session.connection().execute(query, key).first()
    if found is None:
        dialect = _upsert_dialect(session)
        if dialect is None:  # another database: the portable way (commits)
            conv = ensure_conversation(session, msg)
            return conv.id or 0, conv.state
        row = Conversation(
            platform=msg.platform.value,
            app=msg.app,
            external_id=msg.conversation_id,
            is_group=msg.is_group,
        )
        statement = _conversation_insert(dialect)
        # None: a concurrent worker inserted it first; read it (a statement sees it).
        found = session.connection().execute(statement, _values(row)).first() or (
            session.connection().execute(query, key).one()
        )
    return int(found[0]), str(found[1])


def touch(session: Session, conversation_id: int) -> None:
    """Mark the conversation active now (one UPDATE, committed with the caller's rows)."""
    params = {"conversation_id": conversation_id, "now": datetime.now(UTC)}
    session.connection().execute(_touch_statement(), params)


def loaded(session: Session, row: R) -> R:
    """`row` with its values, reloaded only when a commit expired them.

    `Database.session` keeps values across commits (no query here); a plain `Session`
    expires them, and a caller reading the row after the session closes needs them loaded.
    """
    if inspect(row).expired_attributes:
        session.refresh(row)
    return row


def insert_new(
    session: Session, row: SQLModel, unique: tuple[str, ...], *, commit: bool = True
) -> int | None:
    """Insert `row` unless a row with the same `unique` columns exists; commit unless
    `commit` is False (the caller commits the turn's rows together). The new id, or None
    when it existed (a redelivery, or a concurrent worker that got there first).

    One statement (INSERT … ON CONFLICT DO NOTHING RETURNING id) instead of a lookup, an
    ORM flush and a reload: these rows are written on every turn.
    """
    table = type(row).__table__  # type: ignore[attr-defined]  # every table model has one
    dialect = _upsert_dialect(session)
    if dialect is None:  # another database: the portable way
        return row.id if insert_once(session, row) else None  # type: ignore[attr-defined]
    statement = _insert_new_statement(dialect, table, unique)
    new_id = session.connection().execute(statement, _values(row)).scalar_one_or_none()
    if commit:
        session.commit()
    return int(new_id) if new_id is not None else None


def _upsert_dialect(session: Session) -> str | None:
    """The dialect's name when its INSERT takes ON CONFLICT clauses (PostgreSQL, SQLite)."""
    dialect = str(session.get_bind().dialect.name)
    return dialect if dialect in _INSERTS else None


_INSERTS: dict[str, Any] = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}


def _values(row: SQLModel) -> dict[str, Any]:
    """The row's column values but its id, as the parameters of a prepared INSERT."""
    table = type(row).__table__  # type: ignore[attr-defined]
    return {c.name: getattr(row, c.name) for c in table.columns if c.name != "id"}


# The statements below run on every turn. Each is built once, with bound parameters: building
# a statement and its cache key per call cost more CPU than running it (py-spy, issue 13).


@functools.cache
def _insert_new_statement(dialect: str, table: Any, unique: tuple[str, ...]) -> Any:
    insert = _INSERTS[dialect](table)
    return insert.on_conflict_do_nothing(index_elements=list(unique)).returning(table.c.id)


@functools.cache
def _conversation_query() -> Any:
    table = Conversation.__table__  # type: ignore[attr-defined]
    return (
        sa_select(table.c.id, table.c.state)
        .where(table.c.platform == bindparam("platform"))
        .where(table.c.app == bindparam("app"))
        .where(table.c.external_id == bindparam("external_id"))
    )


@functools.cache
def _conversation_insert(dialect: str) -> Any:
    table = Conversation.__table__  # type: ignore[attr-defined]
    return (
        _INSERTS[dialect](table)
        .on_conflict_do_nothing(index_elements=["platform", "app", "external_id"])
        .returning(table.c.id, table.c.state)
    )


@functools.cache
def _touch_statement() -> Any:
    table = Conversation.__table__  # type: ignore[attr-defined]
    return (
        update(table)
        .where(table.c.id == bindparam("conversation_id"))
        .values(updated_at=bindparam("now"))
    )


@functools.cache
def _delivery_upsert(dialect: str) -> Any:
    table = Delivery.__table__  # type: ignore[attr-defined]
    insert = _INSERTS[dialect](table)
    return insert.on_conflict_do_update(
        index_elements=["message_id", "part"],
        set_={
            "status": insert.excluded.status,
            "platform_msg_id": insert.excluded.platform_msg_id,
            "error": insert.excluded.error,
            "attempts": table.c.attempts + 1,
        },
    )


def insert_once(session: Session, row: SQLModel) -> bool:
    """Add and commit `row`; False (rolled back) when a unique key says it is already stored."""
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


# Marks a stored message that was spoken (the platform's or our own transcript), so the
# person taking over in the console sees it was voice (bot/pipeline/voice.py).
VOICE_MARK = "[语音转写] "


def stored_text(msg: InboundMessage) -> str:
    """The text kept for `msg`: a transcript carries VOICE_MARK."""
    if msg.content is Content.VOICE and not msg.placeholder and msg.text:
        return VOICE_MARK + msg.text
    return msg.text


def record_inbound(
    session: Session, conv: Conversation | int, msg: InboundMessage, *, commit: bool = True
) -> Message:
    """Store an inbound message once; a redelivery finds the stored row. `conv`: the
    conversation or its id; `commit` False leaves the commit to the caller."""
    return _upsert_message(
        session,
        Message(
            conversation_id=_id(conv),
            direction="in",
            platform_msg_id=msg.event_id,
            sender_id=msg.sender_id,
            kind=msg.kind.value,
            text=stored_text(msg),
        ),
        commit=commit,
    )


def record_outbound(
    session: Session,
    conv: Conversation | int,
    msg: InboundMessage,
    text: str,
    *,
    backend: str,
    degraded: bool,
    commit: bool = True,
) -> Message:
    """Store the answer to `msg` once (keyed by the inbound event id); see record_inbound."""
    return _upsert_message(
        session,
        Message(
            conversation_id=_id(conv),
            direction="out",
            platform_msg_id=f"reply:{msg.event_id}",
            text=text,
            backend=backend,
            degraded=degraded,
        ),
        commit=commit,
    )


def _id(conv: Conversation | int) -> int:
    return conv if isinstance(conv, int) else conv.id or 0


def _upsert_message(session: Session, row: Message, *, commit: bool) -> Message:
    unique = ("conversation_id", "direction", "platform_msg_id")
    new_id = insert_new(session, row, unique, commit=commit)
    if new_id is None:  # stored before: a redelivered message
        query = select(Message).where(
            Message.conversation_id == row.conversation_id,
            Message.direction == row.direction,
            Message.platform_msg_id == row.platform_msg_id,
        )
        return session.exec(query).one()
    row.id = new_id
    # The session knows it as stored (no query): a caller may change it and commit.
    make_transient_to_detached(row)
    session.add(row)
    return row


# How much of a failed delivery's error a Delivery row keeps.
DELIVERY_ERROR_CHARS = 500


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
    dialect = _upsert_dialect(session)
    if dialect is not None:
        # One upsert statement (this runs after every send).
        params = {
            "message_id": message_id,
            "part": part,
            "status": status,
            "platform_msg_id": platform_msg_id,
            "error": error[:DELIVERY_ERROR_CHARS],
            "attempts": 1,
            "created_at": datetime.now(UTC),
        }
        session.connection().execute(_delivery_upsert(dialect), params)
        session.commit()
        return
    query = select(Delivery).where(Delivery.message_id == message_id, Delivery.part == part)
    row = session.exec(query).first()
    if row is None:
        row = Delivery(
            message_id=message_id,
            part=part,
            status=status,
            platform_msg_id=platform_msg_id,
            error=error[:DELIVERY_ERROR_CHARS],
        )
    else:
        row.status, row.platform_msg_id, row.error = (
            status,
            platform_msg_id,
            error[:DELIVERY_ERROR_CHARS],
        )
        row.attempts += 1
    session.add(row)
    session.commit()


def touch_later(conv: Conversation) -> None:
    """Mark the conversation active now; stored by the session's next commit."""
    conv.updated_at = datetime.now(UTC)
