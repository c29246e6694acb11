"""What the console shows of the knowledge bases: per-base totals, one document, its chunks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sql_select
from sqlmodel import Session, col, select

from knowledge.models import FAILED, Document, KnowledgeBase, KnowledgeChunk


@dataclass(frozen=True)
class BaseSummary:
    """One knowledge base as a row of the console's list."""

    name: str
    documents: int
    chunks: int
    failed: int
    updated_at: datetime | None


def summaries(session: Session, also: tuple[str, ...] = ()) -> list[BaseSummary]:
    """Every knowledge base with its totals, plus the names in `also` (configured, maybe
    still empty), by name."""
    # Plain SQLAlchemy: sqlmodel's select() has no overload for five mixed columns.
    totals = session.execute(
        sql_select(
            col(KnowledgeBase.name),
            func.count(col(Document.id)),
            func.coalesce(func.sum(col(Document.chunk_count)), 0),
            func.count(col(Document.id)).filter(col(Document.status) == FAILED),
            col(KnowledgeBase.updated_at),
        )
        .join(Document, col(Document.kb_id) == col(KnowledgeBase.id), isouter=True)
        .group_by(col(KnowledgeBase.id))
    ).all()
    found = {
        name: BaseSummary(name, int(docs), int(chunks), int(failed), updated)
        for name, docs, chunks, failed, updated in totals
    }
    for name in also:
        found.setdefault(name, BaseSummary(name, 0, 0, 0, None))
    return [found[name] for name in sorted(found)]


def document_json(doc: Document) -> dict[str, Any]:
    """A document as the admin API and the console show it."""
    return {
        "id": doc.id,
        "source": doc.source,
        "status": doc.status,
        "error": doc.error,
        "chunks": doc.chunk_count,
        "content_hash": doc.content_hash,
        "updated_at": doc.updated_at.isoformat(),
    }


def document(session: Session, kb_name: str, document_id: int) -> Document | None:
    """Document `document_id` when it belongs to `kb_name`."""
    doc = session.get(Document, document_id)
    if doc is None:
        return None
    kb = session.get(KnowledgeBase, doc.kb_id)
    return doc if kb is not None and kb.name == kb_name else None


def chunks(session: Session, document_id: int, *, offset: int, limit: int) -> list[KnowledgeChunk]:
    """A page of a document's chunks, in document order."""
    query = (
        select(KnowledgeChunk)
        .where(KnowledgeChunk.document_id == document_id)
        .order_by(col(KnowledgeChunk.position), col(KnowledgeChunk.id))
        .offset(offset)
        .limit(limit)
    )
    return list(session.exec(query))
