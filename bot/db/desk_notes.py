"""Canned replies and internal notes: what the handoff workbench keeps beside a conversation."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.models import CannedReply, ConversationNote

MAX_CANNED = 200

Row = TypeVar("Row", CannedReply, ConversationNote)


def canned(engine: Engine) -> list[CannedReply]:
    with Session(engine) as session:
        query = select(CannedReply).order_by(col(CannedReply.title)).limit(MAX_CANNED)
        return list(session.exec(query))


def _saved(engine: Engine, row: Row) -> Row:
    """`row` inserted, with the id the database gave it."""
    with Session(engine) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def add_canned(engine: Engine, title: str, text: str, author: str) -> CannedReply:
    return _saved(engine, CannedReply(title=title, text=text, created_by=author))


def remove_canned(engine: Engine, reply_id: int) -> CannedReply | None:
    with Session(engine) as session:
        row = session.get(CannedReply, reply_id)
        if row is not None:
            session.delete(row)
            session.commit()
        return row


def notes(engine: Engine, conversation_id: int) -> list[ConversationNote]:
    with Session(engine) as session:
        query = (
            select(ConversationNote)
            .where(ConversationNote.conversation_id == conversation_id)
            .order_by(col(ConversationNote.id))
        )
        return list(session.exec(query))


def add_note(engine: Engine, conversation_id: int, author: str, text: str) -> ConversationNote:
    return _saved(
        engine, ConversationNote(conversation_id=conversation_id, author=author, text=text)
    )
